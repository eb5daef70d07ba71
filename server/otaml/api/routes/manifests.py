"""Device-facing: the manifest poll, which is also the device's check-in. Hot path: no database access
except a cache refill once per channel every few seconds (off the event loop)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.concurrency import run_in_threadpool

from otaml.api.deps import ContextDep, bearer_token
from otaml.core.errors import AuthError, NotFoundError, OtamlError
from otaml.fleet import protocol as p
from otaml.fleet.checkins import Checkin
from otaml.fleet.tokens import hash_token, tokens_equal
from otaml.manifest.format import is_valid_channel
from otaml.releases.serving import ServedManifest

router = APIRouter(tags=["manifests"])


class BadCheckinError(OtamlError):
    status = 400


def _int_header(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or len(value) > 19:
        raise BadCheckinError(f"{name}: expected a non-negative integer, got {value[:40]!r}")
    return int(value)


_COUNTER_RE = re.compile(r"^[a-z0-9_]{1,15}=[0-9]{1,10}$")


def _counters_header(value: str | None) -> str | None:
    """'healthy=12,unstable=0' -> '{"healthy": 12, "unstable": 0}' (stored as JSON)."""
    if value is None:
        return None
    pairs = value.split(",")
    if len(pairs) > 8 or not all(_COUNTER_RE.match(pair) for pair in pairs):
        raise BadCheckinError(f"{p.H_ML_COUNTERS}: expected up to 8 label=count pairs, got {value[:60]!r}")
    return json.dumps({k: int(v) for k, v in (pair.split("=") for pair in pairs)})


def _text_header(name: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    if len(value) > limit or not value.isprintable():
        raise BadCheckinError(f"{name}: expected printable text of at most {limit} characters, got {value[:40]!r}")
    return value


async def _check_in(ctx: ContextDep, request: Request, channel: str) -> None:
    h = request.headers
    device_id = h.get(p.H_DEVICE_ID)
    if device_id is None:
        if ctx.settings.allow_legacy_clients:
            return
        raise AuthError(
            f"expected a device id ({p.H_DEVICE_ID}) and token (Authorization: Bearer); this server does "
            f"not accept legacy clients (OTAML_ALLOW_LEGACY_CLIENTS)"
        )
    token = bearer_token(h.get("authorization"))
    expected = ctx.tokens.cached(device_id)
    if expected is None and token is not None:
        expected = await run_in_threadpool(ctx.tokens.load, device_id)
    if token is None or expected is None or not tokens_equal(hash_token(token), expected):
        raise AuthError(f"unknown device {device_id[:64]!r} or wrong device token")
    state = h.get(p.H_OTA_STATE)
    if state is not None and state not in p.OtaState._value2member_map_:
        raise BadCheckinError(f"{p.H_OTA_STATE}: expected one of {', '.join(p.OtaState)}, got {state[:40]!r}")
    ctx.checkins.record(
        Checkin(
            device_id=device_id,
            last_seen=datetime.now(UTC),
            channel=channel,
            version=_text_header(p.H_VERSION, h.get(p.H_VERSION), 32),
            partition=_text_header(p.H_PARTITION, h.get(p.H_PARTITION), 16),
            ota_state=state,
            manifest_version=_int_header(p.H_MANIFEST_VERSION, h.get(p.H_MANIFEST_VERSION)),
            secure_version=_int_header(p.H_SECURE_VERSION, h.get(p.H_SECURE_VERSION)),
            ml_model=_text_header(p.H_MODEL, h.get(p.H_MODEL), 48),
            ml_counters=_counters_header(h.get(p.H_ML_COUNTERS)),
            ml_latency_us=_int_header(p.H_ML_LATENCY_US, h.get(p.H_ML_LATENCY_US)),
        )
    )


async def _current(ctx: ContextDep, channel: str) -> ServedManifest:
    if not is_valid_channel(channel):
        raise NotFoundError(f"no channel {channel[:40]!r}")
    served = ctx.manifests.peek(channel)
    if served is False:
        served = await run_in_threadpool(ctx.manifests.get, channel)
    if served is None:
        raise NotFoundError(f"no release published on channel {channel!r}")
    return served  # type: ignore[return-value]


async def _poll(ctx: ContextDep, request: Request, channel: str, if_none_match: str | None) -> Response:
    interval = {p.H_POLL_INTERVAL: str(ctx.settings.poll_interval)}
    try:
        await _check_in(ctx, request, channel)
        served = await _current(ctx, channel)
    except OtamlError as e:
        e.headers = interval  # type: ignore[attr-defined]
        raise
    headers = {
        **interval,
        "ETag": served.etag,
        "Cache-Control": "no-cache",
        p.H_SIGNATURE: served.signature,
        p.H_KEY_ID: served.key_id,
    }
    if if_none_match is not None and served.etag in (t.strip() for t in if_none_match.split(",")):
        return Response(status_code=304, headers=headers)
    return Response(served.body, media_type="application/json", headers=headers)


@router.get("/firmware.json", summary="Poll the default channel's manifest (a device check-in)")
async def poll_default(ctx: ContextDep, request: Request, if_none_match: Annotated[str | None, Header()] = None) -> Response:
    return await _poll(ctx, request, ctx.settings.default_channel, if_none_match)


@router.get("/channels/{channel}/firmware.json", summary="Poll a channel's manifest (a device check-in)")
async def poll_channel(
    channel: str, ctx: ContextDep, request: Request, if_none_match: Annotated[str | None, Header()] = None
) -> Response:
    return await _poll(ctx, request, channel, if_none_match)


@router.get("/firmware.json.sig", summary="The default channel manifest's detached signature")
async def signature_default(ctx: ContextDep) -> Response:
    served = await _current(ctx, ctx.settings.default_channel)
    return Response(served.signature + "\n", media_type="text/plain", headers={"ETag": served.etag})


@router.get("/channels/{channel}/firmware.json.sig", summary="A channel manifest's detached signature")
async def signature_channel(channel: str, ctx: ContextDep) -> Response:
    served = await _current(ctx, channel)
    return Response(served.signature + "\n", media_type="text/plain", headers={"ETag": served.etag})
