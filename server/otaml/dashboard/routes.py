"""Dashboard pages and the fragments htmx swaps in every few seconds. Reading needs the admin login
(unless OTAML_DASHBOARD_PUBLIC); acting (pause, resume, abort) always does, with a CSRF token."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from pydantic import ValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlmodel import Session, select

from otaml import __version__
from otaml.api.deps import ContextDep
from otaml.api.errors import validation_message
from otaml.core.errors import OtamlError
from otaml.core.types import DEVICE_ID, Channel, DeviceIdPrefix, ReportedVersion, RowId, Tag
from otaml.dashboard import auth, views
from otaml.fleet import bulk, credentials
from otaml.fleet.insight import Range
from otaml.fleet.protocol import EventKind, ResetReason
from otaml.fleet.search import CRASHES, DeviceFilter
from otaml.fleet.tokens import tokens_equal
from otaml.fleet.twins import Drift
from otaml.models import Device, DeviceStatus
from otaml.ops import audit
from otaml.rollouts import service

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")


def _uptime(seconds: int) -> str:
    """3d 4h, 5h 12m, 7m: the two largest units."""
    d, rem = divmod(int(seconds), 86400)
    h, rem = divmod(rem, 3600)
    m = rem // 60
    return f"{d}d {h}h" if d else f"{h}h {m}m" if h else f"{m}m"


templates.env.filters["uptime"] = _uptime
templates.env.globals["crashes"] = CRASHES
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


def acting(request: Request, ctx, csrf: str) -> Response | audit.Actor:  # type: ignore[no-untyped-def]
    """The operator behind a dashboard action, or the answer when there is none: a login page without
    a session, 403 without the form's CSRF token (both written to the audit log as denied)."""
    cookie = request.cookies.get(auth.COOKIE)
    if not auth.valid_session(ctx.settings.admin_token, cookie):
        _denied(request, ctx, "no dashboard session")
        return _to_login(request)
    if not auth.valid_csrf(ctx.settings.admin_token, cookie, csrf):
        _denied(request, ctx, "the form's CSRF token is missing or wrong")
        return HTMLResponse("expected the form's CSRF token; reload the page", status_code=403)
    return audit.actor(request, ctx.settings.admin_token, dashboard=True)


def _denied(request: Request, ctx, why: str) -> None:  # type: ignore[no-untyped-def]
    skipped = ctx.denied.admit()
    if skipped is not None:
        who = audit.actor(request, ctx.settings.admin_token, dashboard=True, authenticated=False)
        more = f" ({skipped} more denied requests were not logged)" if skipped else ""
        audit.write(ctx.engine, who, "dashboard.auth", f"{request.method} {request.url.path}"[:128], why + more, "denied")


# --- login ---------------------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    return target if target and target.startswith("/dashboard") and "//" not in target else "/dashboard"


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> HTMLResponse:  # noqa: A002
    return _render(request, "login.html", next=_safe_next(next), error="")


@router.post("/login")
def login(request: Request, ctx: ContextDep, token: Annotated[str, Form()], next: Annotated[str, Form()] = "/dashboard") -> Response:  # noqa: A002
    if not tokens_equal(token, ctx.settings.admin_token):
        _denied(request, ctx, "login with a wrong admin token")
        response = _render(request, "login.html", next=_safe_next(next), error="That is not the admin token.")
        response.status_code = 401
        return response
    audit.write(ctx.engine, audit.actor(request, ctx.settings.admin_token, dashboard=True), "dashboard.login")
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


def _overview(request: Request, ctx, name: str, r: Range, message: str = "") -> Response:  # type: ignore[no-untyped-def]
    viewer = _viewer(request, ctx)
    if viewer is None:
        return _to_login(request)
    ctx.checkins.flush(ctx.engine)
    with Session(ctx.engine) as session:
        data = views.overview(session, ctx.policy.get(), ctx.settings.poll_interval, r)
    return _render(request, name, viewer=viewer, o=data, message=message)


@router.get("")
def overview_page(request: Request, ctx: ContextDep, range: Range = Range.HOUR) -> Response:  # noqa: A002
    return _overview(request, ctx, "overview.html", range)


@router.get("/fragments/overview")
def overview_fragment(request: Request, ctx: ContextDep, range: Range = Range.HOUR) -> Response:  # noqa: A002
    return _overview(request, ctx, "_overview.html", range)


def _safe_back(target: str) -> str:
    """Where an action's form returns to: a dashboard path, nothing else."""
    return target if target.startswith("/dashboard") and "//" not in target and "\\" not in target else "/dashboard"


