"""The ML task in otaml-sim: the committed model runs through the real TFLM kernels, its class counters
reach the server, and a build whose model is not its card's, or whose model or normalization is wrong,
fails its self-test and rolls back, with the reason recorded."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from otaml.image.synthetic import model_payload
from otaml.manifest import signing
from otaml.manifest.format import build_manifest_bytes
from tests.utils.mitm import Mitm
from tests.utils.processes import ROOT
from tests.utils.waiting import wait_for

pytestmark = pytest.mark.e2e
MODEL = ROOT / "firmware" / "model" / "amp_health.tflite"
CARD = ROOT / "firmware" / "model" / "amp_health.card.json"


TEST_KEY = ROOT / "manifests" / "keys" / "test-release.pem"


def payload(model: bytes | None = None, card: dict | None = None, *, card_follows_model: bool = False) -> bytes:
    """The model and card linked into an image. card_follows_model: the card's size and sha256 are
    rewritten for the bytes given (a build whose card was regenerated from a broken model), so the
    image passes publish's integrity check and only the device's golden inputs can catch it."""
    card_obj = card if card is not None else json.loads(CARD.read_text())
    model = model if model is not None else MODEL.read_bytes()
    if card_follows_model:
        card_obj = {**card_obj, "tflite_bytes": len(model), "sha256": hashlib.sha256(model).hexdigest()}
    return model_payload(model, json.dumps(card_obj).encode())


def flipped(data: bytes, at: int) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


def test_class_counters_reach_the_server(cli, enroll, make_image, device_state):
    image = make_image("1.1", payload=payload())
    assert cli("publish", "1.1", str(image)).returncode == 0
    dev = enroll("dev-ml")
    dev.flash_image(image)
    log = dev.run(6, 300, "--ml-interval-ms", "20")
    assert "model amp_health/1 loaded (9208-byte model, 4608-byte arena)" in log
    state = device_state("dev-ml")
    assert state["ml_model"] == "amp_health/1"
    counters = state["ml_counters"]
    assert set(counters) == {"healthy", "unstable", "overdriven", "failsoon"}
    assert sum(counters.values()) >= 20
    assert sum(1 for v in counters.values() if v > 0) >= 3  # the replayed samples span the classes
    assert state["ml_latency_us"] is not None


def test_update_with_a_healthy_model_confirms(cli, enroll, make_image, events):
    v11 = make_image("1.1", payload=payload())
    assert cli("publish", "1.1", str(v11)).returncode == 0
    dev = enroll("dev-ml-ok")
    dev.flash_image(v11)
    assert cli("publish", "1.2", str(make_image("1.2", payload=payload()))).returncode == 0
    log = dev.run(3, 200)
    assert "1.2 confirmed" in log
    confirmed = events("dev-ml-ok")[-1]
    assert confirmed["kind"] == "confirmed"
    # The self-test found the model in the image and hashed it (not "no model, nothing to check").
    card = json.loads(CARD.read_text())
    assert confirmed["detail"] == (f"ml: model amp_health/1 ({card['tflite_bytes']} bytes, sha256 {card['sha256'][:16]}...) "
                                   f"matches its card; 4 golden inputs pass")


def weights_offset(model: bytes) -> tuple[int, int]:
    """Where the largest constant tensor (a weight matrix) sits in the flatbuffer."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model)
    it.allocate_tensors()
    best = b""
    for d in it.get_tensor_details():
        try:
            data = np.asarray(it.get_tensor(d["index"])).tobytes()
        except ValueError:
            continue
        if d["dtype"] == np.int8 and len(data) > len(best):
            best = data
    return model.find(best), len(best)


