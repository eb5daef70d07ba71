"""The MicroPython client's rollback gate waits before it judges, by the rules of the C firmware
(manifests/README.md, "Rollback"): behind a gateway (a reverse proxy in front of the real server) a
server outage during a new image's first boot does not reject a good build, a window without any
answer rolls back as server_unreachable and the version is taken again, and a refused check-in (401)
rolls back at once."""

from __future__ import annotations

import re
import time

import pytest

from tests.micropython.conftest import kinds
from tests.utils.mitm import Mitm
from tests.utils.mpy import MpyDevice
from tests.utils.waiting import wait_for

pytestmark = pytest.mark.e2e
FAST_BACKOFF = ("--confirm-backoff-min-ms", "200", "--confirm-backoff-max-ms", "800")


def is_gate_checkin(method: str, headers: dict[str, str]) -> bool:
    state = next((v for k, v in headers.items() if k.lower() == "x-otaml-ota-state"), None)
    return method == "GET" and state == "pending_verify"


class Outage:
    """Stops the release server the moment a new image's gate first checks in (the gateway then
    answers 502, as a reverse proxy whose upstream is down does)."""

    def __init__(self, server):  # type: ignore[no-untyped-def]
        self.server = server
        self.started = False

    def before(self, method: str, path: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
        if is_gate_checkin(method, headers) and not self.started:
            self.started = True
            self.server.stop()
        return None


def behind(gateway: Mitm, dev: MpyDevice) -> MpyDevice:
    dev.server = gateway.url
    return dev


def slots(info: dict) -> dict[str, tuple[str, str]]:
    return {s["label"]: (s["version"], s["state"]) for s in info["slots"]}


def test_server_down_during_the_gate_then_back_confirms(cli, enroll, make_image, events, server):
    v11 = make_image("1.1")
    assert cli("publish", "1.1", str(v11)).returncode == 0
    outage = Outage(server)
    with Mitm(server.url, tamper=lambda path, up: None, before=outage.before) as gateway:
        dev = behind(gateway, enroll("mpy-gate-back"))
        dev.flash_image(v11)
        assert cli("publish", "1.2", str(make_image("1.2"))).returncode == 0
        dev.start(0, 200, "--confirm-window-s", "120", "--ip-after-ms", "300", *FAST_BACKOFF)
        try:
            wait_for(lambda: outage.started, timeout=60, what="the new image's gate to check in")
            wait_for(lambda: len(re.findall(r"no answer from the server \(HTTP 502 without X-Otaml-Poll-Interval\)",
                                            dev.log())) >= 3, timeout=60, what="three unanswered attempts")
            server.start()
            wait_for(lambda: "confirmed" in kinds(events("mpy-gate-back")), timeout=60, what="1.2 confirmed")
        finally:
            dev.kill()
    log = dev.log()
    assert re.search(r"server answered \(HTTP 200\) at attempt \d+", log)
    assert kinds(events("mpy-gate-back")) == ["download_started", "verified", "installed", "booted", "confirmed"]
    assert slots(dev.info())["ota_1"] == ("1.2", "valid")


def test_server_gone_for_the_whole_window_rolls_back_then_retakes_the_version(cli, enroll, make_image, events, server):
    v11 = make_image("1.1")
    assert cli("publish", "1.1", str(v11)).returncode == 0
    outage = Outage(server)
    with Mitm(server.url, tamper=lambda path, up: None, before=outage.before) as gateway:
        dev = behind(gateway, enroll("mpy-gate-gone"))
        dev.flash_image(v11)
        assert cli("publish", "1.2", str(make_image("1.2"))).returncode == 0
        dev.start(0, 200, "--confirm-window-s", "3", *FAST_BACKOFF)
        try:
            def settled() -> dict | None:
                info = dev.info()
                return info if info["nvs"].get("ur_count") == 1 and "inst_ver" not in info["nvs"] else None

            info = wait_for(settled, timeout=90, what="1.1 settling the server_unreachable rollback")
            assert info["boot_slot"] == "ota_0" and slots(info)["ota_1"] == ("1.2", "invalid")
            assert info["nvs"]["ur_ver"] == "1.2" and "failed_ver" not in info["nvs"]
            assert info["nvs"]["ob_kind"] == "rolled_back"  # waiting in the outbox for the server
            server.start()
            wait_for(lambda: "confirmed" in kinds(events("mpy-gate-gone")), timeout=90, what="1.2 retaken and confirmed")
        finally:
            dev.kill()
    evts = events("mpy-gate-gone")
    assert kinds(evts) == ["download_started", "verified", "installed", "booted", "rolled_back",
                           "download_started", "verified", "installed", "booted", "confirmed"]
    rolled = next(e for e in evts if e["kind"] == "rolled_back")
    assert (rolled["version"], rolled["reason"]) == ("1.2", "server_unreachable")
    assert re.fullmatch(r"no answer from the server within 3 s \(\d+ attempts; last: HTTP 502 without "
                        r"X-Otaml-Poll-Interval\); retake 1 of 3", rolled["detail"]), rolled["detail"]
    info = dev.info()
    assert info["boot_slot"] == "ota_1" and slots(info)["ota_1"] == ("1.2", "valid")
    assert not {"inst_ver", "failed_ver", "ur_ver", "ur_count", "ob_kind"} & set(info["nvs"])


def test_refused_credentials_roll_back_at_once(cli, enroll, make_image, events):
    v11 = make_image("1.1")
    assert cli("publish", "1.1", str(v11)).returncode == 0
    dev = enroll("mpy-gate-401")
    dev.flash_image(v11)
    assert cli("publish", "1.2", str(make_image("1.2", payload=b"OTAML-SIM:lose-token\n"))).returncode == 0
    started = time.monotonic()
    log = dev.run(3, 100, "--confirm-window-s", "600", timeout=120)
    assert time.monotonic() - started < 60  # nowhere near the 600 s window
    assert "asking again" not in log
    evts = events("mpy-gate-401")
    rolled = [e for e in evts if e["kind"] == "rolled_back"]
    assert [(e["version"], e["reason"]) for e in rolled] == [("1.2", "self_test_failed")]
    assert rolled[0]["detail"] == "the server refused this image's check-in: HTTP 401 (device id or token)"
    info = dev.info()
    assert info["boot_slot"] == "ota_0" and slots(info)["ota_1"] == ("1.2", "invalid")
    assert info["nvs"]["failed_ver"] == "1.2" and "ur_ver" not in info["nvs"]
    assert [(e["kind"], e["reason"]) for e in evts[-1:]] == [("rejected", "version_failed_before")]
