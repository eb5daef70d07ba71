"""A device that took a release whose rollout then halted or was aborted keeps being served that
release (it would refuse an older manifest as a replay), but it is not stranded there: the next
rollout, or a newer baseline, reaches it like any other device, and the drift filter agrees."""

from __future__ import annotations

import json

from tests.utils.devices import HttpDevice


def drift(server) -> set[str]:  # type: ignore[no-untyped-def]
    with server.admin() as admin:
        return {d["device_id"] for d in admin.get("/api/devices", params={"drift": "firmware", "limit": 100}).json()["data"]}


def test_the_canary_of_an_aborted_release_takes_the_fix(server, cli, make_image):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    assert cli("publish", "1.2", str(make_image("1.2")), "--staged").returncode == 0
    devices = [HttpDevice.enroll(server, f"canary-{i}") for i in range(6)]
    for d in devices:
        d.poll()
    bad = json.loads(cli("rollout", "start", "1.2", "--rings", "20,100", "--json").stdout)
    canaries = [d for d in devices if d.offered() == "1.2"]
    assert canaries
    for d in canaries:
        d.update_to("1.2")
    assert cli("rollout", "abort", str(bad["id"])).returncode == 0
    assert all(d.offered() == "1.2" for d in canaries)  # kept on what it runs, never an older manifest
    assert all(d.offered() == "1.1" for d in devices if d not in canaries)

    assert cli("publish", "1.3", str(make_image("1.3")), "--staged").returncode == 0
    assert cli("rollout", "start", "1.3", "--rings", "20,100").returncode == 0
    assert all(d.offered() == "1.3" for d in canaries)  # the fix's rollout reaches the same ring
    assert {d.device_id for d in canaries} <= drift(server)

    for d in canaries:
        d.update_to("1.3")
    assert cli("rollout", "abort").returncode == 0
    assert cli("publish", "1.4", str(make_image("1.4"))).returncode == 0  # a new baseline, no rollout
    assert {d.offered() for d in devices} == {"1.4"}
    assert drift(server) == {d.device_id for d in devices}
