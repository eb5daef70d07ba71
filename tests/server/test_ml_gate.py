"""The ML gate's rule (rollouts/mlgate.py), as progress.decide applies it: a separate step after every
failure rule, halting on divergence or latency with enough samples, holding the ring without them. The
pure parts are property-tested; the latency gate runs end to end with devices at the HTTP level."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from otaml.models import MlMeasuresPublic, RingProgress, Rollout, RolloutState
from otaml.rollouts.mlgate import jensen_shannon, judge, rates
from otaml.rollouts.progress import Progress, decide
from tests.utils.devices import HttpDevice, ring_bucket
from tests.utils.waiting import wait_for

counts = st.dictionaries(st.sampled_from(["healthy", "unstable", "overdriven", "failsoon"]), st.integers(0, 10_000), min_size=1)


@given(counts, counts)
@settings(max_examples=300, deadline=None)
def test_jensen_shannon_is_a_bounded_symmetric_distance(a, b):
    p, q = rates(a), rates(b)
    if not p or not q:
        return
    d = jensen_shannon(p, q)
    assert 0.0 <= d <= 1.0
    assert math.isclose(d, jensen_shannon(q, p), abs_tol=1e-12)
    assert jensen_shannon(p, p) < 1e-12
    if not set(k for k, v in p.items() if v) & set(k for k, v in q.items() if v):
        assert math.isclose(d, 1.0, abs_tol=1e-9)  # nothing in common: one bit


def _rollout(**kw) -> Rollout:  # type: ignore[no-untyped-def]
    base = dict(channel="stable", version="1.2", release_id=1, rings=[10, 100], bounds=[1000], state=RolloutState.RUNNING,
                stage=0, success_pct=90.0, min_reports=3, max_failure_pct=20.0, ml_min_samples=500,
                stage_started_at=datetime.now(UTC) - timedelta(hours=1))
    return Rollout(**{**base, **kw})


def _progress(confirmed: int, failed: int = 0, devices: int = 4) -> Progress:
    rings = [RingProgress(ring=0, percent=10, bound=1000, devices=devices, confirmed=confirmed, failed=failed, silent=0,
                          pending=devices - confirmed - failed, offered=True),
             RingProgress(ring=1, percent=100, bound=10000, devices=20, confirmed=0, failed=0, silent=0, pending=20, offered=False)]
    return Progress(rings)


def _ml(divergence: float, samples: int = 1000, latency: float | None = 0.0) -> MlMeasuresPublic:
    return MlMeasuresPublic(baseline_version="1.1", window_s=900, samples=samples, baseline_samples=5000,
                            rates={"healthy": 0.1, "failsoon": 0.9}, baseline_rates={"healthy": 0.7, "failsoon": 0.3},
                            divergence=divergence, latency_us=1000.0 * (1 + (latency or 0) / 100), baseline_latency_us=1000.0,
                            latency_regression_pct=latency, enough=samples >= 500)


def test_without_thresholds_the_gate_says_nothing():
    r = _rollout()
    assert decide(r, _progress(4), ml=_ml(0.9)) == decide(r, _progress(4))  # advances either way
    assert decide(r, _progress(4)).stage == 1  # type: ignore[union-attr]


def test_divergence_over_the_threshold_halts_and_names_both_measures():
    d = decide(_rollout(ml_max_divergence=0.05), _progress(4), ml=_ml(0.31, latency=12.0))
    assert d is not None and d.state == RolloutState.HALTED and d.stage == 0
    assert d.halt_reason.startswith("ML gate: class rates diverge from 1.1, failsoon 30% -> 90%")
    assert "class-rate divergence 0.310 (max 0.05)" in d.halt_reason and "latency +12%" in d.halt_reason
    assert len(d.halt_reason) <= 256


def test_latency_over_the_threshold_halts():
    d = decide(_rollout(ml_max_latency_regression=25.0), _progress(4), ml=_ml(0.001, latency=60.0))
    assert d is not None and d.state == RolloutState.HALTED and "inference is slower (1600 vs 1000 us)" in d.halt_reason


def test_under_the_thresholds_the_ring_advances():
    d = decide(_rollout(ml_max_divergence=0.05, ml_max_latency_regression=25.0), _progress(4), ml=_ml(0.01, latency=5.0))
    assert d is not None and (d.state, d.stage) == (RolloutState.RUNNING, 1)


def test_without_enough_samples_a_configured_gate_holds_the_ring():
    r = _rollout(ml_max_divergence=0.05)
    assert decide(r, _progress(4), ml=_ml(0.9, samples=100)) is None  # not judged, not advanced
    assert decide(r, _progress(4), ml=None) is None
    hold = judge(r, _ml(0.9, samples=100)).hold
    assert "waits for 500 predictions on each side (100 on 1.2, 5,000 on 1.1)" in hold


def test_the_failure_rules_come_first():
    # Three rollbacks in a ring of four: the failure rule halts, with its own reason, before the gate looks.
    d = decide(_rollout(ml_max_divergence=0.05), _progress(1, failed=3), ml=_ml(0.9))
    assert d is not None and d.state == RolloutState.HALTED and not d.halt_reason.startswith("ML gate")


def test_latency_regression_halts_a_rollout_end_to_end(server, cli, make_image):
    """Devices at the HTTP level report counters and latency: the release's devices infer 80 % slower."""
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    assert cli("publish", "1.2", str(make_image("1.2")), "--staged").returncode == 0
    devices = [HttpDevice.enroll(server, f"lat-{i:02d}") for i in range(10)]
    for i, d in enumerate(devices):
        d.extra = {"X-Otaml-Ml-Counters": f"healthy={100 * (i + 1)},failsoon={10 * (i + 1)}", "X-Otaml-Ml-Latency-Us": "1000"}
        d.poll()
    started = cli("rollout", "start", "1.2", "--rings", "30,100", "--ml-max-latency-regression", "50",
                  "--ml-min-samples", "50", "--json")
    assert started.returncode == 0, started.stderr
    rollout_id = json.loads(started.stdout)["id"]
    ring0 = [d for d in devices if d.offered() == "1.2"]
    assert ring0 and all(ring_bucket(d.device_id) < 3000 for d in ring0)
    for n, d in enumerate(ring0):
        d.update_to("1.2")
        d.extra = {"X-Otaml-Ml-Counters": "healthy=60,failsoon=6", "X-Otaml-Ml-Latency-Us": "1800", "X-Otaml-Uptime-S": "30"}
        d.poll()
    for d in devices:
        if d not in ring0:  # the baseline keeps predicting at its old speed
            d.extra["X-Otaml-Ml-Counters"] = d.extra["X-Otaml-Ml-Counters"].replace("healthy=", "healthy=1")
            d.poll()

    def state() -> dict:
        with server.admin() as admin:
            return admin.get(f"/api/rollouts/{rollout_id}").json()

    halted = wait_for(lambda: r if (r := state())["state"] == "halted" else None, what="the latency gate")
    assert halted["stage"] == 0
    assert "inference is slower (1800 vs 1000 us)" in halted["halt_reason"]
    assert halted["ml"]["latency_regression_pct"] == 80.0
    status = cli("rollout", "status", str(rollout_id))
    assert "ML gate: class-rate divergence" in status.stdout and "latency +80% (max 50%)" in status.stdout
