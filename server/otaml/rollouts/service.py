"""Rollout operations: start, pause, resume, abort, and the periodic evaluation. Each change bumps
the fleet revision in the same transaction, so every server process picks it up within its TTL."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from otaml.core.errors import NotFoundError, RolloutError
from otaml.fleet.revision import bump_policy
from otaml.models import (
    ACTIVE_ROLLOUT_STATES,
    EVALUATED_ROLLOUT_STATES,
    Release,
    RingProgress,
    Rollout,
    RolloutCreate,
    RolloutPublic,
    RolloutState,
    WebhookEvent,
)
from otaml.releases.publishing import latest_release, newest_manifest
from otaml.ops import mqtt, webhooks
from otaml.rollouts import mlgate
from otaml.rollouts.progress import Decision, decide, first_new_bucket, measure
from otaml.rollouts.rings import entry_bound

log = logging.getLogger("otaml.rollouts")


def active_rollout(session: Session, channel: str) -> Rollout | None:
    return session.exec(
        select(Rollout).where(Rollout.channel == channel, Rollout.state.in_(ACTIVE_ROLLOUT_STATES))  # type: ignore[attr-defined]
    ).first()


def _status(rollout: Rollout, offered: list[RingProgress], hold: str = "") -> tuple[str, bool]:
    """One line saying what the state means now, and whether a running rollout needs a look (failures
    in a reached ring: the badge is not a plain green "running")."""
    failed = sum(x.failed for x in offered) - rollout.acknowledged_failures
    state = rollout.state
    if state == RolloutState.WAITING:
        narrowed = "".join([f", tags {', '.join(rollout.tags)}" if rollout.tags else "",
                            f", {len(rollout.devices)} listed devices" if rollout.devices else ""])
        return (f"waiting for devices: none on channel {rollout.channel!r}{narrowed} has checked in yet; "
                f"nobody is offered {rollout.version} until one does"), False
    if state == RolloutState.HALTED:
        return f"halted: {rollout.halt_reason}", True
    if state == RolloutState.PAUSED:
        return "paused by the operator: nobody new is offered the release", failed > 0
    if state == RolloutState.ABORTED:
        return "aborted: the release is never offered again", False
    ring = offered[-1]
    counts = f"{ring.confirmed} confirmed, {ring.failed} failed, {ring.pending} pending"
    if state == RolloutState.DONE:
        return f"done: {sum(x.confirmed for x in offered)} devices confirmed; {rollout.version} is the baseline", False
    warn = f"; {failed} failed so far" if failed > 0 else ""
    held = f"; holding: {hold}" if hold else ""
    return f"offering ring {rollout.stage} ({ring.devices} devices: {counts}){warn}{held}", failed > 0


def public(session: Session, rollout: Rollout) -> RolloutPublic:
    progress = measure(session, rollout)
    offered = progress.rings[: rollout.stage + 1]
    ml = mlgate.measure(session, rollout)
    hold = mlgate.judge(rollout, ml).hold if rollout.state == RolloutState.RUNNING else ""
    status, attention = _status(rollout, offered, hold)
    return RolloutPublic.model_validate(
        rollout,
        update={
            "rings_progress": progress.rings,
            "confirmed": sum(x.confirmed for x in offered),
            "failed": sum(x.failed for x in offered),
            "pending": sum(x.pending for x in offered),
            "status": status,
            "attention": attention,
            "ml": ml,
        },
        from_attributes=True,
    )


def describe_spec(spec: RolloutCreate) -> str:
    """A rollout's settings in one line (audit log)."""
    parts = [f"rings {','.join(map(str, spec.rings))}", f"success {spec.success_pct:g}%"]
    if spec.tags:
        parts.append(f"tags {','.join(spec.tags)}")
    if spec.devices:
        parts.append(f"{len(spec.devices)} devices")
    if spec.ml_max_divergence is not None:
        parts.append(f"ML divergence <= {spec.ml_max_divergence:g}")
    if spec.ml_max_latency_regression is not None:
        parts.append(f"ML latency <= +{spec.ml_max_latency_regression:g}%")
    return "; ".join(parts)


def get(session: Session, rollout_id: int) -> Rollout:
    rollout = session.get(Rollout, rollout_id)
    if rollout is None:
        raise NotFoundError(f"no rollout {rollout_id}")
    return rollout


