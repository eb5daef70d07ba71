"""The MicroPython client end to end, on the real MicroPython interpreter (WebAssembly build under
Node) against the real release server: it updates, resumes, rolls back, refuses tampering, takes a
staged rollout and checks in with its ML counters, like otaml-sim does with the C core, and leaves its
flash file in the state otaml-sim reads back."""

from __future__ import annotations

import json

import pytest

from otaml.image.synthetic import model_payload
from tests.micropython.conftest import kinds
from tests.utils.devices import HttpDevice, ring_bucket
from tests.utils.processes import ROOT
from tests.utils.waiting import wait_for

pytestmark = pytest.mark.e2e
MODEL = ROOT / "firmware" / "model" / "amp_health.tflite"
CARD = ROOT / "firmware" / "model" / "amp_health.card.json"


def with_model(card: dict | None = None) -> bytes:
    card_obj = card if card is not None else json.loads(CARD.read_text())
    return model_payload(MODEL.read_bytes(), json.dumps(card_obj).encode())


def slot_states(dev) -> dict[str, tuple[str, str]]:
    return {s["label"]: (s["version"], s["state"]) for s in dev.info()["slots"]}


def test_update_confirms_and_the_server_sees_checkins_and_ml_counters(cli, enroll, make_image, events, device_state):
    v11 = make_image("1.1", payload=with_model())
    assert cli("publish", "1.1", str(v11)).returncode == 0
    dev = enroll("mpy-1")
    dev.flash_image(v11)
    log = dev.run(4, 300, "--ml-interval-ms", "20")
    assert "running otaml 1.1 from ota_0" in log and "update offered" not in log
    assert "model amp_health/1 loaded" in log
    state = device_state("mpy-1")
    assert (state["version"], state["partition"], state["ota_state"]) == ("1.1", "ota_0", "undefined")
    assert state["ml_model"] == "amp_health/1"
    counters = state["ml_counters"]
    assert set(counters) == {"healthy", "unstable", "overdriven", "failsoon"}
    assert sum(counters.values()) >= 10
    assert sum(1 for v in counters.values() if v > 0) >= 3  # the replayed samples span the classes
    assert state["ml_latency_us"] > 0

    assert cli("publish", "1.2", str(make_image("1.2", payload=with_model(), code_size=200_000))).returncode == 0
    log = dev.run(2, 100, "--progress-min-bytes", "0")  # one transfer: progress steps are test_health_and_progress's
    assert "update offered: 1.1 -> 1.2 (manifest #2)" in log
    assert "Loaded app from partition at offset 0x1f0000 (ota_1)" in log
    assert "running otaml 1.2 from ota_1 (pending_verify)" in log
    assert "1.2 confirmed: rollback cancelled" in log
    info = dev.info()
    assert info["boot_slot"] == "ota_1"
    assert slot_states(dev) == {"ota_0": ("1.1", "undefined"), "ota_1": ("1.2", "valid")}
    assert info["nvs"]["mf_ver"] == 2 and "inst_ver" not in info["nvs"] and "dl_sha" not in info["nvs"]
    assert kinds(events("mpy-1")) == ["download_started", "verified", "installed", "booted", "confirmed"]
    state = device_state("mpy-1")
    assert (state["version"], state["partition"], state["ota_state"], state["manifest_version"]) == ("1.2", "ota_1", "valid", 2)


def test_tampered_manifest_is_refused(mitm, cli, enroll, make_image, events):

    def tamper(path, up):
        if path.split("?")[0].endswith("/firmware.json") and up.status == 200:
            body = up.body.replace(b'"channel": "stable"', b'"channel": "stable" ')
            headers = {k: v for k, v in up.headers.items() if k.lower().startswith("x-otaml") or k.lower() == "etag"}
            return 200, {**headers, "Content-Length": str(len(body))}, iter([body])
        return None

    mitm.tamper = tamper
    v11 = make_image("1.1")
    assert cli("publish", "1.1", str(v11)).returncode == 0
    dev = enroll("mpy-tamper")
    dev.flash_image(v11)
    assert cli("publish", "1.2", str(make_image("1.2"))).returncode == 0
    log = dev.run(polls=3)
    assert "refused manifest: bad_signature" in log
    assert [(e["kind"], e["reason"]) for e in events("mpy-tamper")] == [("rejected", "bad_signature")]  # once
    assert dev.booted_version() == "1.1" and dev.info()["boot_slot"] == "ota_0"
    assert not any(p.startswith("/binaries/") for p in mitm.paths)  # nothing was downloaded


