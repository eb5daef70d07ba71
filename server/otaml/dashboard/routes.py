"""Dashboard pages and the fragments htmx swaps in every few seconds. Reading needs the admin login
(unless OTAML_DASHBOARD_PUBLIC); acting (pause, resume, abort) always does, with a CSRF token."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel import Session, select

from otaml import __version__
from otaml.api.deps import ContextDep
from otaml.core.errors import OtamlError
from otaml.core.types import DEVICE_ID, Channel, DeviceIdPrefix, ReportedVersion, RowId, Tag
from otaml.dashboard import auth, views
from otaml.fleet import credentials
from otaml.fleet.protocol import EventKind
from otaml.fleet.search import DeviceFilter
from otaml.fleet.tokens import tokens_equal
from otaml.fleet.twins import Drift
from otaml.models import Device, DeviceStatus
from otaml.rollouts import service

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/dashboard", include_in_schema=False)


@dataclass
class Viewer:
    logged_in: bool
    csrf: str
    refresh: float
    version: str = __version__


def _viewer(request: Request, ctx) -> Viewer | None:  # type: ignore[no-untyped-def]
    cookie = request.cookies.get(auth.COOKIE)
    logged_in = auth.valid_session(ctx.settings.admin_token, cookie)
    if not logged_in and not ctx.settings.dashboard_public:
        return None
    csrf = auth.csrf_token(ctx.settings.admin_token, cookie) if logged_in and cookie else ""
    return Viewer(logged_in, csrf, ctx.settings.dashboard_refresh)


def _to_login(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": f"/dashboard/login?{urlencode({'next': target})}"})
    return RedirectResponse(f"/dashboard/login?{urlencode({'next': target})}", status_code=303)


def _render(request: Request, name: str, **context: object) -> HTMLResponse:
    return templates.TemplateResponse(request, name, context)


# --- login ---------------------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    return target if target and target.startswith("/dashboard") and "//" not in target else "/dashboard"


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> HTMLResponse:  # noqa: A002
    return _render(request, "login.html", next=_safe_next(next), error="")


@router.post("/login")
def login(request: Request, ctx: ContextDep, token: Annotated[str, Form()], next: Annotated[str, Form()] = "/dashboard") -> Response:  # noqa: A002
    if not tokens_equal(token, ctx.settings.admin_token):
        response = _render(request, "login.html", next=_safe_next(next), error="That is not the admin token.")
        response.status_code = 401
        return response
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        auth.COOKIE, auth.new_session(ctx.settings.admin_token), max_age=auth.LIFETIME_S, httponly=True,
        samesite="strict", secure=ctx.settings.base_url.startswith("https://"),
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/dashboard/login", status_code=303)
    response.delete_cookie(auth.COOKIE)
    return response


# --- overview ------------------------------------------------------------------------------------------


def _overview(request: Request, ctx, name: str, message: str = "") -> Response:  # type: ignore[no-untyped-def]
    viewer = _viewer(request, ctx)
    if viewer is None:
        return _to_login(request)
    ctx.checkins.flush(ctx.engine)
    with Session(ctx.engine) as session:
        data = views.overview(session, ctx.policy.get(), ctx.settings.poll_interval)
    return _render(request, name, viewer=viewer, o=data, message=message)


@router.get("")
def overview_page(request: Request, ctx: ContextDep) -> Response:
    return _overview(request, ctx, "overview.html")


@router.get("/fragments/overview")
def overview_fragment(request: Request, ctx: ContextDep) -> Response:
    return _overview(request, ctx, "_overview.html")


@router.post("/rollouts/{rollout_id}/{action}")
def rollout_action(
    request: Request, ctx: ContextDep, rollout_id: RowId, action: Literal["pause", "resume", "abort"],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    cookie = request.cookies.get(auth.COOKIE)
    if not auth.valid_session(ctx.settings.admin_token, cookie):
        return _to_login(request)
    if not auth.valid_csrf(ctx.settings.admin_token, cookie, csrf):
        return HTMLResponse("expected the form's CSRF token; reload the page", status_code=403)
    message = ""
    with Session(ctx.engine) as session:
        try:
            service.act(session, rollout_id, action)
            message = f"rollout {rollout_id}: {action} done"
        except OtamlError as e:
            message = str(e)
    ctx.policy.invalidate()
    if not request.headers.get("hx-request"):
        return RedirectResponse("/dashboard", status_code=303)
    return _overview(request, ctx, "_overview.html", message)


# --- devices -------------------------------------------------------------------------------------------


def _filter(q, version, channel, tag, state, seen, drift) -> DeviceFilter:  # type: ignore[no-untyped-def]
    seen_within = not_seen_within = None
    if seen == "online":
        seen_within = 180
    elif seen == "1h":
        seen_within = 3600
    elif seen == "stale":
        not_seen_within = 3600
    return DeviceFilter(q or None, version or None, channel or None, tag or None, state or None, seen_within,
                        not_seen_within, Drift(drift) if drift else None)


def _devices(request: Request, ctx, name: str, f: DeviceFilter, page: int, seen: str) -> Response:  # type: ignore[no-untyped-def]
    viewer = _viewer(request, ctx)
    if viewer is None:
        return _to_login(request)
    ctx.checkins.flush(ctx.engine)
    with Session(ctx.engine) as session:
        data = views.device_table(session, ctx.policy.get(), f, page)
    query = {k: v for k, v in request.query_params.items() if k != "page" and v}
    return _render(request, name, viewer=viewer, d=data, seen=seen, query=urlencode(query),
                   states=["confirmed", "rolled_back", "rejected", "download_failed", "booted", "installed"])




# The filter form's fields, typed like the API's (an empty field is "any").
Q = DeviceIdPrefix | Literal[""]
VersionQ = ReportedVersion | Literal[""]
ChannelQ = Channel | Literal[""]
TagQ = Tag | Literal[""]
StateQ = EventKind | Literal[""]
SeenQ = Literal["", "online", "1h", "stale"]
DriftQ = Literal["", "any", "firmware", "config"]
Page = Annotated[int, Query(ge=1, le=1_000_000)]


@router.get("/devices")
def devices_page(request: Request, ctx: ContextDep, q: Q = "", version: VersionQ = "", channel: ChannelQ = "", tag: TagQ = "",
                 state: StateQ = "", seen: SeenQ = "", drift: DriftQ = "", page: Page = 1) -> Response:
    return _devices(request, ctx, "devices.html", _filter(q, version, channel, tag, state, seen, drift), page, seen)


@router.get("/fragments/devices")
def devices_fragment(request: Request, ctx: ContextDep, q: Q = "", version: VersionQ = "", channel: ChannelQ = "", tag: TagQ = "",
                     state: StateQ = "", seen: SeenQ = "", drift: DriftQ = "", page: Page = 1) -> Response:
    return _devices(request, ctx, "_devices.html", _filter(q, version, channel, tag, state, seen, drift), page, seen)


def _device(request: Request, ctx, device_id: str, name: str) -> Response:  # type: ignore[no-untyped-def]
    viewer = _viewer(request, ctx)
    if viewer is None:
        return _to_login(request)
    ctx.checkins.flush(ctx.engine)
    with Session(ctx.engine) as session:
        # An id that cannot exist is not looked up (PostgreSQL refuses NUL in a query parameter).
        device = session.exec(select(Device).where(Device.device_id == device_id)).first() if DEVICE_ID.ok(device_id) else None
        if device is None:
            response = _render(request, "missing.html", viewer=viewer, what=f"device {device_id}")
            response.status_code = 404
            return response
        data = views.device_detail(session, ctx.policy.get(), device)
    return _render(request, name, viewer=viewer, x=data)


@router.post("/devices/{device_id}/accept")
def accept_device(request: Request, ctx: ContextDep, device_id: str, csrf: Annotated[str, Form()] = "",
                  from_: Annotated[str, Query(alias="from")] = "") -> Response:
    """Accept a claimed device waiting for approval (as `release device accept`)."""
    cookie = request.cookies.get(auth.COOKIE)
    if not auth.valid_session(ctx.settings.admin_token, cookie):
        return _to_login(request)
    if not auth.valid_csrf(ctx.settings.admin_token, cookie, csrf):
        return HTMLResponse("expected the form's CSRF token; reload the page", status_code=403)
    if DEVICE_ID.ok(device_id):
        with Session(ctx.engine) as session:
            try:
                credentials.set_status(session, device_id, DeviceStatus.ACTIVE)
                session.commit()
            except OtamlError:
                session.rollback()  # not pending (any more): the page shows its state
        ctx.tokens.forget(device_id)
    if request.headers.get("hx-request"):
        return _devices(request, ctx, "_devices.html", _filter("", "", "", "", "", "", ""), 1, "")
    target = f"/dashboard/devices/{device_id}" if from_ == "device" and DEVICE_ID.ok(device_id) else "/dashboard/devices"
    return RedirectResponse(target, status_code=303)


@router.get("/devices/{device_id}")
def device_page(request: Request, ctx: ContextDep, device_id: str) -> Response:
    return _device(request, ctx, device_id, "device.html")


@router.get("/fragments/devices/{device_id}")
def device_fragment(request: Request, ctx: ContextDep, device_id: str) -> Response:
    return _device(request, ctx, device_id, "_device.html")