@pytest.mark.parametrize("breakage,why", [
    ("unloadable_model", "did not load"),
    ("corrupt_weights", "output differs from the card"),
    ("wrong_normalization", "normalizes to other int8 values"),
])
def test_broken_model_fails_the_golden_self_test_and_rolls_back(cli, enroll, make_image, events, device_state,
                                                              breakage, why):
    import re

    v11 = make_image("1.1", payload=payload())
    assert cli("publish", "1.1", str(v11)).returncode == 0
    dev = enroll(f"dev-{breakage}")
    dev.flash_image(v11)
    model = bytearray(MODEL.read_bytes())
    if breakage == "unloadable_model":
        for i in range(len(model) // 2, len(model) // 2 + 64):  # flatbuffer offsets: TFLM cannot parse it
            model[i] ^= 0x5A
        bad = payload(model=bytes(model), card_follows_model=True)
    elif breakage == "corrupt_weights":
        start, length = weights_offset(bytes(model))
        assert start > 0 and length >= 512
        for i in range(start, start + length):  # loads fine, computes something else
            model[i] = (model[i] + 37) % 256
        bad = payload(model=bytes(model), card_follows_model=True)
    else:
        card = json.loads(CARD.read_text())
        card["normalization"]["mean"][0] += 25.0  # a build that standardizes plate voltage wrongly
        bad = payload(card=card)
    assert cli("publish", "1.2", str(make_image("1.2", payload=bad))).returncode == 0
    log = dev.run(3, 200)
    assert "self-test of 1.2 failed" in log
    assert dev.booted_version() == "1.1"
    rolled = [e for e in events(f"dev-{breakage}") if e["kind"] == "rolled_back"]
    assert len(rolled) == 1 and rolled[0]["reason"] == "self_test_failed"
    assert re.search(why, rolled[0]["detail"]), rolled[0]["detail"]
    wait_for(lambda: device_state(f"dev-{breakage}")["version"] == "1.1", what="the rolled-back version in the device's record")


def test_a_flipped_model_byte_is_refused_at_publish_and_rolled_back_on_a_device(cli, enroll, make_image, events,
                                                                              device_state, server):
    """One byte flipped in the middle of the model, its card untouched: `release publish` refuses it;
    served to a device anyway (signed with the release key, as someone bypassing publish could), the
    device's self-test names the model and rolls back."""
    v11 = make_image("1.1", payload=payload())
    assert cli("publish", "1.1", str(v11)).returncode == 0
    card = json.loads(CARD.read_text())
    bad = make_image("1.2", payload=payload(model=flipped(MODEL.read_bytes(), card["tflite_bytes"] // 2)))
    r = cli("publish", "1.2", str(bad))
    assert r.returncode == 2 and r.stdout == ""
    assert re.fullmatch(r"A fatal error occurred: the image's model amp_health/1 at 0x[0-9a-f]{8} has sha256 "
                        rf"[0-9a-f]{{16}}…, the card says {card['sha256'][:16]}…\n", r.stderr), r.stderr
    assert [x["version"] for x in json.loads(cli("list", "--json").stdout)] == ["1.1"]

    data = bad.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    key = signing.load_private_key(TEST_KEY)

    def serve_it(path: str, up):  # type: ignore[no-untyped-def]
        if path.endswith("/firmware.json"):
            body = build_manifest_bytes(semver="1.2", file_url=f"{mitm.url}/binaries/{sha}/otaml1_2.bin", sha256=sha,
                                        size=len(data), project="otaml", chip="esp32", secure_version=0,
                                        channel="stable", manifest_version=1000, key_id=key.key_id, expires_in=3600)
            return 200, {"Content-Length": str(len(body)), "X-Otaml-Signature": key.sign(body),
                         "X-Otaml-Poll-Interval": "60"}, iter([body])
        if path == f"/binaries/{sha}/otaml1_2.bin":
            return 200, {"Content-Length": str(len(data))}, iter([data])
        return None

    with Mitm(server.url, tamper=serve_it) as mitm:
        dev = enroll("dev-ml-flip", mitm.url)
        dev.flash_image(v11)
        log = dev.run(3, 200)
    assert "self-test of 1.2 failed" in log and dev.booted_version() == "1.1"
    assert dev.info()["nvs"]["failed_ver"] == "1.2"
    rolled = [e for e in events("dev-ml-flip") if e["kind"] == "rolled_back"]
    assert [(e["version"], e["reason"]) for e in rolled] == [("1.2", "self_test_failed")]
    assert re.fullmatch(rf"ml: model amp_health/1 sha256 [0-9a-f]{{16}}\.\.\. differs from its card's "
                        rf"{card['sha256'][:16]}\.\.\.", rolled[0]["detail"]), rolled[0]["detail"]
    assert device_state("dev-ml-flip")["version"] == "1.1"