def test_power_loss_mid_download_resumes_with_range(mitm, cli, enroll, make_image, events):
    v11 = make_image("1.1")
    assert cli("publish", "1.1", str(v11)).returncode == 0
    dev = enroll("mpy-power")
    dev.flash_image(v11)
    big = make_image("1.2", code_size=1_500_000)
    size = big.stat().st_size
    assert cli("publish", "1.2", str(big)).returncode == 0

    # Resumption alone: without progress milestones the rest of the image is one ranged request
    # (test_health_and_progress below covers the milestones' segments).
    dev.start(0, 200, "--download-rate", "300000", "--progress-min-bytes", "0")  # a slow radio: ~5 s for the image
    wait_for(lambda: dev.info()["nvs"].get("dl_off", 0) >= 256 * 1024, timeout=90, what="256 KB saved", interval=0.05)
    dev.kill()
    info = dev.info()
    offset = info["nvs"]["dl_off"]
    assert 0 < offset < size
    assert info["boot_slot"] == "ota_0" and dev.booted_version() == "1.1"

    before = len(mitm.sent)
    log = dev.run(2, 100, "--progress-min-bytes", "0")
    assert f"resuming at {offset} of {size}" in log
    assert "restarting the download" not in log
    assert "1.2 confirmed" in log and dev.booted_version() == "1.2"
    # What crossed the wire after the power loss: one ranged request from the saved offset, answered
    # 206 with exactly the rest of the image.
    binaries = [x for x in mitm.sent[before:] if x.path.startswith("/binaries/")]
    assert [(x.range, x.status, x.body_bytes) for x in binaries] == [(f"bytes={offset}-", 206, size - offset)]
    starts = [e for e in events("mpy-power") if e["kind"] == "download_started"]
    assert starts[0]["detail"] == "" and starts[-1]["detail"] == f"resuming at {offset} of {size}"
    assert kinds(events("mpy-power"))[-2:] == ["booted", "confirmed"]


def test_failed_self_test_rolls_back_and_is_never_retried(cli, enroll, make_image, events, device_state):
    v11 = make_image("1.1", payload=with_model())
    assert cli("publish", "1.1", str(v11)).returncode == 0
    dev = enroll("mpy-selftest")
    dev.flash_image(v11)
    card = json.loads(CARD.read_text())
    card["normalization"]["mean"][0] += 25.0  # a build that standardizes plate voltage wrongly
    assert cli("publish", "1.2", str(make_image("1.2", payload=with_model(card)))).returncode == 0

    log = dev.run(polls=3)
    assert "self-test of 1.2 failed (ml: golden 0 normalizes to other int8 values" in log
    assert "1.2 did not stick (self_test_failed): running 1.1 again" in log
    info = dev.info()
    assert info["boot_slot"] == "ota_0" and dev.booted_version() == "1.1"
    assert slot_states(dev)["ota_1"] == ("1.2", "invalid")
    assert info["nvs"]["failed_ver"] == "1.2" and info["nvs"]["mf_ver"] == 0
    evts = events("mpy-selftest")
    rolled = [e for e in evts if e["kind"] == "rolled_back"]
    assert [(e["version"], e["reason"]) for e in rolled] == [("1.2", "self_test_failed")]
    assert "normalizes to other int8 values" in rolled[0]["detail"]
    assert [e["reason"] for e in evts if e["kind"] == "rejected"] == ["version_failed_before"]

    assert cli("refresh").returncode == 0  # a new manifest for the same version: still never retried
    dev.run(polls=3)
    evts = events("mpy-selftest")
    assert [e["reason"] for e in evts if e["kind"] == "rejected"] == ["version_failed_before"] * 2
    assert kinds(evts).count("download_started") == 1
    assert device_state("mpy-selftest")["version"] == "1.1"


