"""Dependency aliases: every route signature reads like its contract."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlmodel import Session

from otaml.api.context import ServerContext
from otaml.core.config import Settings
from otaml.core.errors import AuthError
from otaml.core.types import DeviceId
from otaml.fleet.tokens import bearer_token, tokens_equal


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


def require_admin(ctx: ContextDep, authorization: Annotated[str | None, Header()] = None) -> None:
    token = bearer_token(authorization)
    if token is None:
        raise AuthError("expected `Authorization: Bearer <admin token>`, got no bearer token")
    if not tokens_equal(token, ctx.settings.admin_token):
        raise AuthError("admin token rejected")


AdminDep = Annotated[None, Depends(require_admin)]


async def require_device(
    device_id: DeviceId, ctx: ContextDep, authorization: Annotated[str | None, Header()] = None
) -> str:
    """Authenticate a device by its path id and bearer token (for non-poll device requests)."""
    if not await ctx.tokens.verify(device_id, bearer_token(authorization)):
        raise AuthError(f"unknown device {device_id!r} or wrong device token")
    return device_id


DeviceDep = Annotated[str, Depends(require_device)]
