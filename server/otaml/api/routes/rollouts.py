"""Rollouts: start one for a staged release, watch it, pause, resume or abort it (admin)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query
from sqlmodel import select

from otaml.api.deps import AdminDep, AuditDep, ContextDep, SessionDep
from otaml.core.types import Channel, RowId
from otaml.models import ACTIVE_ROLLOUT_STATES, Rollout, RolloutCreate, RolloutPublic, RolloutsPublic
from otaml.rollouts import service

router = APIRouter(prefix="/api/rollouts", tags=["rollouts"])


@router.post("", status_code=201, summary="Start offering a staged release through rings")
def start_rollout(spec: RolloutCreate, session: SessionDep, ctx: ContextDep, audit: AuditDep) -> RolloutPublic:
    audit.about("rollout.start", f"release {spec.version} on {spec.channel}", service.describe_spec(spec))
    rollout = service.start(session, spec)
    audit.target = f"rollout {rollout.id}: {spec.version} on {spec.channel}"
    ctx.policy.invalidate()
    return service.public(session, rollout)


@router.get("", summary="Rollouts, newest first, with per-ring progress")
def list_rollouts(
    session: SessionDep, ctx: ContextDep, _: AdminDep, channel: Channel | None = None, active: bool = False,
    limit: int = Query(20, ge=1, le=200),
) -> RolloutsPublic:
    ctx.checkins.flush(ctx.engine)
    query = select(Rollout).order_by(Rollout.id.desc())  # type: ignore[union-attr]
    if channel is not None:
        query = query.where(Rollout.channel == channel)
    if active:
        query = query.where(Rollout.state.in_(ACTIVE_ROLLOUT_STATES))  # type: ignore[attr-defined]
    rows = session.exec(query.limit(limit)).all()
    data = [service.public(session, r) for r in rows]
    return RolloutsPublic(data=data, count=len(data))


@router.get("/{rollout_id}", summary="One rollout with per-ring progress")
def get_rollout(rollout_id: RowId, session: SessionDep, ctx: ContextDep, _: AdminDep) -> RolloutPublic:
    ctx.checkins.flush(ctx.engine)
    return service.public(session, service.get(session, rollout_id))


@router.post("/{rollout_id}/{action}", summary="pause, resume or abort")
def act_on_rollout(
    rollout_id: RowId, action: Literal["pause", "resume", "abort"], session: SessionDep, ctx: ContextDep, audit: AuditDep
) -> RolloutPublic:
    audit.about(f"rollout.{action}", f"rollout {rollout_id}")
    rollout = service.act(session, rollout_id, action)
    audit.target = f"rollout {rollout_id}: {rollout.version} on {rollout.channel}"
    ctx.policy.invalidate()
    return service.public(session, rollout)