@router.post("/rollouts/{rollout_id}/{action}")
def rollout_action(
    request: Request, ctx: ContextDep, rollout_id: RowId, action: Literal["pause", "resume", "abort"],
    csrf: Annotated[str, Form()] = "", back: Annotated[str, Form(max_length=300)] = "/dashboard",
) -> Response:
    who = acting(request, ctx, csrf)
    if isinstance(who, Response):
        return who
    message = ""
    with Session(ctx.engine) as session:
        try:
            ro = service.act(session, rollout_id, action)
            message = f"rollout {rollout_id}: {action} done"
            audit.write(ctx.engine, who, f"rollout.{action}", f"rollout {rollout_id}: {ro.version} on {ro.channel}")
        except OtamlError as e:
            message = str(e)
            audit.write(ctx.engine, who, f"rollout.{action}", f"rollout {rollout_id}", message, "refused")
    ctx.policy.invalidate()
    back = _safe_back(back)
    if not request.headers.get("hx-request"):
        return RedirectResponse(back, status_code=303)
    if back != "/dashboard":
        return Response(headers={"HX-Redirect": back})  # another page: htmx loads it afresh
    return _overview(request, ctx, "_overview.html", Range.HOUR, message)


# --- devices -------------------------------------------------------------------------------------------


# The device table's health filter: one choice, one condition (fleet/search.py).
HEALTH = {
    "weak_signal": ("signal below -75 dBm", {"rssi_below": -75}),
    "low_heap": ("heap low-water under 20 KB", {"min_free_heap_below": 20 * 1024}),
    "crashed": ("last reset was a crash", {"reset_reason": "crash"}),
    "restarted": ("restarted in the last hour", {"uptime_below": 3600}),
}


def _filter(q, version, channel, tag, state, seen, drift, health="", reset="") -> DeviceFilter:  # type: ignore[no-untyped-def]
    seen_within = not_seen_within = None
    if seen == "online":
        seen_within = 180
    elif seen == "1h":
        seen_within = 3600
    elif seen == "stale":
        not_seen_within = 3600
    f = DeviceFilter(q or None, version or None, channel or None, tag or None, state or None, seen_within,
                     not_seen_within, Drift(drift) if drift else None)
    for name, value in HEALTH.get(health, ("", {}))[1].items():
        setattr(f, name, value)
    if reset:
        f.reset_reason = reset
    return f


def _devices(request: Request, ctx, name: str, f: DeviceFilter, page: int, seen: str, message: str = "",  # type: ignore[no-untyped-def]
             health: str = "") -> Response:
    viewer = _viewer(request, ctx)
    if viewer is None:
        return _to_login(request)
    ctx.checkins.flush(ctx.engine)
    with Session(ctx.engine) as session:
        data = views.device_table(session, ctx.policy.get(), f, page)
    query = {k: v for k, v in request.query_params.items() if k not in ("page", "message") and v}
    return _render(request, name, viewer=viewer, d=data, seen=seen, query=urlencode(query), message=message, health=health,
                   healths=HEALTH, resets=[r.value for r in ResetReason],
                   states=["confirmed", "rolled_back", "rejected", "download_started", "download_progress", "download_failed",
                           "booted", "installed"])




# The filter form's fields, typed like the API's (an empty field is "any").
Q = DeviceIdPrefix | Literal[""]
VersionQ = ReportedVersion | Literal[""]
ChannelQ = Channel | Literal[""]
TagQ = Tag | Literal[""]
StateQ = EventKind | Literal[""]
SeenQ = Literal["", "online", "1h", "stale"]
DriftQ = Literal["", "any", "firmware", "config"]
HealthQ = Literal["", "weak_signal", "low_heap", "crashed", "restarted"]
ResetQ = ResetReason | Literal[""]
Page = Annotated[int, Query(ge=1, le=1_000_000)]
Message = Annotated[str, Query(max_length=300)]  # what the last action did (shown escaped)


@router.get("/devices")
def devices_page(request: Request, ctx: ContextDep, q: Q = "", version: VersionQ = "", channel: ChannelQ = "", tag: TagQ = "",
                 state: StateQ = "", seen: SeenQ = "", drift: DriftQ = "", health: HealthQ = "", reset: ResetQ = "",
                 page: Page = 1, message: Message = "") -> Response:
    f = _filter(q, version, channel, tag, state, seen, drift, health, reset)
    return _devices(request, ctx, "devices.html", f, page, seen, message, health=health)


