"""The releases, release, rollouts, audit and webhooks pages, and starting a rollout from a release.
Reading needs the login (unless OTAML_DASHBOARD_PUBLIC); acting always does, with the CSRF token, and
is written to the audit log."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import Session, select

from otaml.api.deps import ContextDep
from otaml.api.errors import validation_message
from otaml.core.errors import OtamlError
from otaml.core.types import CHANNEL, VERSION, RowId
from otaml.dashboard import release_views as rv
from otaml.dashboard.routes import Message, Page, _render, _to_login, _viewer, acting
from otaml.fleet.insight import Range
from otaml.models import Release, RolloutCreate
from otaml.ops import audit
from otaml.rollouts import service

router = APIRouter(prefix="/dashboard", include_in_schema=False)
ChannelQ = Annotated[str, "channel"]


def _page(request: Request, ctx, name: str, build, **extra) -> Response:  # type: ignore[no-untyped-def]
    viewer = _viewer(request, ctx)
    if viewer is None:
        return _to_login(request)
    ctx.checkins.flush(ctx.engine)
    with Session(ctx.engine) as session:
        data = build(session)
        return _render(request, name, viewer=viewer, p=data, **extra)


@router.get("/releases")
def releases_page(request: Request, ctx: ContextDep, page: Page = 1, channel: str = "", message: Message = "") -> Response:
    chosen = channel if CHANNEL.ok(channel) else None
    return _page(request, ctx, "releases.html", lambda s: rv.releases(s, page, chosen), message=message, fragment=False)


@router.get("/fragments/releases")
def releases_fragment(request: Request, ctx: ContextDep, page: Page = 1, channel: str = "", message: Message = "") -> Response:
    chosen = channel if CHANNEL.ok(channel) else None
    return _page(request, ctx, "_releases.html", lambda s: rv.releases(s, page, chosen), message=message, fragment=True)


def _release(session: Session, channel: str, version: str) -> Release | None:
    if not (CHANNEL.ok(channel) and VERSION.ok(version)):
        return None  # a name that cannot exist is not looked up
    return session.exec(select(Release).where(Release.channel == channel, Release.version == version)).first()


def _release_page(request: Request, ctx, channel: str, version: str, r: Range, name: str, message: str) -> Response:  # type: ignore[no-untyped-def]
    viewer = _viewer(request, ctx)
    if viewer is None:
        return _to_login(request)
    ctx.checkins.flush(ctx.engine)
    with Session(ctx.engine) as session:
        release = _release(session, channel, version)
        if release is None:
            response = _render(request, "missing.html", viewer=viewer, what=f"release {version[:20]} on {channel[:40]}")
            response.status_code = 404
            return response
        data = rv.release_detail(session, release, r)
        return _render(request, name, viewer=viewer, p=data, message=message)


@router.get("/releases/{channel}/{version}")
def release_page(request: Request, ctx: ContextDep, channel: str, version: str, range: Range = Range.HOUR,  # noqa: A002
                 message: Message = "") -> Response:
    return _release_page(request, ctx, channel, version, range, "release.html", message)


@router.get("/fragments/releases/{channel}/{version}")
def release_fragment(request: Request, ctx: ContextDep, channel: str, version: str, range: Range = Range.HOUR,  # noqa: A002
                     message: Message = "") -> Response:
    return _release_page(request, ctx, channel, version, range, "_release.html", message)


def _number(text: str) -> float | None:
    return float(text) if text.strip() else None


@router.post("/releases/{channel}/{version}/rollout")
def start_rollout(
    request: Request, ctx: ContextDep, channel: str, version: str, csrf: Annotated[str, Form()] = "",
    rings: Annotated[str, Form(max_length=200)] = "1,10,50,100", success_pct: Annotated[str, Form(max_length=20)] = "90",
    soak: Annotated[str, Form(max_length=20)] = "0", ml_max_divergence: Annotated[str, Form(max_length=20)] = "",
    ml_max_latency_regression: Annotated[str, Form(max_length=20)] = "", ml_min_samples: Annotated[str, Form(max_length=20)] = "500",
) -> Response:
    """Start a rollout of a staged release from its page (the same checks as `release rollout start`)."""
    who = acting(request, ctx, csrf)
    if isinstance(who, Response):
        return who
    back = f"/dashboard/releases/{channel}/{version}" if CHANNEL.ok(channel) and VERSION.ok(version) else "/dashboard/releases"
    target = f"release {version[:20]} on {channel[:40]}"
    try:
        spec = RolloutCreate.model_validate({
            "channel": channel, "version": version, "rings": [int(x) for x in rings.split(",") if x.strip()],
            "success_pct": float(success_pct), "soak_seconds": int(soak or 0),
            "ml_max_divergence": _number(ml_max_divergence), "ml_max_latency_regression": _number(ml_max_latency_regression),
            "ml_min_samples": int(ml_min_samples or 500),
        })
    except ValidationError as e:
        message = f"not started: {validation_message(list(e.errors()))}"
        audit.write(ctx.engine, who, "rollout.start", target, message, "refused")
        return RedirectResponse(f"{back}?message={_q(message)}", status_code=303)
    except ValueError as e:
        message = f"not started: expected numbers (rings like 1,10,50,100), got {str(e)[:80]}"
        audit.write(ctx.engine, who, "rollout.start", target, message, "refused")
        return RedirectResponse(f"{back}?message={_q(message)}", status_code=303)
    with Session(ctx.engine) as session:
        try:
            ro = service.start(session, spec)
            message = f"rollout {ro.id} of {version} started"
            audit.write(ctx.engine, who, "rollout.start", f"rollout {ro.id}: {version} on {channel}", service.describe_spec(spec))
        except OtamlError as e:
            message = f"not started: {e}"
            audit.write(ctx.engine, who, "rollout.start", target, str(e), "refused")
    ctx.policy.invalidate()
    return RedirectResponse(f"{back}?message={_q(message)}", status_code=303)


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text[:300], safe="")


@router.get("/rollouts")
def rollouts_page(request: Request, ctx: ContextDep, page: Page = 1) -> Response:
    return _page(request, ctx, "rollouts.html", lambda s: rv.rollouts(s, page))


@router.get("/fragments/rollouts")
def rollouts_fragment(request: Request, ctx: ContextDep, page: Page = 1) -> Response:
    return _page(request, ctx, "_rollouts.html", lambda s: rv.rollouts(s, page))


@router.get("/rollouts/{rollout_id}")
def rollout_page(request: Request, ctx: ContextDep, rollout_id: RowId) -> Response:
    return _rollout(request, ctx, rollout_id, "rollout.html")


@router.get("/fragments/rollouts/{rollout_id}")
def rollout_fragment(request: Request, ctx: ContextDep, rollout_id: RowId) -> Response:
    return _rollout(request, ctx, rollout_id, "_rollout_page.html")


def _rollout(request: Request, ctx, rollout_id: int, name: str) -> Response:  # type: ignore[no-untyped-def]
    viewer = _viewer(request, ctx)
    if viewer is None:
        return _to_login(request)
    ctx.checkins.flush(ctx.engine)
    with Session(ctx.engine) as session:
        try:
            ro = service.get(session, rollout_id)
        except OtamlError:
            response = _render(request, "missing.html", viewer=viewer, what=f"rollout {rollout_id}")
            response.status_code = 404
            return response
        data = service.public(session, ro)
        release = session.get(Release, ro.release_id)
        detail = rv.release_detail(session, release, Range.HOUR) if release else None
        return _render(request, name, viewer=viewer, r=data, detail=detail)


Outcome = Literal["", "ok", "refused", "denied"]


@router.get("/audit")
def audit_page(request: Request, ctx: ContextDep, page: Page = 1, outcome: Outcome = "") -> Response:
    viewer = _viewer(request, ctx)
    if viewer is None or not viewer.logged_in:  # who did what from where: not for a public wall display
        return _to_login(request)
    with Session(ctx.engine) as session:
        return _render(request, "audit.html", viewer=viewer, p=rv.audit(session, page, outcome))


@router.get("/webhooks")
def webhooks_page(request: Request, ctx: ContextDep) -> Response:
    viewer = _viewer(request, ctx)
    if viewer is None or not viewer.logged_in:
        return _to_login(request)
    with Session(ctx.engine) as session:
        return _render(request, "webhooks.html", viewer=viewer, p=rv.webhooks(session))


@router.get("/fragments/webhooks")
def webhooks_fragment(request: Request, ctx: ContextDep) -> Response:
    viewer = _viewer(request, ctx)
    if viewer is None or not viewer.logged_in:
        return _to_login(request)
    with Session(ctx.engine) as session:
        return _render(request, "_webhooks.html", viewer=viewer, p=rv.webhooks(session))
