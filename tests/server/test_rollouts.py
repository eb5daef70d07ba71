"""Staged rollouts against the real server: rings chosen from the device id, offers only inside the
reached rings, advancing on confirmations, halting on failures, and the operator's actions."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.utils.devices import HttpDevice, ring_bucket
from tests.utils.waiting import wait_for

pytestmark = pytest.mark.e2e




def rollout(server, rollout_id: int) -> dict:
    with server.admin() as admin:
        return admin.get(f"/api/rollouts/{rollout_id}").json()


@pytest.fixture
def fleet(server, cli, make_image):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    staged = cli("publish", "1.2", str(make_image("1.2")), "--staged")
    assert staged.returncode == 0, staged.stderr
    assert "rollout start 1.2" in staged.stdout
    devices = [HttpDevice.enroll(server, f"dev-{i:04d}") for i in range(60)]
    for d in devices:
        assert d.offered() == "1.1"  # staged: nobody is offered 1.2 before the rollout starts
    return devices


def start(cli, *args: str) -> dict:
    r = cli("rollout", "start", "1.2", "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_only_the_first_ring_is_offered_and_the_choice_follows_the_device_id(server, cli, fleet):
    ro = start(cli, "--rings", "10,50,100", "--min-reports", "50")  # no halting or advancing in this test
    offered = {d.device_id for d in fleet if d.offered() == "1.2"}
    expected = {d.device_id for d in fleet if ring_bucket(d.device_id) < 1000}
    assert offered == expected and 0 < len(offered) < len(fleet)
    assert [r["devices"] for r in ro["rings_progress"]] == [
        sum(1 for d in fleet if lo <= ring_bucket(d.device_id) < hi) for lo, hi in [(0, 1000), (1000, 5000), (5000, 10000)]
    ]
    status = cli("rollout", "status")
    assert status.returncode == 0 and "running" in status.stdout and "10%" in status.stdout


def test_failures_in_the_first_ring_halt_it_and_nobody_else_is_offered(server, cli, fleet):
    # A low success threshold keeps the ring reachable, so the failure threshold is what halts it.
    ro = start(cli, "--rings", "10,50,100", "--max-failure-pct", "20", "--min-reports", "3", "--success-pct", "10")
    ring0 = [d for d in fleet if ring_bucket(d.device_id) < 1000]
    others = [d for d in fleet if ring_bucket(d.device_id) >= 1000]
    assert len(ring0) >= 4
    for d in ring0[:3]:
        assert d.offered() == "1.2"
        d.fail("1.2")
    halted = wait_for(lambda: (r := rollout(server, ro["id"]))["state"] == "halted" and r, what="the halt")
    assert halted["failed"] == 3 and halted["stage"] == 0
    assert "3 of 3 reports failed" in halted["halt_reason"] and "self_test_failed" in halted["halt_reason"]
    # Halted: not the rest of the ring, not other rings, and not the devices that rolled back.
    assert all(d.offered() == "1.1" for d in ring0 + others)
    status = cli("rollout", "status")
    assert "halted" in status.stdout and "self_test_failed" in status.stdout

    # Resuming acknowledges those failures; the devices that rolled back are still never offered 1.2.
    assert cli("rollout", "resume").returncode == 0
    wait_for(lambda: ring0[3].offered() == "1.2", what="the resumed offer")
    assert all(d.offered() == "1.1" for d in ring0[:3])
    assert rollout(server, ro["id"])["state"] == "running"


def test_confirmations_advance_ring_by_ring_until_the_release_is_the_baseline(server, cli, fleet):
    ro = start(cli, "--rings", "10,50,100", "--success-pct", "100")
    for stage in range(3):
        wait_for(lambda: rollout(server, ro["id"])["stage"] == stage, what=f"ring {stage}")
        for d in fleet:
            if d.version == "1.1" and d.offered() == "1.2":
                d.update_to("1.2")
    done = wait_for(lambda: (r := rollout(server, ro["id"]))["state"] == "done" and r, what="done")
    assert done["confirmed"] == len(fleet) and done["failed"] == 0
    listing = json.loads(cli("list", "--json").stdout)
    current = [r for r in listing if r["current"]]
    assert [r["version"] for r in current] == ["1.2"] and not current[0]["staged"]
    newcomer = HttpDevice.enroll(server, "late-joiner")
    assert newcomer.offered() == "1.2"  # the baseline now
    static = httpx.get(f"{server.url}/firmware.json", headers=newcomer.auth)
    assert json.loads(static.content)["semver"] == "1.2"


def test_silence_after_taking_the_update_counts_as_failure(server, cli, fleet):
    ro = start(cli, "--rings", "10,50,100", "--silence-timeout", "1", "--min-reports", "2", "--max-failures", "1")
    ring0 = [d for d in fleet if ring_bucket(d.device_id) < 1000]
    for d in ring0[:2]:
        d.offered()
        d.report("download_started", "1.2")
    halted = wait_for(lambda: (r := rollout(server, ro["id"]))["state"] == "halted" and r, timeout=20, what="halt on silence")
    assert sum(x["silent"] for x in halted["rings_progress"]) == 2
    assert "silent after taking the update" in halted["halt_reason"]


def test_a_staged_release_under_rollout_can_be_re_signed(server, cli, fleet):
    start(cli, "--rings", "100", "--min-reports", "50")
    before = json.loads(fleet[0].poll().content)
    r = cli("refresh", "--version", "1.2", "--expires-in", "60d")
    assert r.returncode == 0, r.stderr
    after = json.loads(fleet[0].poll().content)
    assert after["semver"] == "1.2" and after["manifest_version"] > before["manifest_version"]
    assert after["expires"] > before["expires"]
    assert [x["version"] for x in json.loads(cli("list", "--json").stdout) if x["current"]] == ["1.1"]  # still staged
    wrong = cli("refresh", "--version", "9.9")
    assert wrong.returncode == 2 and "expected the current or a staged release" in wrong.stderr


def test_operator_actions_and_refusals(server, cli, fleet):
    not_staged = cli("rollout", "start", "1.1")
    assert not_staged.returncode == 2 and "already the baseline" in not_staged.stderr
    missing = cli("rollout", "start", "9.9")
    assert missing.returncode == 2 and "--staged" in missing.stderr
    bad_rings = cli("rollout", "start", "1.2", "--rings", "50,10")
    assert bad_rings.returncode == 2 and "ending at 100" in bad_rings.stderr
    ro = start(cli, "--rings", "10,100", "--min-reports", "50")
    again = cli("rollout", "start", "1.2")
    assert again.returncode == 2 and "resume or abort it first" in again.stderr

    ring0 = [d for d in fleet if ring_bucket(d.device_id) < 1000]
    assert cli("rollout", "pause").returncode == 0
    assert ring0[0].offered() == "1.1"
    assert cli("rollout", "pause").returncode == 2  # from paused: refused with the reason
    assert cli("rollout", "resume").returncode == 0
    assert ring0[0].offered() == "1.2"
    ring0[0].update_to("1.2")

    assert cli("rollout", "abort", str(ro["id"])).returncode == 0
    assert rollout(server, ro["id"])["state"] == "aborted"
    nothing = cli("rollout", "pause")
    assert nothing.returncode == 2 and "expected an unfinished rollout on channel 'stable', found none" in nothing.stderr
    assert ring0[1].offered() == "1.1"  # never offered again...
    assert ring0[0].offered() == "1.2"  # ...but a device already on it keeps its manifest (no replay refusal)
    # 1.2 never becomes the baseline; the next release must still sort above it.
    listing = json.loads(cli("list", "--json").stdout)
    assert [r["version"] for r in listing if r["current"]] == ["1.1"]


def test_tags_narrow_a_rollout_and_pins_and_holds_override_it(server, cli, fleet):
    tagged = fleet[:10]
    for d in tagged:
        assert cli("device", "tag", d.device_id, "berlin", "hw:rev2").returncode == 0
    start(cli, "--rings", "100", "--tag", "berlin", "--min-reports", "50")
    assert {d.device_id for d in fleet if d.offered() == "1.2"} == {d.device_id for d in tagged}

    assert cli("device", "hold", tagged[0].device_id).returncode == 0
    assert tagged[0].offered() == "1.1"  # held on what it runs
    assert cli("device", "pin", fleet[50].device_id, "1.2").returncode == 0
    assert fleet[50].offered() == "1.2"  # pinned beyond its channel's rollout
    bad = cli("device", "tag", fleet[0].device_id, "Not A Tag")
    assert bad.returncode == 2 and "tags" in bad.stderr

    state = json.loads(cli("device", "state", fleet[50].device_id, "--json").stdout)
    assert (state["desired_version"], state["desired_because"], state["firmware_differs"]) == ("1.2", "pin", True)