def start(session: Session, spec: RolloutCreate) -> Rollout:
    """Start offering a staged release through rings.

    Raises NotFoundError (no such release on the channel), RolloutError (not staged, not the newest
    release, its manifest is missing, or the channel already has an unfinished rollout)."""
    release = session.exec(select(Release).where(Release.channel == spec.channel, Release.version == spec.version)).first()
    if release is None:
        raise NotFoundError(
            f"no release {spec.version} on channel {spec.channel!r}; publish it first with "
            f"`release publish {spec.version} FILE --channel {spec.channel} --staged`"
        )
    if not release.staged:
        raise RolloutError(
            f"{spec.version} is already the baseline of channel {spec.channel!r} (published without --staged); "
            f"there is nothing to roll out"
        )
    newest = latest_release(session, spec.channel)
    if newest is not None and newest.id != release.id:
        raise RolloutError(f"expected the channel's newest release {newest.version}, got {spec.version}")
    if newest_manifest(session, release) is None:
        raise RolloutError(f"release {spec.version} has no signed manifest")
    running = active_rollout(session, spec.channel)
    if running is not None:
        raise RolloutError(
            f"channel {spec.channel!r} already has a rollout of {running.version} ({running.state}); "
            f"resume or abort it first"
        )
    now = datetime.now(UTC)
    rollout = Rollout.model_validate(spec, update={"release_id": release.id, "started_at": now, "stage_started_at": now})
    bounds = reached_bounds(session, rollout)  # the canary is fixed now: at least one device, or none yet
    rollout.bounds = bounds or []
    rollout.state = RolloutState.RUNNING if bounds is not None else RolloutState.WAITING
    session.add(rollout)
    bump_policy(session)
    session.commit()
    session.refresh(rollout)
    log.info("rollout %d of %s on %s started: rings %s", rollout.id, rollout.version, rollout.channel, rollout.rings)
    _publish("started", rollout)
    return rollout


_ALLOWED = {
    "pause": ({RolloutState.RUNNING, RolloutState.WAITING}, RolloutState.PAUSED),
    "resume": ({RolloutState.PAUSED, RolloutState.HALTED}, RolloutState.RUNNING),
    "abort": (set(ACTIVE_ROLLOUT_STATES), RolloutState.ABORTED),
}


def act(session: Session, rollout_id: int, action: str) -> Rollout:
    """pause | resume | abort. Raises NotFoundError, RolloutError (not allowed from the current state)."""
    allowed_from, to = _ALLOWED[action]
    rollout = get(session, rollout_id)
    if rollout.state not in allowed_from:
        raise RolloutError(
            f"cannot {action} rollout {rollout_id}: expected it {' or '.join(sorted(allowed_from))}, it is {rollout.state}"
        )
    values: dict[str, object] = {"state": to, "updated_at": datetime.now(UTC)}
    if action == "resume" and rollout.state == RolloutState.HALTED:
        # The operator has seen these failures; only new ones count towards halting again.
        _, _, failed = measure(session, rollout).upto(rollout.stage)
        values["acknowledged_failures"] = failed
    result = session.exec(
        update(Rollout).where(Rollout.id == rollout_id, Rollout.state == rollout.state).values(**values)  # type: ignore[call-overload, arg-type]
    )
    if result.rowcount != 1:
        session.rollback()
        raise RolloutError(f"rollout {rollout_id} changed state meanwhile; look again with `release rollout status`")
    bump_policy(session)
    session.commit()
    session.refresh(rollout)
    log.info("rollout %d of %s: %s -> %s", rollout.id, rollout.version, action, rollout.state)
    _publish({"pause": "paused", "resume": "resumed", "abort": "aborted"}[action], rollout)
    return rollout


def reached_bounds(session: Session, rollout: Rollout) -> list[int] | None:
    """The bounds of the rings reached, with the current ring widened to take in a device when it holds
    none; None while no device matches the rollout at all (it waits)."""
    bounds = list(rollout.bounds)[: rollout.stage + 1]
    stage = rollout.stage
    previous = bounds[stage - 1] if stage > 0 else 0
    first_new = first_new_bucket(session, rollout, previous)
    current = bounds[stage] if len(bounds) > stage else None
    if current is None:
        if first_new is None and stage == 0:
            return None
        bounds.append(entry_bound(rollout.rings, stage, previous, first_new))
    elif first_new is not None and first_new >= current:
        bounds[stage] = entry_bound(rollout.rings, stage, previous, first_new)
    return bounds


def _next(session: Session, rollout: Rollout, now: datetime) -> tuple[Decision, list[int]] | None:
    """What the evaluation writes for one rollout: its state, stage and bounds (None: no change)."""
    bounds = reached_bounds(session, rollout)
    if bounds is None:
        waiting = Decision(RolloutState.WAITING, 0)
        return None if rollout.state == RolloutState.WAITING else (waiting, [])
    if rollout.state == RolloutState.WAITING:
        return Decision(RolloutState.RUNNING, 0), bounds  # a first device: ring 0 starts (and soaks) now
    ml = mlgate.measure(session, rollout, now) if mlgate.gated(rollout) else None
    decision = decide(rollout, measure(session, rollout, now, reached=bounds), now, ml)
    if decision is not None and decision.stage > rollout.stage:
        previous = bounds[-1]
        bounds.append(entry_bound(rollout.rings, decision.stage, previous, first_new_bucket(session, rollout, previous)))
    if decision is None and bounds != list(rollout.bounds):
        decision = Decision(RolloutState.RUNNING, rollout.stage)  # only the ring's bound widened
    return (decision, bounds) if decision is not None else None


