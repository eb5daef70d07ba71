"""A network attacker between device and server: every tampering is refused without switching slots,
and reported to the real server (events pass through the attacker untouched)."""

from __future__ import annotations

import itertools

import httpx
import pytest


pytestmark = pytest.mark.e2e


@pytest.fixture
def server(proxied_server):
    """Every device of this module reaches the server through the proxy."""
    return proxied_server


@pytest.fixture
def on_1_1(cli, make_image):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    return make_image("1.1")


def assert_untouched(dev):
    info = dev.info()
    assert info["boot_slot"] == "ota_0" and dev.booted_version() == "1.1"
    assert {s["label"]: s["state"] for s in info["slots"]}["ota_1"] in ("undefined", "invalid")
    assert "inst_ver" not in info["nvs"]


@pytest.fixture
def attacked(mitm, cli, enroll, make_image, on_1_1):
    """attacked(tamper, device_id, polls) -> (device, its log): a device on 1.1 behind the attacker
    polls while 1.2 is published, and must come out untouched."""

    def _run(tamper, device_id: str, polls: int) -> str:
        mitm.tamper = tamper
        dev = enroll(device_id, mitm.url)
        dev.flash_image(on_1_1)
        assert cli("publish", "1.2", str(make_image("1.2"))).returncode == 0
        log = dev.run(polls=polls)
        assert_untouched(dev)
        return dev, log

    return _run


def rejected(events, device_id):
    return [e["reason"] for e in events(device_id) if e["kind"] == "rejected"]


def is_manifest(path: str) -> bool:
    return path.split("?")[0].endswith("/firmware.json")


def test_tampered_manifest_fails_its_signature(attacked, events):
    def tamper(path, up):
        if is_manifest(path) and up.status == 200:
            body = up.body.replace(b'"channel": "stable"', b'"channel": "stable" ')
            return 200, {**{k: v for k, v in up.headers.items() if k.lower().startswith("x-otaml") or k.lower() == "etag"},
                         "Content-Length": str(len(body))}, iter([body])
        return None

    _, log = attacked(tamper, "dev-sig", polls=3)
    assert "signature does not verify" in log
    assert rejected(events, "dev-sig") == ["bad_signature"]


def test_replayed_older_manifest_is_refused(server, mitm, cli, enroll, make_image, on_1_1, events):
    old_body = (server.data_dir / "static" / "firmware.json").read_bytes()
    old_sig = (server.data_dir / "static" / "firmware.json.sig").read_text().strip()
    dev = enroll("dev-replay", mitm.url)
    dev.flash_image(on_1_1)
    assert cli("publish", "1.2", str(make_image("1.2"))).returncode == 0
    dev.run(polls=2)
    assert dev.booted_version() == "1.2" and dev.info()["nvs"]["mf_ver"] == 2

    def replay(path, up):
        if is_manifest(path):
            return 200, {"X-Otaml-Signature": old_sig, "ETag": '"replayed"', "Content-Length": str(len(old_body))}, iter([old_body])
        return None

    mitm.tamper = replay
    log = dev.run(polls=3)
    assert "refused 1.1: manifest_replayed" in log
    assert dev.booted_version() == "1.2"
    assert rejected(events, "dev-replay") == ["manifest_replayed"]


def test_binary_with_wrong_hash_is_refused(attacked, events):
    def corrupt(path, up):
        if path.startswith("/binaries/") and up.status == 200:
            body = bytearray(up.body)
            body[len(body) // 2] ^= 0xFF
            return 200, {"Content-Length": str(len(body))}, iter([bytes(body)])
        return None

    dev, log = attacked(corrupt, "dev-hash", polls=3)
    assert "refused 1.2: hash_mismatch" in log
    assert rejected(events, "dev-hash") == ["hash_mismatch"]  # once: the same manifest is not retried
    assert "dl_sha" not in dev.info()["nvs"]


def test_endless_binary_is_cut_at_the_declared_size(attacked, events):
    sent = {"bytes": 0, "image": 0}

    def endless(path, up):
        if path.startswith("/binaries/") and up.status == 200:
            sent["image"] = len(up.body)

            def forever():
                yield up.body
                for _ in itertools.repeat(None, 4096):  # bounded so the test's thread ends: 64 MiB
                    sent["bytes"] += 16384
                    yield b"\xa5" * 16384
            return 200, {}, forever()
        return None

    dev, log = attacked(endless, "dev-endless", polls=2)
    assert "refused 1.2: size_mismatch" in log
    assert rejected(events, "dev-endless") == ["size_mismatch"]
    # Not one byte past the declared size reached the flash: the passive slot is erased (0xFF) from
    # there on, and the attacker's 0xA5 filler appears nowhere in it. (What the attacker could push into
    # the connection is bounded by the kernel's socket buffers, not by anything the device decides.)
    size = sent["image"]
    slot = dev.read_partition("ota_1")
    assert sent["bytes"] > 0 and 0 < size < len(slot), "the attack never ran"
    assert slot[size:] == b"\xff" * (len(slot) - size), "bytes past the declared size were written to flash"
    assert b"\xa5" * 64 not in slot


def test_unknown_device_and_wrong_token_get_nothing(server, cli, enroll, make_image, on_1_1, events):
    assert cli("publish", "1.2", str(make_image("1.2"))).returncode == 0
    wrong_token = enroll("dev-auth")
    wrong_token.flash_image(on_1_1)
    wrong_token.token = "not-the-token"
    stranger = enroll("dev-known")
    stranger.device_id = "dev-never-enrolled"  # a real device's flash, an id the server does not know
    stranger.flash_image(on_1_1)
    for dev, device_id in ((wrong_token, "dev-auth"), (stranger, "dev-never-enrolled")):
        log = dev.run(polls=2)
        assert f"server refused device {device_id}: check its id and token" in log
        assert_untouched(dev)  # nothing downloaded, nothing switched
        assert "dl_sha" not in dev.info()["nvs"]
    # Nothing was recorded for either: no event, no check-in.
    assert events("dev-auth") == [] and events("dev-known") == []
    with server.admin() as admin:
        assert admin.get("/api/devices/dev-never-enrolled/events").status_code == 404
        assert admin.get("/api/devices/dev-auth").json()["last_seen"] is None
    r = httpx.get(f"{server.url}/firmware.json", headers={"X-Otaml-Device-Id": "dev-auth", "Authorization": "Bearer x"})
    assert r.status_code == 401 and b"semver" not in r.content
