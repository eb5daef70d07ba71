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
    Release,
    Rollout,
    RolloutCreate,
    RolloutPublic,
    RolloutState,
)
from otaml.releases.publishing import latest_release, newest_manifest
from otaml.rollouts.progress import decide, measure

log = logging.getLogger("otaml.rollouts")


def active_rollout(session: Session, channel: str) -> Rollout | None:
    return session.exec(
        select(Rollout).where(Rollout.channel == channel, Rollout.state.in_(ACTIVE_ROLLOUT_STATES))  # type: ignore[attr-defined]
    ).first()


def public(session: Session, rollout: Rollout) -> RolloutPublic:
    progress = measure(session, rollout)
    offered = progress.rings[: rollout.stage + 1]
    return RolloutPublic.model_validate(
        rollout,
        update={
            "rings_progress": progress.rings,
            "confirmed": sum(x.confirmed for x in offered),
            "failed": sum(x.failed for x in offered),
            "pending": sum(x.pending for x in offered),
        },
        from_attributes=True,
    )


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
    session.add(rollout)
    bump_policy(session)
    session.commit()
    session.refresh(rollout)
    log.info("rollout %d of %s on %s started: rings %s", rollout.id, rollout.version, rollout.channel, rollout.rings)
    return rollout


_ALLOWED = {
    "pause": ({RolloutState.RUNNING}, RolloutState.PAUSED),
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
    return rollout


def evaluate(engine: Engine, on_done: Callable[[Release], None] | None = None) -> list[str]:
    """Advance, halt or complete every running rollout. Safe to run in every server process at once:
    the write is a compare-and-set on (state, stage), so one process wins and the others see no row
    change. Returns what changed, for logs and tests."""
    changes = []
    with Session(engine) as session:
        running = session.exec(select(Rollout).where(Rollout.state == RolloutState.RUNNING)).all()
        for rollout in running:
            decision = decide(rollout, measure(session, rollout))
            if decision is None:
                continue
            now = datetime.now(UTC)
            values: dict[str, object] = {"state": decision.state, "stage": decision.stage, "updated_at": now}
            if decision.stage != rollout.stage:
                values["stage_started_at"] = now
            if decision.halt_reason:
                values["halt_reason"] = decision.halt_reason[:256]
            result = session.exec(
                update(Rollout)  # type: ignore[call-overload]
                .where(Rollout.id == rollout.id, Rollout.state == RolloutState.RUNNING, Rollout.stage == rollout.stage)  # type: ignore[arg-type]
                .values(**values)
            )
            if result.rowcount != 1:
                session.rollback()
                continue
            release = session.get(Release, rollout.release_id)
            if decision.state == RolloutState.DONE and release is not None:
                release.staged = False  # promoted: the channel's baseline from now on
                session.add(release)
            bump_policy(session)
            session.commit()
            text = f"rollout {rollout.id} of {rollout.version} on {rollout.channel} {decision.describe(rollout)}"
            (log.warning if decision.state == RolloutState.HALTED else log.info)(text)
            changes.append(text)
            if decision.state == RolloutState.DONE and release is not None and on_done is not None:
                on_done(release)
    return changes