def _notify(session: Session, rollout: Rollout, decision: Decision, now: datetime) -> None:
    event = WebhookEvent.ROLLOUT_HALTED if decision.state == RolloutState.HALTED else WebhookEvent.ROLLOUT_DONE
    data = {"rollout": {"id": rollout.id, "channel": rollout.channel, "version": rollout.version, "state": decision.state.value,
                        "ring": decision.stage, "rings": list(rollout.rings), "halt_reason": decision.halt_reason,
                        "started_at": rollout.started_at.isoformat()}}
    # Only the process whose compare-and-set won gets here, so the key needs no dedupe across processes;
    # it carries the time because a rollout resumed after a halt can halt again and is owed another post.
    webhooks.enqueue(session, event, f"{rollout.id}:{decision.stage}:{now.timestamp():.3f}", data, now)


def _publish(event: str, rollout: Rollout, decision: Decision | None = None) -> None:
    """The rollout's state change to the MQTT bridge (a queue append), after its commit."""
    bridge = mqtt.bridge()
    if bridge is None:
        return
    if decision is None:
        bridge.rollout(event, rollout)
    else:
        bridge.rollout(event, rollout, state=decision.state.value, ring=decision.stage, halt_reason=decision.halt_reason or "")


def _change(was: tuple[RolloutState, int], decision: Decision) -> str | None:
    """The MQTT event of an evaluation's write: None for a ring that only widened or a rollout parked again."""
    if decision.state != was[0] and decision.state in (RolloutState.HALTED, RolloutState.DONE):
        return decision.state.value
    if decision.stage > was[1]:
        return "advanced"
    if (was[0], decision.state) == (RolloutState.WAITING, RolloutState.RUNNING):
        return "started"  # a first device matched: ring 0 starts now
    return None


def evaluate(engine: Engine, on_done: Callable[[Release], None] | None = None) -> list[str]:
    """Advance, halt, complete, start or park every running or waiting rollout. Safe to run in every
    server process at once: the write is a compare-and-set on (state, stage), so one process wins and
    the others see no row change. Returns what changed, for logs and tests."""
    changes = []
    with Session(engine) as session:
        evaluated = session.exec(select(Rollout).where(Rollout.state.in_(EVALUATED_ROLLOUT_STATES))).all()  # type: ignore[attr-defined]
        for rollout in evaluated:
            now = datetime.now(UTC)
            was = (rollout.state, rollout.stage)  # the commit below expires the object
            step = _next(session, rollout, now)
            if step is None:
                continue
            decision, bounds = step
            values: dict[str, object] = {"state": decision.state, "stage": decision.stage, "bounds": bounds, "updated_at": now}
            if decision.stage != rollout.stage or (rollout.state, decision.state) == (RolloutState.WAITING, RolloutState.RUNNING):
                values["stage_started_at"] = now
            if decision.halt_reason:
                values["halt_reason"] = decision.halt_reason[:256]
            result = session.exec(
                update(Rollout)  # type: ignore[call-overload]
                .where(Rollout.id == rollout.id, Rollout.state == rollout.state, Rollout.stage == rollout.stage)  # type: ignore[arg-type]
                .values(**values)
            )
            if result.rowcount != 1:
                session.rollback()
                continue
            release = session.get(Release, rollout.release_id)
            if decision.state == RolloutState.DONE and release is not None:
                release.staged = False  # promoted: the channel's baseline from now on
                session.add(release)
            if decision.state in (RolloutState.HALTED, RolloutState.DONE) and decision.state != was[0]:
                _notify(session, rollout, decision, now)  # same transaction: only the winner of the CAS owes it
            bump_policy(session)
            session.commit()
            if (decision.state, decision.stage) == was:
                text = f"rollout {rollout.id} of {rollout.version} on {rollout.channel}: ring {decision.stage} widened to bucket {bounds[-1]}"
            else:
                text = f"rollout {rollout.id} of {rollout.version} on {rollout.channel} {decision.describe(rollout)}"
            (log.warning if decision.state == RolloutState.HALTED else log.info)(text)
            changes.append(text)
            if (event := _change(was, decision)) is not None:
                _publish(event, rollout, decision)
            if decision.state == RolloutState.DONE and release is not None and on_done is not None:
                on_done(release)
    return changes
