"""What each ring of a rollout did, from the device table (who is in a ring) and the update events of
the rollout's version (what happened to them). Plain SQL aggregates plus one pass over the devices
that reported anything for this version, so it stays cheap at 100k devices."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, literal
from sqlmodel import Session, select

from otaml.fleet.protocol import EventKind
from otaml.models import Device, DeviceEvent, RingProgress, Rollout, RolloutState
from otaml.rollouts import rings as r

SUCCESS = {EventKind.CONFIRMED}
FAILURE = {EventKind.ROLLED_BACK, EventKind.REJECTED}
TOOK = {EventKind.DOWNLOAD_STARTED, EventKind.VERIFIED, EventKind.INSTALLED, EventKind.BOOTED}


@dataclass
class Progress:
    rings: list[RingProgress]
    failure_reasons: Counter[str] = field(default_factory=Counter)

    def upto(self, stage: int) -> tuple[int, int, int]:
        """(devices, confirmed, failed) over rings 0..stage."""
        chosen = self.rings[: stage + 1]
        return sum(x.devices for x in chosen), sum(x.confirmed for x in chosen), sum(x.failed for x in chosen)


def _as_utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def device_filter(rollout: Rollout) -> list:  # type: ignore[type-arg]
    """SQL conditions: on the rollout's channel and matching its tags and device list."""
    conds = [Device.channel == rollout.channel]
    for tag in rollout.tags:
        conds.append(Device.tags.contains(f'"{tag}"'))  # type: ignore[attr-defined]
    if rollout.devices:
        conds.append(Device.device_id.in_(rollout.devices))  # type: ignore[attr-defined]
    return conds


def ring_case(rings: list[int]):  # type: ignore[no-untyped-def]
    if len(rings) == 1:
        return literal(0)
    return case(*[(Device.bucket < r.bound(rings, i), i) for i in range(len(rings) - 1)], else_=len(rings) - 1)


def measure(session: Session, rollout: Rollout, now: datetime | None = None) -> Progress:
    now = now or datetime.now(UTC)
    rings = list(rollout.rings)
    ring_col = ring_case(rings).label("ring")
    population = dict(
        session.exec(select(ring_col, func.count()).where(*device_filter(rollout)).group_by(ring_col)).all()  # type: ignore[call-overload]
    )

    kinds = [k.value for k in SUCCESS | FAILURE | TOOK]
    rows = session.exec(
        select(DeviceEvent.device_id, DeviceEvent.kind, DeviceEvent.reason, DeviceEvent.created_at, Device.bucket, Device.last_seen)  # type: ignore[call-overload]
        .join(Device, Device.device_id == DeviceEvent.device_id)
        .where(
            DeviceEvent.version == rollout.version,
            DeviceEvent.kind.in_(kinds),  # type: ignore[attr-defined]
            DeviceEvent.created_at >= rollout.started_at,
            *device_filter(rollout),
        )
        .order_by(DeviceEvent.id)
    ).all()
    # Per device: the latest outcome wins (a rejection retried into a confirm is a success), and the
    # latest sign of life for the silence timeout.
    outcome: dict[str, tuple[str, str]] = {}
    heard: dict[str, datetime] = {}  # devices that took the update: when they were last heard of
    ring_of: dict[str, int] = {}
    for device_id, kind, reason, at, b, last_seen in rows:
        ring_of[device_id] = r.ring_of(rings, b)
        if kind in SUCCESS or kind in FAILURE:
            outcome[device_id] = (kind, reason)
        else:
            heard[device_id] = max(_as_utc(at), _as_utc(last_seen)) if last_seen else _as_utc(at)

    limit = timedelta(seconds=rollout.silence_timeout)
    confirmed, failed, silent = Counter[int](), Counter[int](), Counter[int]()
    reasons: Counter[str] = Counter()
    for device_id, ring in ring_of.items():
        if device_id in outcome:
            kind, reason = outcome[device_id]
            if kind in SUCCESS:
                confirmed[ring] += 1
            else:
                failed[ring] += 1
                reasons[f"{kind} ({reason})"] += 1
        else:
            if now - heard[device_id] > limit:
                silent[ring] += 1
                failed[ring] += 1
                reasons["silent after taking the update"] += 1

    progress = []
    for i, pct in enumerate(rings):
        n = population.get(i, 0)
        done = confirmed[i] + failed[i]
        progress.append(
            RingProgress(
                ring=i, percent=pct, devices=n, confirmed=confirmed[i], failed=failed[i], silent=silent[i],
                pending=max(n - done, 0), offered=i <= rollout.stage,
            )
        )
    return Progress(progress, reasons)


@dataclass(frozen=True)
class Decision:
    state: RolloutState
    stage: int
    halt_reason: str = ""

    def describe(self, rollout: Rollout) -> str:
        if self.state == RolloutState.HALTED:
            return f"halted: {self.halt_reason}"
        if self.state == RolloutState.DONE:
            return "done: every ring succeeded"
        return f"advanced to ring {self.stage} ({rollout.rings[self.stage]}%)"


def decide(rollout: Rollout, progress: Progress, now: datetime | None = None) -> Decision | None:
    """The rollout's next state, or None to stay. Pure: every server process that sees the same rows
    decides the same, and the compare-and-set in ``evaluate`` lets exactly one of them write it."""
    if rollout.state != RolloutState.RUNNING:
        return None
    now = now or datetime.now(UTC)
    _, confirmed, failed = progress.upto(rollout.stage)
    failed -= min(rollout.acknowledged_failures, failed)
    reports = confirmed + failed
    if reports >= rollout.min_reports:
        share = 100.0 * failed / reports
        over_count = rollout.max_failures is not None and failed > rollout.max_failures
        over_share = rollout.max_failure_pct is not None and share > rollout.max_failure_pct
        if over_count or over_share:
            limit = (
                f"more than {rollout.max_failures} failures" if over_count else f"{share:.0f}% > {rollout.max_failure_pct:g}%"
            )
            top = ", ".join(f"{n} {why}" for why, n in progress.failure_reasons.most_common(3))
            return Decision(RolloutState.HALTED, rollout.stage, f"{failed} of {reports} reports failed ({limit}): {top}")

    ring = progress.rings[rollout.stage]
    soaked = now - _as_utc(rollout.stage_started_at) >= timedelta(seconds=rollout.soak_seconds)
    succeeded = ring.devices == 0 or 100.0 * ring.confirmed / ring.devices >= rollout.success_pct
    if soaked and succeeded:
        if rollout.stage == len(rollout.rings) - 1:
            return Decision(RolloutState.DONE, rollout.stage)
        return Decision(RolloutState.RUNNING, rollout.stage + 1)
    return None