def test_staged_rollout_reaches_the_micropython_device(server, cli, enroll, make_image, events, device_state):
    """Rings 1 % then 100 %: the MicroPython device is the canary (the lowest bucket of the two devices
    on the channel), takes 1.2 and confirms it; only then does the rollout offer it to the next ring."""
    assert ring_bucket("mpy-canary") < ring_bucket("http-later")
    v11 = make_image("1.1")
    assert cli("publish", "1.1", str(v11)).returncode == 0
    dev = enroll("mpy-canary")
    dev.flash_image(v11)
    later = HttpDevice.enroll(server, "http-later")
    dev.run(polls=1)  # both checked in on the channel
    assert later.offered() == "1.1"
    assert cli("publish", "1.2", str(make_image("1.2")), "--staged").returncode == 0
    dev.run(polls=2)
    assert dev.booted_version() == "1.1", "a staged release was offered before any rollout"
    started = cli("rollout", "start", "1.2", "--rings", "1,100", "--json")
    assert started.returncode == 0, started.stderr
    rollout = json.loads(started.stdout)
    wait_for(lambda: rollout_state(cli, rollout["id"])["stage"] == 0, what="the rollout to offer its first ring")
    assert later.offered() == "1.1"  # not in the first ring

    log = dev.run(polls=3)
    assert "update offered: 1.1 -> 1.2" in log and "1.2 confirmed" in log
    assert dev.booted_version() == "1.2"
    assert [e["kind"] for e in events("mpy-canary")][-2:] == ["booted", "confirmed"]
    wait_for(lambda: later.offered() == "1.2", timeout=30, what="the second ring to be offered 1.2 after the canary confirmed")
    later.update_to("1.2")
    done = wait_for(lambda: (r := rollout_state(cli, rollout["id"]))["state"] == "done" and r, timeout=30,
                    what="the rollout to complete")
    assert done["confirmed"] == 2 and done["failed"] == 0
    assert device_state("mpy-canary")["version"] == "1.2"


def rollout_state(cli, rollout_id: int) -> dict:
    r = cli("rollout", "status", str(rollout_id), "--all", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    return next(x for x in (data if isinstance(data, list) else [data]) if x["id"] == rollout_id)


def test_health_and_progress(mitm, cli, enroll, make_image, events, device_state):
    """The MicroPython client sends the same health headers and reports a large download's progress in
    the same ranged steps as the C core."""
    import os
    import re

    v11 = make_image("1.1")
    assert cli("publish", "1.1", str(v11)).returncode == 0
    dev = enroll("mpy-health")
    dev.flash_image(v11)
    dev.run(2, 100, "--rssi", "-66")
    s = device_state("mpy-health")
    assert (s["rssi"], s["reset_reason"]) == (-66, "poweron")
    assert 0 < s["min_free_heap"] <= s["free_heap"] and s["uptime_s"] >= 0

    big = make_image("1.2", payload=os.urandom(400_000))
    size = big.stat().st_size
    assert cli("publish", "1.2", str(big)).returncode == 0
    before = len(mitm.sent)
    dev.run(2, 100)
    s = device_state("mpy-health")
    assert (s["version"], s["reset_reason"]) == ("1.2", "sw")
    evts = [e for e in events("mpy-health") if e["version"] == "1.2"]
    assert kinds(evts) == ["download_started", "download_progress", "download_progress", "download_progress", "verified",
                           "installed", "booted", "confirmed"]
    done = [int(re.fullmatch(r"(\d+)% \((\d+) of (\d+) bytes\)", e["detail"]).group(2))  # type: ignore[union-attr]
            for e in evts if e["kind"] == "download_progress"]
    assert done == sorted(done) and all(d >= size * p // 100 for d, p in zip(done, (25, 50, 75)))
    binaries = [x for x in mitm.sent[before:] if x.path.startswith("/binaries/")]
    assert [(x.range, x.status) for x in binaries] == [(None, 200)] + [(f"bytes={d}-", 206) for d in done]
