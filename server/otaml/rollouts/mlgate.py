"""The ML gate: does the model behave on the new release as it does on the baseline?

A build can pass every golden vector of its model card and still see the field differently: a model
retrained on data from a differently calibrated sensor, a normalization that moved, a quantization
change. The golden vectors prove that the device computes what the card says; they cannot prove that
what the card says is what the field needs. So a rollout can compare, over the last ``ml_window``
seconds of fleet history, the devices running the release with the devices running the channel's
baseline release:

- **class rates**: each side's predictions per class (deltas of the devices' ML counters, summed over
  its devices), as shares. Their distance is the **Jensen-Shannon divergence** in bits (0: the same
  rates, 1: no class in common). Chosen over total variation because a shift into a rare class
  (``failsoon`` going from 1 % to 6 %) is what an ML fleet cares about most, and JS weighs a relative
  change in a small class more than total variation's absolute share does; chosen over KL divergence
  because it is symmetric and stays finite when one side never predicts a class. Two independent
  samples of n predictions each from one distribution over k classes differ by about
  (k - 1) / (4 n ln 2) bits: 0.002 for 4 classes and the default 500 (0.008 at the 99th percentile),
  so thresholds of 0.02 to 0.05 sit well above the noise.
- **latency**: the mean inference latency the devices report, as a regression in percent.

``measure`` reads the history (SQL); ``judge`` is pure and is what ``progress.decide`` calls. Neither
side is judged before it has ``ml_min_samples`` predictions in the window; until then a configured gate
holds the ring (it does not advance, the card says what it waits for), so a fast ring cannot slip past it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlmodel import Session, select

from otaml.core.db import sum_int
from otaml.fleet.history import MINUTE, NOT_A_CLASS, bucket_start, epoch
from otaml.models import HistoryBucket, HistoryClass, MlMeasuresPublic, Release, Rollout


def gated(rollout: Rollout) -> bool:
    return rollout.ml_max_divergence is not None or rollout.ml_max_latency_regression is not None


def rates(counts: dict[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: v / total for k, v in sorted(counts.items())} if total else {}


def jensen_shannon(p: dict[str, float], q: dict[str, float]) -> float:
    """JS divergence in bits between two distributions over class labels (missing labels are 0)."""
    labels = set(p) | set(q)
    m = {k: (p.get(k, 0.0) + q.get(k, 0.0)) / 2 for k in labels}

    def kl(a: dict[str, float]) -> float:
        return sum(a[k] * math.log2(a[k] / m[k]) for k in a if a[k] > 0)

    return max(0.0, min(1.0, (kl(p) + kl(q)) / 2))


def baseline_version(session: Session, channel: str) -> str | None:
    """The channel's baseline release: its newest release that is not staged."""
    return session.exec(
        select(Release.version).where(Release.channel == channel, Release.staged == False)  # type: ignore[call-overload]  # noqa: E712
        .order_by(Release.id.desc()).limit(1)  # type: ignore[union-attr]
    ).first()


def _side(session: Session, channel: str, version: str, since: int) -> tuple[dict[str, int], float | None]:
    c = HistoryClass
    counts = {
        label: int(n or 0)
        for label, n in session.exec(  # type: ignore[call-overload]
            select(c.label, sum_int(c.count))
            .where(c.resolution == MINUTE, c.start >= since, c.channel == channel, c.version == version)
            .group_by(c.label)
        ).all()
        if label not in NOT_A_CLASS and n
    }
    b = HistoryBucket
    ls, ln = session.exec(  # type: ignore[call-overload]
        select(sum_int(b.latency_sum), sum_int(b.latency_n))
        .where(b.resolution == MINUTE, b.start >= since, b.channel == channel, b.version == version)
    ).one()
    return counts, (ls / ln if ln else None)


