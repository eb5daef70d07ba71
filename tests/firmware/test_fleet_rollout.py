"""The issue's scenario end to end: 50 simulated devices (the real firmware core, host build) on 1.1;
a rollout of 1.2 whose build fails its self-test. The first ring tries it and rolls back, the rollout
halts itself, nobody outside that ring is ever offered 1.2, and the dashboard shows the halt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.utils.browser import login
from tests.utils.devices import ring_bucket
from tests.utils.sim import SIM_PLAIN, SimDevice
from tests.utils.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FLEET = [f"node-{i:03d}" for i in range(50)]
RINGS = [10, 50, 100]
WINDOW_POLLS = 10




def test_fifty_devices_a_failing_first_ring_halts_the_rollout(server, cli, make_image, tmp_path, page, artifacts):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    image11 = make_image("1.1")
    sims = []
    with server.admin() as admin:
        for device_id in FLEET:
            r = admin.post("/api/devices", json={"device_id": device_id})
            assert r.status_code == 201, r.text
            sim = SimDevice(tmp_path / f"{device_id}.flash", server.url, device_id, r.json()["token"], binary=SIM_PLAIN)
            sim.flash_image(image11)
            sims.append(sim)
    ring0 = {d for d in FLEET if ring_bucket(d) < RINGS[0] * 100}
    assert len(ring0) >= 3, "the fleet's ids must put at least 3 devices into the first ring"

    def fleet_state() -> dict[str, dict]:
        with server.admin() as admin:
            return {d["device_id"]: d for d in admin.get("/api/devices", params={"limit": 1000}).json()["data"]}

    try:
        for sim in sims:
            sim.start(polls=0, interval_ms=300)
        wait_for(lambda: sum(d["version"] == "1.1" for d in fleet_state().values()) == len(FLEET), 60, "every device on 1.1")

        bad = make_image("1.2", payload=b"OTAML-SIM:selftest=fail\n")
        assert cli("publish", "1.2", str(bad), "--staged").returncode == 0
        started = cli("rollout", "start", "1.2", "--rings", ",".join(map(str, RINGS)), "--min-reports", "3",
                      "--max-failure-pct", "20", "--json")
        assert started.returncode == 0, started.stderr

        with server.admin() as admin:
            halted = wait_for(lambda: (r := admin.get("/api/rollouts?channel=stable").json()["data"][0])["state"] == "halted" and r,
                              90, "the rollout to halt itself")
        # The observation window: every device keeps polling (300 ms) until it has checked in at least
        # WINDOW_POLLS poll intervals after the halt, so each had that many chances to be offered 1.2.
        halted_at = datetime.fromisoformat(halted["updated_at"]).replace(tzinfo=UTC)
        after = halted_at + timedelta(milliseconds=300 * WINDOW_POLLS)
        wait_for(lambda: all(d["last_seen"] and datetime.fromisoformat(d["last_seen"]).replace(tzinfo=UTC) >= after
                             for d in fleet_state().values()), 60, f"every device to poll {WINDOW_POLLS} times after the halt")
    finally:
        for sim in sims:
            sim.kill()

    assert halted["stage"] == 0
    assert "self_test_failed" in halted["halt_reason"] and halted["failed"] >= 3
    with server.admin() as admin:
        events = {d: admin.get(f"/api/devices/{d}/events", params={"limit": 1000}).json()["data"] for d in FLEET}
    took = {d for d, evts in events.items() if any(e["version"] == "1.2" for e in evts)}
    assert took and took <= ring0, f"offered 1.2 outside the first ring: {sorted(took - ring0)}"
    for device_id in took:
        kinds = [e["kind"] for e in events[device_id] if e["version"] == "1.2"]
        assert "rolled_back" in kinds and "confirmed" not in kinds, (device_id, kinds)
    for sim in sims:  # every device runs 1.1 again, read from its flash
        assert sim.booted_version() == "1.1", sim.device_id
    state = fleet_state()
    assert all(state[d]["version"] == "1.1" for d in FLEET)

    login(page, server)
    card = page.locator(f"[data-testid=rollout-{halted['id']}]")
    assert card.get_attribute("data-state") == "halted"
    assert "self_test_failed" in card.locator("[data-testid=halt-reason]").inner_text()
    assert page.locator("[data-testid=devices-total]").inner_text() == str(len(FLEET))
    page.screenshot(path=str(artifacts / "fleet-50-sims-halted.png"), full_page=True)
