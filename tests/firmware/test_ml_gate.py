"""The ML rollout gate with simulated devices running the real model through TFLM.

A fleet of otaml-sim devices runs 1.1 with the shipped model. 1.2 carries the model retrained on a
bench whose plate-voltage divider read 20 % high (firmware/model/variants): it passes its golden
inputs, so every device that takes it confirms it, and it classifies the recorded field samples
differently. Its rollout halts in the first ring, on the class-rate divergence, with both measures on
the card; nobody outside that ring is ever offered it. The same rollout of a 1.2 that carries the
shipped model passes the gate and moves on to its next ring."""

from __future__ import annotations

import json

import pytest

from otaml.image.synthetic import model_payload
from tests.utils.browser import login
from tests.utils.devices import ring_bucket
from tests.utils.processes import ROOT
from tests.utils.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SHIPPED = ROOT / "firmware" / "model"
MISCALIBRATED = ROOT / "firmware" / "model" / "variants" / "plate_reads_20pct_high"
RINGS = "25,100"
RING0_BOUND = 2500
MIN_SAMPLES = 200
THRESHOLD = 0.05


def payload(folder) -> bytes:  # type: ignore[no-untyped-def]
    return model_payload((folder / "amp_health.tflite").read_bytes(), (folder / "amp_health.card.json").read_bytes())


def fleet_ids() -> list[str]:
    """Eight devices, exactly two of them in the first ring (fixed by their ids' buckets)."""
    inside = [f"ml-{i:03d}" for i in range(400) if ring_bucket(f"ml-{i:03d}") < RING0_BOUND][:2]
    outside = [f"ml-{i:03d}" for i in range(400) if ring_bucket(f"ml-{i:03d}") >= RING0_BOUND][:6]
    return inside + outside


def run_rollout(server, cli, enroll, make_image, model_folder, tmp_path):  # type: ignore[no-untyped-def]
    """Starts the fleet on 1.1, publishes 1.2 with ``model_folder``'s model and starts its gated rollout.
    Returns (sims, rollout id, the devices of ring 0)."""
    image11 = make_image("1.1", payload=payload(SHIPPED))
    assert cli("publish", "1.1", str(image11)).returncode == 0
    ids = fleet_ids()
    sims = []
    for device_id in ids:
        sim = enroll(device_id)
        sim.flash_image(image11)
        sim.start(0, 300, "--ml-interval-ms", "50", "--confirm-window-s", "30")
        sims.append(sim)

    def devices() -> dict[str, dict]:
        with server.admin() as admin:
            return {d["device_id"]: d for d in admin.get("/api/devices", params={"limit": 100}).json()["data"]}

    wait_for(lambda: all(d["version"] == "1.1" and d["ml_counters"] for d in devices().values()), 90,
             "every device on 1.1 reporting ML counters")
    image12 = make_image("1.2", payload=payload(model_folder))
    published = cli("publish", "1.2", str(image12), "--staged")
    assert published.returncode == 0, published.stderr
    started = cli("rollout", "start", "1.2", "--rings", RINGS, "--ml-max-divergence", str(THRESHOLD),
                  "--ml-min-samples", str(MIN_SAMPLES), "--ml-window", "600", "--json")
    assert started.returncode == 0, started.stderr
    return sims, json.loads(started.stdout)["id"], {d for d in ids if ring_bucket(d) < RING0_BOUND}


def rollout(server, rollout_id: int) -> dict:  # type: ignore[no-untyped-def]
    with server.admin() as admin:
        return admin.get(f"/api/rollouts/{rollout_id}").json()


def test_a_model_that_sees_the_field_differently_halts_in_the_first_ring(server, cli, enroll, make_image, tmp_path,
                                                                          page, artifacts):
    sims, rollout_id, ring0 = run_rollout(server, cli, enroll, make_image, MISCALIBRATED, tmp_path)
    try:
        halted = wait_for(lambda: (r := rollout(server, rollout_id))["state"] == "halted" and r, 180, "the ML gate to halt")
    finally:
        for sim in sims:
            sim.kill()
    assert halted["stage"] == 0
    reason = halted["halt_reason"]
    assert reason.startswith("ML gate: class rates diverge from 1.1"), reason
    assert "latency" in reason and "predictions" in reason  # both measures and the samples behind them
    ml = halted["ml"]
    assert ml["enough"] and ml["samples"] >= MIN_SAMPLES and ml["baseline_samples"] >= MIN_SAMPLES
    assert ml["divergence"] > THRESHOLD
    assert ml["rates"]["failsoon"] > ml["baseline_rates"]["failsoon"] + 0.2  # the field reads as failing valves
    # The devices that took it confirmed it (its golden inputs pass): only the gate could stop it.
    with server.admin() as admin:
        events = {s.device_id: admin.get(f"/api/devices/{s.device_id}/events").json()["data"] for s in sims}
    took = {d for d, evts in events.items() if any(e["version"] == "1.2" for e in evts)}
    assert took == ring0, f"1.2 went to {sorted(took)}, the first ring is {sorted(ring0)}"
    for device_id in took:
        assert [e["kind"] for e in events[device_id] if e["version"] == "1.2"][0] == "confirmed"

    login(page, server)
    card = page.locator(f"[data-testid=rollout-{rollout_id}]")
    assert card.get_attribute("data-state") == "halted"
    assert "ML gate" in card.locator("[data-testid=halt-reason]").inner_text()
    shown = float(card.locator("[data-testid=ml-divergence]").get_attribute("data-value"))
    assert abs(shown - ml["divergence"]) < 0.05  # the page and the API describe the same window
    assert card.locator("[data-testid=ml-latency]").count() == 1
    card.screenshot(path=str(artifacts / "rollout-ml-gate-halted.png"))
    page.set_viewport_size({"width": 390, "height": 900})
    page.goto(f"{server.url}/dashboard/rollouts/{rollout_id}")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(artifacts / "rollout-ml-gate-halted-390.png"), full_page=True)


def test_the_same_model_passes_the_gate_and_the_rollout_moves_on(server, cli, enroll, make_image, tmp_path):
    sims, rollout_id, _ = run_rollout(server, cli, enroll, make_image, SHIPPED, tmp_path)
    try:
        moved = wait_for(lambda: r if ((r := rollout(server, rollout_id))["stage"] >= 1 or r["state"] == "halted") else None,
                         180, "the rollout to pass the gate or halt")
    finally:
        for sim in sims:
            sim.kill()
    assert moved["state"] in ("running", "done"), moved["halt_reason"]
    assert moved["stage"] >= 1
    final = rollout(server, rollout_id)["ml"]
    assert final["divergence"] is not None and final["divergence"] < THRESHOLD
