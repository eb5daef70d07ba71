"""Rollouts at their edges: small fleets, empty channels, rings that cannot succeed, the last step, and
devices that rolled back only because the server was out of reach. Each state must mean what the API,
the CLI and the dashboard say it means."""

from __future__ import annotations

import json
import time

import pytest

from tests.utils.devices import HttpDevice, ring_bucket
from tests.utils.waiting import wait_for

pytestmark = pytest.mark.e2e


def rollout(server, rollout_id: int) -> dict:
    with server.admin() as admin:
        r = admin.get(f"/api/rollouts/{rollout_id}")
    assert r.status_code == 200, r.text
    return r.json()


def start(cli, *args: str) -> dict:
    r = cli("rollout", "start", "1.2", "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture
def published(cli, make_image):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    assert cli("publish", "1.2", str(make_image("1.2")), "--staged").returncode == 0


def small_fleet(server, n: int = 12) -> list[HttpDevice]:
    devices = [HttpDevice.enroll(server, f"small-{i:02d}") for i in range(n)]
    for d in devices:
        assert d.offered() == "1.1"  # a check-in puts it on the channel
    return devices


def test_on_a_small_fleet_the_first_ring_offered_holds_the_lowest_device_and_each_ring_adds_one(server, cli, published):
    fleet = small_fleet(server)
    by_bucket = sorted(fleet, key=lambda d: ring_bucket(d.device_id))
    # The point of the test: 1 % of these 12 devices is nobody, so the nominal first ring is empty.
    assert ring_bucket(by_bucket[0].device_id) >= 100
    ro = start(cli, "--success-pct", "100")  # default rings 1,10,50,100
    assert ro["state"] == "running" and ro["stage"] == 0
    assert ro["bounds"] == [ring_bucket(by_bucket[0].device_id) + 1]
    assert ro["rings_progress"][0]["devices"] == 1
    assert {d.device_id for d in fleet if d.offered() == "1.2"} == {by_bucket[0].device_id}

    seen_per_ring: list[int] = []
    for stage in range(4):
        now = wait_for(lambda: (r := rollout(server, ro["id"]))["stage"] == stage and r, what=f"ring {stage}")
        ring = now["rings_progress"][stage]
        newly = [d for d in fleet if d.version == "1.1" and d.offered() == "1.2"]
        assert len(newly) == ring["devices"] >= 1, f"ring {stage} offered {len(newly)}, holds {ring['devices']}"
        seen_per_ring.append(len(newly))
        for d in newly:
            d.update_to("1.2")
    done = wait_for(lambda: (r := rollout(server, ro["id"]))["state"] == "done" and r, what="done")
    assert sum(seen_per_ring) == len(fleet) and done["confirmed"] == len(fleet)


def test_a_rollout_with_no_matching_device_waits_and_never_becomes_the_baseline(server, cli, published):
    ro = start(cli)
    assert ro["state"] == "waiting" and ro["bounds"] == []
    assert "waiting for devices" in ro["status"]
    # Observation window: ten evaluation periods, and it still waits; nothing offered, nothing promoted.
    time.sleep(10 * float(server.env()["OTAML_ROLLOUT_EVAL_INTERVAL"]))
    assert rollout(server, ro["id"])["state"] == "waiting"
    status = cli("rollout", "status")
    assert status.returncode == 0 and "waiting for devices" in status.stdout
    listing = json.loads(cli("list", "--json").stdout)
    assert [r["version"] for r in listing if r["current"]] == ["1.1"]

    # The first device that checks in on the channel becomes the canary.
    first = HttpDevice.enroll(server, "first-one")
    assert first.offered() == "1.1"  # its first check-in is what puts it on the channel
    running = wait_for(lambda: (r := rollout(server, ro["id"]))["state"] == "running" and r, what="running")
    assert running["bounds"] == [max(100, ring_bucket("first-one") + 1)]
    wait_for(lambda: first.offered() == "1.2", what="the canary's offer")


def test_waiting_rollout_stays_waiting_while_no_device_matches_its_tag(server, cli, published):
    fleet = small_fleet(server, 3)
    ro = start(cli, "--tag", "nowhere")
    assert ro["state"] == "waiting" and "tags nowhere" in ro["status"]
    assert all(d.offered() == "1.1" for d in fleet)
    assert cli("device", "tag", fleet[1].device_id, "nowhere").returncode == 0
    wait_for(lambda: rollout(server, ro["id"])["state"] == "running", what="running once a device carries the tag")
    wait_for(lambda: fleet[1].offered() == "1.2", what="the tagged device's offer")
    assert fleet[0].offered() == "1.1" and fleet[2].offered() == "1.1"


def test_a_ring_that_can_no_longer_succeed_halts_and_says_so(server, cli, published):
    fleet = small_fleet(server)
    ro = start(cli, "--min-reports", "3")  # one failure is below min-reports: only reachability can halt
    canary = next(d for d in fleet if d.offered() == "1.2")
    canary.fail("1.2")
    halted = wait_for(lambda: (r := rollout(server, ro["id"]))["state"] == "halted" and r, what="the halt")
    assert "ring 0 can no longer reach 90% confirmed: 1 of its 1 devices failed" in halted["halt_reason"]
    assert "self_test_failed" in halted["halt_reason"] and halted["attention"]
    status = cli("rollout", "status")
    assert "halted" in status.stdout and "can no longer reach" in status.stdout
    assert all(d.offered() == "1.1" for d in fleet)

    # Resuming acknowledges the failure: the ring counts without it and the rollout goes on.
    assert cli("rollout", "resume").returncode == 0
    advanced = wait_for(lambda: (r := rollout(server, ro["id"]))["stage"] == 1 and r, what="the next ring")
    assert advanced["state"] == "running"


def test_failures_below_the_halt_threshold_are_not_a_green_running(server, cli, make_image):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    assert cli("publish", "1.2", str(make_image("1.2")), "--staged").returncode == 0
    fleet = [HttpDevice.enroll(server, f"dev-{i:04d}") for i in range(60)]
    for d in fleet:
        d.offered()
    ro = start(cli, "--rings", "10,100", "--success-pct", "50", "--min-reports", "50")
    ring0 = [d for d in fleet if d.offered() == "1.2"]
    assert len(ring0) >= 3
    ring0[0].fail("1.2")
    attention = wait_for(lambda: (r := rollout(server, ro["id"]))["failed"] == 1 and r, what="the failure counted")
    assert attention["state"] == "running" and attention["attention"] is True
    assert "1 failed so far" in attention["status"]


def test_the_last_ring_never_promotes_without_the_confirmations_it_asked_for(server, cli, published):
    fleet = small_fleet(server, 2)
    # One ring of 100 %: both devices at once; one confirms and one rolls back at 50 % required.
    ro = start(cli, "--rings", "100", "--success-pct", "100", "--min-reports", "5")
    a, b = fleet
    assert a.offered() == "1.2" and b.offered() == "1.2"
    a.update_to("1.2")
    b.fail("1.2")
    halted = wait_for(lambda: (r := rollout(server, ro["id"]))["state"] == "halted" and r, what="the halt")
    assert "can no longer reach 100% confirmed" in halted["halt_reason"]
    listing = json.loads(cli("list", "--json").stdout)
    assert [r["version"] for r in listing if r["current"]] == ["1.1"]


def test_a_rollback_because_the_server_was_unreachable_is_retried_not_counted(server, cli, published):
    fleet = small_fleet(server, 12)
    ro = start(cli, "--rings", "100", "--min-reports", "1", "--max-failures", "0", "--success-pct", "100")
    d = fleet[0]
    assert d.offered() == "1.2"
    for kind in ("download_started", "verified", "installed", "booted"):
        d.report(kind, "1.2")
    d.report("rolled_back", "1.2", "server_unreachable", "no answer from the server within 300 s")
    now = wait_for(lambda: (r := rollout(server, ro["id"]))["rings_progress"][0]["retrying"] == 1 and r,
                   what="the retrying count")
    assert now["state"] == "running" and now["failed"] == 0  # --max-failures 0 would have halted on a failure
    assert d.offered() == "1.2"  # offered again
    d.update_to("1.2")
    after = wait_for(lambda: (r := rollout(server, ro["id"]))["confirmed"] == 1 and r, what="the retake confirmed")
    assert after["rings_progress"][0]["retrying"] == 0

    # A rollback for any other reason is a failure and that device is never offered the release again.
    e = fleet[1]
    assert e.offered() == "1.2"
    e.fail("1.2")
    halted = wait_for(lambda: (r := rollout(server, ro["id"]))["state"] == "halted" and r, what="the halt")
    assert halted["failed"] == 1
    assert cli("rollout", "resume").returncode == 0
    wait_for(lambda: rollout(server, ro["id"])["state"] == "running", what="resumed")
    assert e.offered() == "1.1"
