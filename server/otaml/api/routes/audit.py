"""The audit log of admin actions (API, CLI and dashboard), newest first (admin)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query
from sqlmodel import func, select

from otaml.api.deps import AdminDep, SessionDep
from otaml.core.types import INT32_MAX, Rule
from otaml.models import AuditEntriesPublic, AuditEntry, AuditEntryPublic

router = APIRouter(prefix="/api/audit", tags=["audit"])

ACTION = Rule(r"[a-z0-9._]{1,48}", "an action or its prefix of 1 to 48 of a-z 0-9 . _ (e.g. rollout)", 48)
Action = ACTION.type


@router.get("", summary="Admin actions and refused attempts, newest first")
def list_audit(
    session: SessionDep, _: AdminDep, action: Action | None = None,
    outcome: Literal["ok", "refused", "denied"] | None = None,
    skip: int = Query(0, ge=0, le=INT32_MAX), limit: int = Query(100, ge=1, le=1000),
) -> AuditEntriesPublic:
    conds = []
    if action:
        conds.append(AuditEntry.action.startswith(action, autoescape=True))  # type: ignore[attr-defined]
    if outcome:
        conds.append(AuditEntry.outcome == outcome)
    count = session.exec(select(func.count()).select_from(AuditEntry).where(*conds)).one()
    rows = session.exec(
        select(AuditEntry).where(*conds).order_by(AuditEntry.id.desc()).offset(skip).limit(limit)  # type: ignore[union-attr]
    ).all()
    return AuditEntriesPublic(data=[AuditEntryPublic.model_validate(r) for r in rows], count=count)
