"""otaml-sim, the same firmware core with the POSIX port, updating against the real release server."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from tests.firmware.conftest import kinds
from tests.utils.waiting import wait_for

pytestmark = pytest.mark.e2e


def test_update_installs_confirms_and_server_sees_it(cli, enroll, make_image, events, device_state):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    dev = enroll("dev-1")
    dev.flash_image(make_image("1.1"))
    log = dev.run(polls=2)
    assert "running otaml 1.1 from ota_0" in log and "update offered" not in log
    assert device_state("dev-1")["version"] == "1.1"

    assert cli("publish", "1.2", str(make_image("1.2", code_size=200_000))).returncode == 0
    log = dev.run(2, 100, "--progress-min-bytes", "0")  # one transfer: progress steps are test_health_and_progress's
    assert "update offered: 1.1 -> 1.2" in log
    assert "Loaded app from partition at offset 0x1f0000 (ota_1)" in log
    assert "1.2 confirmed: rollback cancelled" in log

    info = dev.info()
    assert info["boot_slot"] == "ota_1"
    assert {s["label"]: (s["version"], s["state"]) for s in info["slots"]} == {
        "ota_0": ("1.1", "undefined"), "ota_1": ("1.2", "valid")}
    assert info["nvs"]["mf_ver"] == 2
    assert kinds(events("dev-1")) == ["download_started", "verified", "installed", "booted", "confirmed"]
    state = device_state("dev-1")
    assert (state["version"], state["partition"], state["ota_state"], state["manifest_version"]) == ("1.2", "ota_1", "valid", 2)


def test_failed_self_test_rolls_back_and_is_never_retried(cli, enroll, make_image, events, device_state):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    dev = enroll("dev-2")
    dev.flash_image(make_image("1.1"))
    bad = make_image("1.2", payload=b"OTAML-SIM:selftest=fail\n")
    assert cli("publish", "1.2", str(bad)).returncode == 0

    log = dev.run(polls=3)
    assert "self-test of 1.2 failed" in log
    assert "1.2 did not stick (self_test_failed): running 1.1 again" in log
    info = dev.info()
    assert info["boot_slot"] == "ota_0" and dev.booted_version() == "1.1"
    assert {s["label"]: s["state"] for s in info["slots"]}["ota_1"] == "invalid"
    assert info["nvs"]["failed_ver"] == "1.2"

    evts = events("dev-2")
    rolled = [e for e in evts if e["kind"] == "rolled_back"]
    assert len(rolled) == 1 and rolled[0]["version"] == "1.2" and rolled[0]["reason"] == "self_test_failed"
    assert "simulated self-test failure" in rolled[0]["detail"]
    # mf_ver is back at what it was before the install, so the channel's older manifests are not taken for
    # replays (a halted rollout serves them again); 1.2's manifest is refused as failed before,
    # reported once per manifest and boot, never downloaded again.
    assert info["nvs"]["mf_ver"] == 0  # as before the install: 1.1 was flashed over USB
    refusals = [e["reason"] for e in evts if e["kind"] == "rejected"]
    assert refusals == ["version_failed_before"]
    assert cli("refresh").returncode == 0
    dev.run(polls=3)
    evts = events("dev-2")
    assert [e["reason"] for e in evts if e["kind"] == "rejected"] == ["version_failed_before"] * 2
    assert kinds(evts).count("download_started") == 1
    assert device_state("dev-2")["version"] == "1.1"


def test_reset_before_confirmation_rolls_back(cli, enroll, make_image, events):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    dev = enroll("dev-3")
    dev.flash_image(make_image("1.1"))
    assert cli("publish", "1.2", str(make_image("1.2", payload=b"OTAML-SIM:crash-on-boot\n"))).returncode == 0
    log = dev.run(polls=2)
    assert "simulated crash before the image confirmed itself" in log
    assert "ota_1 was pending verification at reset: aborted, rolling back" in log
    assert dev.booted_version() == "1.1"
    assert {s["label"]: s["state"] for s in dev.info()["slots"]}["ota_1"] == "aborted"
    rolled = [e for e in events("dev-3") if e["kind"] == "rolled_back"]
    assert [(e["version"], e["reason"]) for e in rolled] == [("1.2", "reset_while_pending")]


def test_expired_manifest_is_refused(cli, enroll, make_image, events):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    dev = enroll("dev-4")
    dev.flash_image(make_image("1.1"))
    assert cli("publish", "1.2", str(make_image("1.2")), "--expires-in", "1s").returncode == 0
    current = next(r for r in json.loads(cli("list", "--json").stdout) if r["current"])
    expires = datetime.fromisoformat(current["expires"]).replace(tzinfo=UTC).timestamp()
    wait_for(lambda: time.time() > expires, timeout=5, what="the manifest's expiry")
    log = dev.run(polls=3)
    assert "refused 1.2: manifest_expired" in log
    assert dev.booted_version() == "1.1" and dev.info()["boot_slot"] == "ota_0"
    assert [(e["kind"], e["reason"]) for e in events("dev-4")] == [("rejected", "manifest_expired")]  # once, not per poll

    # Without trusted time (no SNTP yet) expiry cannot be judged; the update proceeds on the other rules.
    log = dev.run(2, 100, "--no-trusted-time")
    assert "1.2 confirmed" in log
    info = dev.info()
    assert info["boot_slot"] == "ota_1" and dev.booted_version() == "1.2"
    assert {s["label"]: s["state"] for s in info["slots"]}["ota_1"] == "valid"
    assert kinds(events("dev-4"))[-2:] == ["booted", "confirmed"]
