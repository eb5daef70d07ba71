"""The rollback gate waits before it judges: otaml-sim behind a gateway (a reverse proxy, as nginx in
front of the release server) while the real server goes down and comes back. A server outage during a
new image's first boot must not reject a good build; only a definite failure rolls back at once
(manifests/README.md, "Rollback")."""

from __future__ import annotations

import re
import time

import pytest

from tests.firmware.conftest import kinds
from tests.utils.mitm import Mitm
from tests.utils.waiting import wait_for

pytestmark = pytest.mark.e2e

FAST_BACKOFF = ("--confirm-backoff-min-ms", "200", "--confirm-backoff-max-ms", "800")


def is_gate_checkin(method: str, headers: dict[str, str]) -> bool:
    """The first boot of a new image checks in with X-Otaml-Ota-State: pending_verify."""
    state = next((v for k, v in headers.items() if k.lower() == "x-otaml-ota-state"), None)
    return method == "GET" and state == "pending_verify"


class Outage:
    """Stops the release server the moment a new image's gate first checks in (the gateway then answers
    502, as a reverse proxy whose upstream is down does); the test brings the server back."""

    def __init__(self, server):  # type: ignore[no-untyped-def]
        self.server = server
        self.started = False

    def before(self, method: str, path: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
        if is_gate_checkin(method, headers) and not self.started:
            self.started = True
            self.server.stop()
        return None  # forward: the stopped upstream makes it a 502


def gate_answers(gateway: Mitm) -> list[int]:
    return [x.status for x in gateway.sent if x.method == "GET" and x.path.endswith("firmware.json")
            and x.status == 502]


def slots(info: dict) -> dict[str, tuple[str, str]]:
    return {s["label"]: (s["version"], s["state"]) for s in info["slots"]}


def test_server_down_during_the_gate_then_back_confirms(cli, enroll, make_image, events, server):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    outage = Outage(server)
    with Mitm(server.url, tamper=lambda path, up: None, before=outage.before) as gateway:
        dev = enroll("dev-gate-back", gateway.url)
        dev.flash_image(make_image("1.1"))
        assert cli("publish", "1.2", str(make_image("1.2"))).returncode == 0
        # Each boot also joins its network late: the gate waits for an address before it asks.
        dev.start(0, 200, "--confirm-window-s", "120", "--ip-after-ms", "300", *FAST_BACKOFF)
        try:
            wait_for(lambda: len(gate_answers(gateway)) >= 3, timeout=60, what="three gate check-ins answered 502")
            info = dev.info()
            # Still deciding, nothing judged yet (a reset now would make the bootloader boot ota_0).
            assert slots(info)["ota_1"] == ("1.2", "pending_verify") and info["boot_slot"] == "ota_0"
            assert info["nvs"]["inst_ver"] == "1.2" and "inst_why" not in info["nvs"]
            server.start()
            wait_for(lambda: "confirmed" in kinds(events("dev-gate-back")), timeout=60, what="1.2 confirmed")
        finally:
            dev.kill()
    info = dev.info()
    assert info["boot_slot"] == "ota_1" and slots(info)["ota_1"] == ("1.2", "valid")
    assert not {"inst_ver", "failed_ver", "ur_ver", "ur_count"} & set(info["nvs"])
    # booted could not be sent before the address came; the gate sends it once the server answered.
    assert kinds(events("dev-gate-back")) == ["download_started", "verified", "installed", "booted", "confirmed"]
    log = dev.log()
    assert len(re.findall(r"no answer from the server \(HTTP 502 without X-Otaml-Poll-Interval\): asking again", log)) >= 3
    assert re.search(r"server answered \(HTTP 200\) at attempt \d+", log)


def test_server_gone_for_the_whole_window_rolls_back_then_retakes_the_version(cli, enroll, make_image, events, server):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    outage = Outage(server)
    with Mitm(server.url, tamper=lambda path, up: None, before=outage.before) as gateway:
        dev = enroll("dev-gate-gone", gateway.url)
        dev.flash_image(make_image("1.1"))
        assert cli("publish", "1.2", str(make_image("1.2"))).returncode == 0
        dev.start(0, 200, "--confirm-window-s", "3", *FAST_BACKOFF)
        try:
            def settled() -> dict | None:
                info = dev.info()
                return info if info["nvs"].get("ur_count") == 1 and "inst_ver" not in info["nvs"] else None

            info = wait_for(settled, timeout=60, what="1.1 settling the server_unreachable rollback")
            assert info["boot_slot"] == "ota_0" and slots(info)["ota_0"][0] == "1.1" and slots(info)["ota_1"] == ("1.2", "invalid")
            assert info["nvs"]["ur_ver"] == "1.2" and "failed_ver" not in info["nvs"]
            assert info["nvs"]["ob_kind"] == "rolled_back"  # waiting in the outbox for the server
            assert len(gate_answers(gateway)) >= 2  # asked more than once within the window
            server.start()
            wait_for(lambda: "confirmed" in kinds(events("dev-gate-gone")), timeout=60, what="1.2 retaken and confirmed")
        finally:
            dev.kill()
    evts = events("dev-gate-gone")
    assert kinds(evts) == ["download_started", "verified", "installed", "booted", "rolled_back",
                           "download_started", "verified", "installed", "booted", "confirmed"]
    rolled = next(e for e in evts if e["kind"] == "rolled_back")
    assert (rolled["version"], rolled["reason"]) == ("1.2", "server_unreachable")
    assert re.fullmatch(r"no answer from the server within 3 s \(\d+ attempts; last: HTTP 502 without "
                        r"X-Otaml-Poll-Interval\); retake 1 of 3", rolled["detail"]), rolled["detail"]
    info = dev.info()
    assert info["boot_slot"] == "ota_1" and slots(info)["ota_1"] == ("1.2", "valid")
    assert not {"inst_ver", "failed_ver", "ur_ver", "ur_count", "ob_kind"} & set(info["nvs"])


def test_version_is_not_taken_again_after_its_retakes(cli, enroll, make_image, events, server):
    """The server stays up, but something on the way answers every new image's check-in with 503: each
    take ends server_unreachable; after the last retake the version counts as failed."""
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0

    def unavailable(method: str, path: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
        return (503, {"Content-Length": "0"}, iter([b""])) if is_gate_checkin(method, headers) else None

    with Mitm(server.url, tamper=lambda path, up: None, before=unavailable) as gateway:
        dev = enroll("dev-gate-retakes", gateway.url)
        dev.flash_image(make_image("1.1"))
        assert cli("publish", "1.2", str(make_image("1.2"))).returncode == 0
        dev.run(4, 100, "--confirm-window-s", "1", "--confirm-backoff-min-ms", "100", "--confirm-backoff-max-ms", "400",
                "--unreachable-retakes", "2", timeout=240)
        refused_gate = [x.status for x in gateway.sent if x.status == 503]
    evts = events("dev-gate-retakes")
    rolled = [e for e in evts if e["kind"] == "rolled_back"]
    assert [(e["version"], e["reason"]) for e in rolled] == [("1.2", "server_unreachable")] * 3
    assert [e["detail"].rsplit("; ", 1)[1] for e in rolled] == ["retake 1 of 2", "retake 2 of 2", "no retake left (2 allowed)"]
    assert kinds(evts).count("download_started") == 3 and kinds(evts).count("confirmed") == 0
    assert [(e["kind"], e["reason"]) for e in evts[-1:]] == [("rejected", "version_failed_before")]
    assert len(refused_gate) >= 3
    info = dev.info()
    assert info["boot_slot"] == "ota_0" and dev.booted_version() == "1.1"
    assert info["nvs"]["failed_ver"] == "1.2" and (info["nvs"]["ur_ver"], info["nvs"]["ur_count"]) == ("1.2", 3)


def test_refused_credentials_roll_back_at_once(cli, enroll, make_image, events):
    """A build that lost its device token gets 401 from the otaml server: a definite failure, no waiting."""
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    dev = enroll("dev-gate-401")
    dev.flash_image(make_image("1.1"))
    assert cli("publish", "1.2", str(make_image("1.2", payload=b"OTAML-SIM:lose-token\n"))).returncode == 0
    started = time.monotonic()
    log = dev.run(3, 100, "--confirm-window-s", "600", timeout=120)
    assert time.monotonic() - started < 60  # nowhere near the 600 s window
    assert "asking again" not in log
    evts = events("dev-gate-401")
    rolled = [e for e in evts if e["kind"] == "rolled_back"]
    assert [(e["version"], e["reason"]) for e in rolled] == [("1.2", "self_test_failed")]
    assert rolled[0]["detail"] == "the server refused this image's check-in: HTTP 401 (device id or token)"
    assert "booted" not in kinds(evts)  # the build could not authenticate to say so
    info = dev.info()
    assert info["boot_slot"] == "ota_0" and slots(info)["ota_1"] == ("1.2", "invalid")
    assert info["nvs"]["failed_ver"] == "1.2" and "ur_ver" not in info["nvs"]
    assert [(e["kind"], e["reason"]) for e in evts[-1:]] == [("rejected", "version_failed_before")]


def test_no_address_within_the_window_is_unreachable(cli, enroll, make_image, events):
    """Wi-Fi never comes up in time on the new image: nothing is asked, the window runs out. With no
    retakes configured the first such rollback is final."""
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    dev = enroll("dev-gate-noip")
    dev.flash_image(make_image("1.1"))
    assert cli("publish", "1.2", str(make_image("1.2"))).returncode == 0
    dev.run(40, 100, "--ip-after-ms", "2500", "--confirm-window-s", "1", "--unreachable-retakes", "0", timeout=120)
    rolled = [e for e in events("dev-gate-noip") if e["kind"] == "rolled_back"]
    assert [(e["version"], e["reason"], e["detail"]) for e in rolled] == [
        ("1.2", "server_unreachable",
         "no answer from the server within 1 s (0 attempts; last: no IP address); no retake left (0 allowed)")]
    info = dev.info()
    assert info["boot_slot"] == "ota_0" and info["nvs"]["failed_ver"] == "1.2"
