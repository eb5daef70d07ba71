"""What each ring of a rollout did, from the device table (who is in a ring) and the update events of
the rollout's version (what happened to them). Plain SQL aggregates plus one pass over the devices
that reported anything for this version, so it stays cheap at 100k devices."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, func, literal, or_
from sqlmodel import Session, select

from otaml.fleet.protocol import EventKind
from otaml.fleet.tags import has_tag
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


def narrowed_by(tags: Collection[str], devices: Collection[str]) -> list:  # type: ignore[type-arg]
    """SQL for rings.matches: every tag, and the device list if there is one."""
    conds = [has_tag(tag) for tag in tags]
    if devices:
        conds.append(Device.device_id.in_(devices))  # type: ignore[attr-defined]
    return conds


def device_filter(rollout: Rollout) -> list:  # type: ignore[type-arg]
    """SQL conditions: on the rollout's channel and matching its tags and device list."""
    return [Device.channel == rollout.channel, *narrowed_by(rollout.tags, rollout.devices)]


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

    # Per device the latest outcome wins (a rejection retried into a confirm is a success). Aggregated
    # in the database: a 100k-device rollout is a few GROUP BYs on the (version, kind) index, not 600k
    # rows through Python every evaluation.
    of_version = [DeviceEvent.version == rollout.version, DeviceEvent.created_at >= rollout.started_at]
    last_outcome = (
        select(DeviceEvent.device_id, func.max(DeviceEvent.id).label("mid"))  # type: ignore[call-overload]
        .where(*of_version, DeviceEvent.kind.in_([k.value for k in SUCCESS | FAILURE]))  # type: ignore[attr-defined]
        .group_by(DeviceEvent.device_id)
        .subquery()
    )
    outcomes = session.exec(
        select(ring_col, DeviceEvent.kind, DeviceEvent.reason, func.count())  # type: ignore[call-overload]
        .select_from(DeviceEvent)
        .join(last_outcome, DeviceEvent.id == last_outcome.c.mid)
        .join(Device, Device.device_id == DeviceEvent.device_id)
        .where(*device_filter(rollout))
        .group_by(ring_col, DeviceEvent.kind, DeviceEvent.reason)
    ).all()
    # Silent: took the update (download started .. booted), no outcome, and not heard of since.
    took = (
        select(DeviceEvent.device_id, func.max(DeviceEvent.created_at).label("at"))  # type: ignore[call-overload]
        .where(*of_version, DeviceEvent.kind.in_([k.value for k in TOOK]))  # type: ignore[attr-defined]
        .group_by(DeviceEvent.device_id)
        .subquery()
    )
    cutoff = now - timedelta(seconds=rollout.silence_timeout)
    silent_rows = session.exec(
        select(ring_col, func.count())  # type: ignore[call-overload]
        .select_from(took)
        .join(Device, Device.device_id == took.c.device_id)
        .where(
            *device_filter(rollout),
            took.c.device_id.not_in(select(last_outcome.c.device_id)),
            took.c.at < cutoff,
            or_(Device.last_seen.is_(None), Device.last_seen < cutoff),  # type: ignore[union-attr, operator]
        )
        .group_by(ring_col)
    ).all()

    confirmed, failed, silent = Counter[int](), Counter[int](), Counter[int]()
    reasons: Counter[str] = Counter()
    for ring, kind, reason, n in outcomes:
        if kind in SUCCESS:
            confirmed[ring] += n
        else:
            failed[ring] += n
            reasons[f"{kind} ({reason})"] += n
    for ring, n in silent_rows:
        silent[ring] += n
        failed[ring] += n
        reasons["silent after taking the update"] += n

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


