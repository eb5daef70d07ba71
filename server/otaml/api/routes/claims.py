"""Fleet claim tokens (admin) and claiming (a device without a token): manifests/README.md, "Claiming".

A claim token is provisioned into many devices instead of one token each; a device that has none
chooses a token and registers it here with the claim token. Claims are rate-limited per client address,
so a leaked claim token cannot be used to try device ids quickly, and every refusal is the same 401
whatever failed (unknown, revoked, expired, used up) except an id that is taken (409)."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from otaml.api.deps import AdminDep, AuditDep, ContextDep, SessionDep
from otaml.core.errors import ConflictError, NotFoundError, RateLimitError
from otaml.core.types import RowId
from otaml.fleet import credentials
from otaml.fleet.tokens import bearer_token
from otaml.models import (
    ClaimAnswer,
    ClaimRequest,
    ClaimToken,
    ClaimTokenCreate,
    ClaimTokenCreated,
    ClaimTokenPublic,
    ClaimTokensPublic,
    DeviceStatus,
    ErrorPublic,
)

router = APIRouter(tags=["claims"])

WINDOW_S = 60.0
_MAX_CLIENTS = 10_000


class ClaimRateLimit:
    """At most ``per_minute`` claims per client address in any 60 s (a sliding window)."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._lock = threading.Lock()
        self._seen: dict[str, deque[float]] = {}

    def take(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._seen) >= _MAX_CLIENTS:
                self._seen.clear()
            q = self._seen.setdefault(client, deque())
            while q and q[0] <= now - WINDOW_S:
                q.popleft()
            if len(q) >= self.per_minute:
                raise RateLimitError(
                    f"expected at most {self.per_minute} claims a minute from {client}, got more; try again in "
                    f"{int(q[0] + WINDOW_S - now) + 1} s"
                )
            q.append(now)


_limits: dict[int, ClaimRateLimit] = {}


def _limit(ctx) -> ClaimRateLimit:  # type: ignore[no-untyped-def]
    per_minute = ctx.settings.claim_rate_per_minute
    return _limits.setdefault(id(ctx), ClaimRateLimit(per_minute))


@router.post("/api/claim-tokens", status_code=201, summary="Create a fleet claim token; shown only in this response")
def create_claim_token(spec: ClaimTokenCreate, session: SessionDep, audit: AuditDep) -> ClaimTokenCreated:
    audit.about("claim_token.create", f"claim token {spec.name}",
                f"{spec.max_uses} uses, {spec.expires_in} s" + (", approval required" if spec.require_approval else ""))
    row, token = credentials.create_claim_token(session, spec)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ConflictError(f"a claim token named {spec.name!r} exists; pick another name") from None
    session.refresh(row)
    return ClaimTokenCreated(**ClaimTokenPublic.model_validate(row, from_attributes=True).model_dump(), token=token)


@router.get("/api/claim-tokens", summary="Fleet claim tokens, newest first")
def list_claim_tokens(session: SessionDep, _: AdminDep) -> ClaimTokensPublic:
    rows = session.exec(select(ClaimToken).order_by(ClaimToken.id.desc())).all()  # type: ignore[union-attr]
    data = [ClaimTokenPublic.model_validate(r, from_attributes=True) for r in rows]
    return ClaimTokensPublic(data=data, count=len(data))


@router.post("/api/claim-tokens/{claim_id}/revoke", summary="Refuse every later claim with this token")
def revoke_claim_token(claim_id: RowId, session: SessionDep, audit: AuditDep) -> ClaimTokenPublic:
    audit.about("claim_token.revoke", f"claim token {claim_id}")
    row = session.get(ClaimToken, claim_id)
    if row is None:
        raise NotFoundError(f"no claim token {claim_id}")
    row.revoked = True
    session.add(row)
    session.commit()
    session.refresh(row)
    return ClaimTokenPublic.model_validate(row, from_attributes=True)


@router.post("/api/claim", status_code=201, summary="A device registers the token it chose, with a fleet claim token",
             responses={202: {"description": "claimed; waiting for an operator to accept it"},
                        429: {"model": ErrorPublic, "description": "too many claims from this address"}})
def claim(
    body: ClaimRequest, request: Request, response: Response, session: SessionDep, ctx: ContextDep,
    authorization: Annotated[str | None, Header()] = None,
) -> ClaimAnswer:
    _limit(ctx).take(request.client.host if request.client else "unknown")
    try:
        status = credentials.claim(session, bearer_token(authorization), body.device_id, body.token)
    except IntegrityError:  # the same id claimed at the same moment by another request
        session.rollback()
        raise ConflictError(f"device {body.device_id!r} is already enrolled; it cannot be claimed") from None
    ctx.tokens.forget(body.device_id)
    if status == DeviceStatus.PENDING:
        response.status_code = 202
    return ClaimAnswer(device_id=body.device_id, status=status)
