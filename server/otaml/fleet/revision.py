"""The fleet revision: one counter row that every operator or rollout change bumps in its own
transaction, so each server process notices within its cache TTL that its in-memory fleet policy is
stale, without any process talking to another."""

from __future__ import annotations

from sqlalchemy import update
from sqlmodel import Session, select

from otaml.models import FleetRevision


def bump_policy(session: Session) -> None:
    """Mark the fleet policy changed (rollouts, pins, holds, tags, staged releases). Part of the
    caller's transaction."""
    session.exec(update(FleetRevision).where(FleetRevision.id == 1).values(policy=FleetRevision.policy + 1))  # type: ignore[call-overload, arg-type]


def bump_config(session: Session) -> int:
    """Mark desired configuration changed; returns the new config revision (what signed config
    documents carry, so a device applies only newer ones). Part of the caller's transaction."""
    session.exec(
        update(FleetRevision)  # type: ignore[call-overload]
        .where(FleetRevision.id == 1)  # type: ignore[arg-type]
        .values(policy=FleetRevision.policy + 1, config=FleetRevision.config + 1)
    )
    return session.exec(select(FleetRevision.config).where(FleetRevision.id == 1)).one()


def current(session: Session) -> tuple[int, int]:
    """(policy, config) revisions."""
    row = session.get(FleetRevision, 1)
    return (row.policy, row.config) if row else (0, 0)
