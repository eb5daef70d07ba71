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

from otaml.fleet.protocol import EventKind, Reason
from otaml.fleet.tags import has_tag
from otaml.models import Device, DeviceEvent, MlMeasuresPublic, RingProgress, Rollout, RolloutState
from otaml.rollouts import mlgate
from otaml.rollouts import rings as r

SUCCESS = {EventKind.CONFIRMED}
FAILURE = {EventKind.ROLLED_BACK, EventKind.REJECTED}
TOOK = {EventKind.DOWNLOAD_STARTED, EventKind.DOWNLOAD_PROGRESS, EventKind.VERIFIED, EventKind.INSTALLED, EventKind.BOOTED}
# A rollback because the device could not reach the server within its confirmation window says nothing
# certain about the build: the device takes the release again (a bounded number of times, then it
# refuses it as version_failed_before, which is a failure). manifests/README.md, "The rollback gate".
RETRYABLE = {Reason.SERVER_UNREACHABLE}


def rolled_back_devices(version: str):  # type: ignore[no-untyped-def]
    """SQL: the devices never offered ``version`` again (they rolled it back for a reason that says
    something about the build)."""
    return select(DeviceEvent.device_id).where(
        DeviceEvent.version == version, DeviceEvent.kind == EventKind.ROLLED_BACK,
        DeviceEvent.reason.not_in(RETRYABLE),  # type: ignore[attr-defined]
    )


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


def ring_case(bounds: list[int]):  # type: ignore[no-untyped-def]
    """SQL: the ring index of a device from its bucket and the rings' bounds."""
    if len(bounds) == 1:
        return literal(0)
    return case(*[(Device.bucket < b, i) for i, b in enumerate(bounds[:-1])], else_=len(bounds) - 1)


def first_new_bucket(session: Session, rollout: Rollout, above: int) -> int | None:
    """The lowest bucket, at or above ``above``, of a device the rollout matches (None if none)."""
    return session.exec(
        select(func.min(Device.bucket)).where(*device_filter(rollout), Device.bucket >= above)  # type: ignore[call-overload]
    ).one()


def measure(session: Session, rollout: Rollout, now: datetime | None = None, reached: list[int] | None = None) -> Progress:
    """Per-ring progress; ``reached`` overrides the stored bounds of the reached rings (evaluation
    measures with the bounds it is about to write)."""
    now = now or datetime.now(UTC)
    rings = list(rollout.rings)
    bounds = r.bounds_for(rings, rollout.bounds if reached is None else reached)
    ring_col = ring_case(bounds).label("ring")
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

    confirmed, failed, silent, retrying = Counter[int](), Counter[int](), Counter[int](), Counter[int]()
    reasons: Counter[str] = Counter()
    for ring, kind, reason, n in outcomes:
        if kind in SUCCESS:
            confirmed[ring] += n
        elif kind == EventKind.ROLLED_BACK and reason in RETRYABLE:
            retrying[ring] += n  # the device takes the release again: not an outcome yet
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
                ring=i, percent=pct, bound=bounds[i], devices=n, confirmed=confirmed[i], failed=failed[i],
                silent=silent[i], pending=max(n - done, 0), retrying=retrying[i], offered=i <= rollout.stage,
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
        if self.state == RolloutState.WAITING:
            return "waiting for devices: none matches yet"
        return f"advanced to ring {self.stage} ({rollout.rings[self.stage]}%)"


def _top(progress: Progress) -> str:
    return ", ".join(f"{n} {why}" for why, n in progress.failure_reasons.most_common(3))


def decide(rollout: Rollout, progress: Progress, now: datetime | None = None,
           ml: MlMeasuresPublic | None = None) -> Decision | None:
    """The rollout's next state, or None to stay. Pure: every server process that sees the same rows
    decides the same, and the compare-and-set in ``evaluate`` lets exactly one of them write it.

    In order: halt on too many failures; halt when the current ring can no longer reach its success
    threshold (or, at the last ring, when the release can no longer get the confirmations it needs to
    become the baseline); then the ML gate, a step of its own (``ml``: the measures of
    ``mlgate.measure``): halt when the release's devices diverge from the baseline's beyond the
    rollout's thresholds, and hold the ring while the gate lacks samples; advance once the ring
    succeeded and soaked. Failures the operator acknowledged by resuming count neither as failures nor
    against the threshold."""
    if rollout.state != RolloutState.RUNNING:
        return None
    now = now or datetime.now(UTC)
    stage, pct = rollout.stage, rollout.success_pct
    devices_all, confirmed_all, failed_all = progress.upto(stage)
    acknowledged = min(rollout.acknowledged_failures, failed_all)
    failed = failed_all - acknowledged
    reports = confirmed_all + failed
    if reports >= rollout.min_reports:
        share = 100.0 * failed / reports
        over_count = rollout.max_failures is not None and failed > rollout.max_failures
        over_share = rollout.max_failure_pct is not None and share > rollout.max_failure_pct
        if over_count or over_share:
            limit = (
                f"more than {rollout.max_failures} failures" if over_count else f"{share:.0f}% > {rollout.max_failure_pct:g}%"
            )
            return Decision(RolloutState.HALTED, stage, f"{failed} of {reports} reports failed ({limit}): {_top(progress)}")

    ring = progress.rings[stage]
    earlier_failed = sum(x.failed for x in progress.rings[:stage])
    ring_ack = min(ring.failed, max(0, rollout.acknowledged_failures - earlier_failed))
    if ring.devices > 0:
        counted = ring.devices - ring_ack
        # Silent devices may still come back and confirm; devices that rolled back are never offered
        # the release again, and a refusal stands until a new manifest.
        lost = ring.failed - ring.silent - ring_ack
        if lost > 0 and 100.0 * (counted - lost) / counted < pct:
            return Decision(
                RolloutState.HALTED, stage,
                f"ring {stage} can no longer reach {pct:g}% confirmed: {lost} of its {counted} devices failed "
                f"({_top(progress)})",
            )
        succeeded = counted == 0 or 100.0 * ring.confirmed / counted >= pct
    else:
        succeeded = True  # an empty ring: every matching device is in an earlier one (small fleets)

    last = stage == len(rollout.rings) - 1
    if last:
        # The baseline is the whole channel's: never without the confirmations the rollout asked for.
        counted_all = devices_all - acknowledged
        lost_all = failed_all - acknowledged - sum(x.silent for x in progress.rings[: stage + 1])
        if counted_all <= 0 or (lost_all > 0 and 100.0 * (counted_all - lost_all) / counted_all < pct):
            return Decision(
                RolloutState.HALTED, stage,
                f"the release can no longer become the baseline: {confirmed_all} of {max(counted_all, 0)} devices "
                f"confirmed, {pct:g}% needed ({_top(progress) or 'no device left to confirm'})",
            )
        succeeded = succeeded and confirmed_all > 0 and 100.0 * confirmed_all / counted_all >= pct

    # The ML gate: only after every failure rule, so a build that rolls back is halted for that first.
    gate = mlgate.judge(rollout, ml)
    if gate.halt:
        return Decision(RolloutState.HALTED, stage, gate.halt)
    if gate.hold:
        succeeded = False

    soaked = now - _as_utc(rollout.stage_started_at) >= timedelta(seconds=rollout.soak_seconds)
    if soaked and succeeded:
        return Decision(RolloutState.DONE, stage) if last else Decision(RolloutState.RUNNING, stage + 1)
    return None