def measure(session: Session, rollout: Rollout, now: datetime | None = None) -> MlMeasuresPublic | None:
    """The gate's measures from the minute buckets of the last ``ml_window`` seconds, or None when no
    device on the release or the baseline reported ML counters in that window."""
    now = now or datetime.now(UTC)
    since = bucket_start(epoch(now) - rollout.ml_window, MINUTE)
    base = baseline_version(session, rollout.channel)
    new_counts, new_latency = _side(session, rollout.channel, rollout.version, since)
    base_counts, base_latency = _side(session, rollout.channel, base, since) if base else ({}, None)
    if not new_counts and not base_counts and new_latency is None and base_latency is None:
        return None
    p, q = rates(new_counts), rates(base_counts)
    samples, base_samples = sum(new_counts.values()), sum(base_counts.values())
    regression = (100.0 * (new_latency / base_latency - 1.0)) if new_latency is not None and base_latency else None
    return MlMeasuresPublic(
        baseline_version=base, window_s=rollout.ml_window, samples=samples, baseline_samples=base_samples,
        rates=p, baseline_rates=q, divergence=jensen_shannon(p, q) if p and q else None,
        latency_us=new_latency, baseline_latency_us=base_latency, latency_regression_pct=regression,
        enough=samples >= rollout.ml_min_samples and base_samples >= rollout.ml_min_samples,
    )


@dataclass(frozen=True)
class Verdict:
    halt: str = ""  # a reason: the rollout halts
    hold: str = ""  # what the gate waits for: the ring does not advance


def describe(rollout: Rollout, ml: MlMeasuresPublic) -> str:
    """Both measures against their thresholds, and the samples behind them, in one line."""
    div = f"{ml.divergence:.3f}" if ml.divergence is not None else "-"
    lat = f"{ml.latency_regression_pct:+.0f}%" if ml.latency_regression_pct is not None else "-"
    div_max = f" (max {rollout.ml_max_divergence:g})" if rollout.ml_max_divergence is not None else ""
    lat_max = f" (max +{rollout.ml_max_latency_regression:g}%)" if rollout.ml_max_latency_regression is not None else ""
    base = ml.baseline_version or "no baseline"
    return (f"class-rate divergence {div}{div_max}, latency {lat}{lat_max}; {rollout.version} {ml.samples:,} vs {base} "
            f"{ml.baseline_samples:,} predictions in {ml.window_s // 60} min")


def judge(rollout: Rollout, ml: MlMeasuresPublic | None) -> Verdict:
    """Pure: halt when a measure with enough samples exceeds its threshold; hold while a configured gate
    lacks samples; otherwise nothing to say."""
    if not gated(rollout):
        return Verdict()
    need = rollout.ml_min_samples
    if ml is None or not ml.enough:
        base = ml.baseline_version or "the baseline" if ml else ""
        have = f"{ml.samples:,} on {rollout.version}, {ml.baseline_samples:,} on {base}" if ml else "none yet"
        return Verdict(hold=f"the ML gate waits for {need:,} predictions on each side ({have})")
    over = []
    if rollout.ml_max_divergence is not None and ml.divergence is not None and ml.divergence > rollout.ml_max_divergence:
        over.append(f"class rates diverge from {ml.baseline_version}{_moved(ml)}")
    if (rollout.ml_max_latency_regression is not None and ml.latency_regression_pct is not None
            and ml.latency_regression_pct > rollout.ml_max_latency_regression):
        over.append(f"inference is slower ({ml.latency_us:.0f} vs {ml.baseline_latency_us:.0f} us)")
    if over:
        return Verdict(halt=f"ML gate: {' and '.join(over)}: {describe(rollout, ml)}")
    return Verdict()


def _moved(ml: MlMeasuresPublic) -> str:
    """The class whose share moved most, e.g. " (healthy 62% -> 8%)"."""
    labels = set(ml.rates) | set(ml.baseline_rates)
    if not labels:
        return ""
    k = max(labels, key=lambda x: abs(ml.rates.get(x, 0) - ml.baseline_rates.get(x, 0)))
    return f", {k} {100 * ml.baseline_rates.get(k, 0):.0f}% -> {100 * ml.rates.get(k, 0):.0f}%"
