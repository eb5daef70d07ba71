"""Dependency aliases: every route signature reads like its contract."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlmodel import Session

from otaml.api.context import ServerContext
from otaml.core.config import Settings
from otaml.core.errors import AuthError, OtamlError
from otaml.core.types import DeviceId
from otaml.fleet.tokens import bearer_token, tokens_equal
from otaml.ops import audit


def get_ctx(request: Request) -> ServerContext:
    return request.app.state.ctx


ContextDep = Annotated[ServerContext, Depends(get_ctx)]


def get_settings(ctx: ContextDep) -> Settings:
    return ctx.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_session(ctx: ContextDep) -> Iterator[Session]:
    with Session(ctx.engine) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def require_admin(request: Request, ctx: ContextDep, authorization: Annotated[str | None, Header()] = None) -> None:
    token = bearer_token(authorization)
    problem = None
    if token is None:
        problem = "expected `Authorization: Bearer <admin token>`, got no bearer token"
    elif not tokens_equal(token, ctx.settings.admin_token):
        problem = "admin token rejected"
    if problem is not None:
        skipped = ctx.denied.admit()
        if skipped is not None:
            who = audit.actor(request, ctx.settings.admin_token, authenticated=False)
            more = f" ({skipped} more denied requests were not logged)" if skipped else ""
            audit.write(ctx.engine, who, "admin.auth", f"{request.method} {request.url.path}"[:128], problem + more, "denied")
        raise AuthError(problem)


AdminDep = Annotated[None, Depends(require_admin)]


def get_audit(request: Request, ctx: ContextDep, _: AdminDep) -> Iterator[audit.Audit]:
    """The audit record of an admin action: written when the route returns (ok) or refuses (refused)."""
    record = audit.Audit(ctx.engine, audit.actor(request, ctx.settings.admin_token))
    try:
        yield record
    except OtamlError as e:
        record.finish("refused", str(e))
        raise
    record.finish("ok")


AuditDep = Annotated[audit.Audit, Depends(get_audit)]


async def require_device(
    device_id: DeviceId, ctx: ContextDep, authorization: Annotated[str | None, Header()] = None
) -> str:
    """Authenticate a device by its path id and bearer token (for non-poll device requests)."""
    if not await ctx.tokens.verify(device_id, bearer_token(authorization)):
        raise AuthError(f"unknown device {device_id!r} or wrong device token")
    return device_id


DeviceDep = Annotated[str, Depends(require_device)]