@router.get("/fragments/devices")
def devices_fragment(request: Request, ctx: ContextDep, q: Q = "", version: VersionQ = "", channel: ChannelQ = "", tag: TagQ = "",
                     state: StateQ = "", seen: SeenQ = "", drift: DriftQ = "", health: HealthQ = "", reset: ResetQ = "",
                     page: Page = 1, message: Message = "") -> Response:
    f = _filter(q, version, channel, tag, state, seen, drift, health, reset)
    return _devices(request, ctx, "_devices.html", f, page, seen, message, health=health)


@router.post("/devices/bulk")
def devices_bulk(
    request: Request, ctx: ContextDep, csrf: Annotated[str, Form()] = "",
    action: Annotated[str, Form(max_length=16)] = "", value: Annotated[str, Form(max_length=64)] = "",
    device: Annotated[list[str] | None, Form(max_length=bulk.MAX_BULK)] = None,
    back: Annotated[str, Form(max_length=1000)] = "/dashboard/devices",
) -> Response:
    """The device table's bulk form: the checked devices get a tag, a pin or a hold (all or nothing)."""
    who = acting(request, ctx, csrf)
    if isinstance(who, Response):
        return who
    spec: dict[str, object] = {"device_ids": device or [], "action": action}
    if action in ("tag", "untag"):
        spec["tag"] = value
    elif action == "pin":
        spec["version"] = value
    try:
        change = bulk.BulkChange.model_validate(spec)
    except ValidationError as e:
        message = f"nothing changed: {validation_message(list(e.errors()))}"
        audit.write(ctx.engine, who, f"device.bulk_{action[:16] or 'none'}", f"{len(device or [])} devices", message, "refused")
    else:
        with Session(ctx.engine) as session:
            try:
                if change.action == "pin":
                    ctx.checkins.flush(ctx.engine)
                result = bulk.apply(session, change)
                message = f"{result.action}: {result.changed} devices changed"
                audit.write(ctx.engine, who, f"device.bulk_{change.action}", f"{result.changed} devices", bulk.describe(change))
            except OtamlError as e:
                message = f"nothing changed: {e}"
                audit.write(ctx.engine, who, f"device.bulk_{change.action}", f"{len(change.device_ids)} devices", str(e), "refused")
        ctx.policy.invalidate()
    target = _safe_back(back)
    sep = "&" if "?" in target else "?"
    return RedirectResponse(f"{target}{sep}{urlencode({'message': message[:300]})}", status_code=303)


def _device(request: Request, ctx, device_id: str, name: str, r: Range = Range.DAY) -> Response:  # type: ignore[no-untyped-def]
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
        data = views.device_detail(session, ctx.policy.get(), device, r)
    return _render(request, name, viewer=viewer, x=data)


@router.post("/devices/{device_id}/accept")
def accept_device(request: Request, ctx: ContextDep, device_id: str, csrf: Annotated[str, Form()] = "",
                  from_: Annotated[str, Query(alias="from")] = "") -> Response:
    """Accept a claimed device waiting for approval (as `release device accept`)."""
    who = acting(request, ctx, csrf)
    if isinstance(who, Response):
        return who
    if DEVICE_ID.ok(device_id):
        with Session(ctx.engine) as session:
            try:
                credentials.set_status(session, device_id, DeviceStatus.ACTIVE)
                session.commit()
                audit.write(ctx.engine, who, "device.accept", f"device {device_id}")
            except OtamlError as e:
                session.rollback()  # not pending (any more): the page shows its state
                audit.write(ctx.engine, who, "device.accept", f"device {device_id}", str(e), "refused")
        ctx.tokens.forget(device_id)
    if request.headers.get("hx-request"):
        return _devices(request, ctx, "_devices.html", _filter("", "", "", "", "", "", ""), 1, "")
    target = f"/dashboard/devices/{device_id}" if from_ == "device" and DEVICE_ID.ok(device_id) else "/dashboard/devices"
    return RedirectResponse(target, status_code=303)


DeviceRange = Literal[Range.DAY, Range.WEEK]  # per-device history is kept per hour


@router.get("/devices/{device_id}")
def device_page(request: Request, ctx: ContextDep, device_id: str, range: DeviceRange = Range.DAY) -> Response:  # noqa: A002
    return _device(request, ctx, device_id, "device.html", range)


@router.get("/fragments/devices/{device_id}")
def device_fragment(request: Request, ctx: ContextDep, device_id: str, range: DeviceRange = Range.DAY) -> Response:  # noqa: A002
    return _device(request, ctx, device_id, "_device.html", range)
