"""The manifest poll, which is also the device's check-in: one implementation, answered by a plain
ASGI layer in front of the framework (api/poll_asgi.py) because it is by far the hottest request.

No database access on this path except a cache refill once per channel every few seconds, and a
token lookup the first time a process sees a device (both off the event loop).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool

from otaml.core.errors import AuthError, NotFoundError, OtamlError, PendingApprovalError
from otaml.core.types import CHANNEL, DEVICE_ID, INT32_MAX, INT64_MAX, UINT32_MAX, parse_int, parse_uint, shown
from otaml.fleet import config
from otaml.fleet import protocol as p
from otaml.fleet.checkins import Checkin
from otaml.core.http import etag_matches
from otaml.fleet.tokens import Verdict, bearer_token
from otaml.releases.serving import ServedManifest
from otaml.rollouts.policy import FleetPolicy

_COUNTER_RE = re.compile(r"[a-z0-9_]{1,15}=[0-9]{1,10}")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")


class BadCheckinError(OtamlError):
    status = 400


@dataclass
class PollAnswer:
    status: int
    headers: list[tuple[bytes, bytes]]  # encoded, content-type and content-length included
    body: bytes = b""


class ResponseHeads:
    """The response headers of each served manifest, encoded once: a poll for an unchanged manifest
    copies a list instead of formatting seven headers. Keyed by the ServedManifest object, which the fleet
    policy keeps until the fleet revision moves (bounded; cleared when full)."""

    def __init__(self, poll_interval: int, limit: int = 256):
        self._interval = (p.H_POLL_INTERVAL.encode(), str(poll_interval).encode())
        self._limit = limit
        self._heads: dict[int, tuple[ServedManifest, list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]] = {}
        self.error = [self._interval, (b"content-type", b"application/json")]

    def of(self, served: ServedManifest) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
        """(headers of a 200, headers of a 304) for this manifest."""
        hit = self._heads.get(id(served))
        if hit is None or hit[0] is not served:
            if len(self._heads) >= self._limit:
                self._heads.clear()
            common = [self._interval, (b"etag", served.etag.encode()), (b"cache-control", b"no-cache"),
                      (p.H_SIGNATURE.encode(), served.signature.encode()), (p.H_KEY_ID.encode(), served.key_id.encode())]
            full = [*common, (b"content-type", b"application/json"), (b"content-length", str(len(served.body)).encode())]
            hit = self._heads[id(served)] = (served, full, common)
        return hit[1], hit[2]


# Each integer header is limited to the column it lands in (as declared on PostgreSQL).
def _int_header(name: str, value: str | None, high: int) -> int | None:
    if value is None:
        return None
    number = parse_uint(value, high)
    if number is None:
        raise BadCheckinError(f"{name}: expected an integer from 0 to {high} in ASCII digits, got {shown(value)}")
    return number


def _text_header(name: str, value: str | None, limit: int) -> str | None:
    if value is None:
        return None
    if not 0 < len(value) <= limit or not _PRINTABLE_ASCII.fullmatch(value):
        raise BadCheckinError(f"{name}: expected 1 to {limit} printable ASCII characters, got {shown(value)}")
    return value


def _counters_header(value: str | None) -> str | None:
    """'healthy=12,unstable=0' -> '{"healthy": 12, "unstable": 0}' (stored as JSON)."""
    if value is None:
        return None
    pairs = value.split(",")
    if len(pairs) > 8 or not all(_COUNTER_RE.fullmatch(pair) for pair in pairs):
        raise BadCheckinError(f"{p.H_ML_COUNTERS}: expected up to 8 label=count pairs, got {shown(value, 60)}")
    return json.dumps({k: int(v) for k, v in (pair.split("=") for pair in pairs)})


def _rssi_header(value: str | None) -> int | None:
    if value is None:
        return None
    number = parse_int(value, -128, 127)
    if number is None:
        raise BadCheckinError(f"{p.H_RSSI}: expected dBm from -128 to 127 in ASCII digits, got {shown(value)}")
    return number


def _reset_header(value: str | None) -> str | None:
    if value is not None and value not in p.ResetReason._value2member_map_:
        raise BadCheckinError(f"{p.H_RESET_REASON}: expected one of {', '.join(p.ResetReason)}, got {shown(value)}")
    return value


def _config_header(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(config.parse_reported(value)) if value else "{}"
    except ValueError:
        raise BadCheckinError(
            f"{p.H_CONFIG_APPLIED}: expected name=value pairs of {', '.join(config.PROPERTIES)}, got {shown(value, 60)}"
        ) from None


def checkin_from_headers(h: Mapping[str, str], device_id: str, channel: str) -> Checkin:
    """Reported state from lower-cased request headers, each checked against the column it lands in.
    Raises BadCheckinError naming the header. ``device_id`` and ``channel`` are already valid."""
    state = h.get("x-otaml-ota-state")
    if state is not None and state not in p.OtaState._value2member_map_:
        raise BadCheckinError(f"{p.H_OTA_STATE}: expected one of {', '.join(p.OtaState)}, got {shown(state)}")
    return Checkin(
        device_id=device_id,
        last_seen=datetime.now(UTC),
        channel=channel,
        version=_text_header(p.H_VERSION, h.get("x-otaml-version"), 32),
        partition=_text_header(p.H_PARTITION, h.get("x-otaml-partition"), 16),
        ota_state=state,
        manifest_version=_int_header(p.H_MANIFEST_VERSION, h.get("x-otaml-manifest-version"), INT64_MAX),
        secure_version=_int_header(p.H_SECURE_VERSION, h.get("x-otaml-secure-version"), UINT32_MAX),
        ml_model=_text_header(p.H_MODEL, h.get("x-otaml-model"), 48),
        ml_counters=_counters_header(h.get("x-otaml-ml-counters")),
        ml_latency_us=_int_header(p.H_ML_LATENCY_US, h.get("x-otaml-ml-latency-us"), INT32_MAX),
        config_revision=_int_header(p.H_CONFIG_REVISION, h.get("x-otaml-config-revision"), INT64_MAX),
        reported_config=_config_header(h.get("x-otaml-config-applied")),
        rssi=_rssi_header(h.get("x-otaml-rssi")),
        free_heap=_int_header(p.H_FREE_HEAP, h.get("x-otaml-free-heap"), UINT32_MAX),
        min_free_heap=_int_header(p.H_MIN_FREE_HEAP, h.get("x-otaml-min-free-heap"), UINT32_MAX),
        uptime_s=_int_header(p.H_UPTIME_S, h.get("x-otaml-uptime-s"), INT64_MAX),
        reset_reason=_reset_header(h.get("x-otaml-reset-reason")),
    )


def _restamped(checkin: Checkin, now: datetime) -> Checkin:
    """A copy with a new last_seen, without running the dataclass __init__ (a fifth of a poll's cost)."""
    copy = object.__new__(Checkin)
    copy.__dict__.update(checkin.__dict__)
    copy.__dict__["last_seen"] = now
    return copy


class ValidatedCheckins:
    """The newest check-in headers of each device, validated. Most polls come from a device whose state
    did not change since its last poll: their headers are compared as one tuple and the validated
    check-in is reused with the new time, instead of checking every header again. Bounded by device
    count (cleared when full); per process."""

    def __init__(self, limit: int = 200_000):
        self._limit = limit
        self._last: dict[str, tuple[tuple[str | None, ...], Checkin]] = {}

    def checkin(self, h: Mapping[str, str], device_id: str, channel: str, key: tuple | None = None) -> Checkin:
        """``key``: every X-Otaml-* header of the request as sent (the fast path collects them while it
        reads the headers); None builds it from ``h``."""
        key = (channel, key if key is not None else tuple(i for i in h.items() if i[0].startswith("x-otaml-")))
        hit = self._last.get(device_id)
        now = datetime.now(UTC)
        if hit is not None and hit[0] == key:
            return _restamped(hit[1], now)
        checkin = checkin_from_headers(h, device_id, channel)  # raises before anything is remembered
        if len(self._last) >= self._limit:
            self._last.clear()
        self._last[device_id] = (key, checkin)
        return checkin


async def current_manifest(ctx, channel: str) -> ServedManifest:  # type: ignore[no-untyped-def]
    """The channel's baseline manifest from the fleet policy (refilled off the event loop).
    Raises NotFoundError for an invalid channel name or an empty channel."""
    if not CHANNEL.ok(channel):
        raise NotFoundError(f"no channel {shown(channel)}")
    _, served = (await fleet_policy(ctx)).baselines.get(channel, (None, None))
    if served is None:
        raise NotFoundError(f"no release published on channel {channel!r}")
    return served


async def fleet_policy(ctx) -> FleetPolicy:  # type: ignore[no-untyped-def]
    policy, refresh = ctx.policy.peek()
    if policy is None:
        return await run_in_threadpool(ctx.policy.get)
    if refresh:
        asyncio.get_running_loop().run_in_executor(None, ctx.policy.get)
    return policy


def _config_headers(ctx, policy: FleetPolicy, channel: str, device_id: str, reported: str | None) -> list[tuple[bytes, bytes]]:  # type: ignore[no-untyped-def]
    """The signed desired-config document, only for a device that says it applied an older one."""
    revision = policy.revision[1]
    if reported is None or revision == 0:
        return []
    applied = parse_uint(reported, INT64_MAX)
    if applied is None or applied >= revision:
        return []
    doc, sig = ctx.config_docs.get(device_id, revision, lambda: policy.desired_config(channel, device_id))
    return [(_H_CONFIG, doc.encode()), (_H_CONFIG_SIGNATURE, sig.encode())]


_H_CONFIG, _H_CONFIG_SIGNATURE, _H_NEW_TOKEN = (n.encode() for n in (p.H_CONFIG, p.H_CONFIG_SIGNATURE, p.H_NEW_TOKEN))


async def answer_poll(ctx, channel: str, h: Mapping[str, str], key: tuple | None = None) -> PollAnswer:  # type: ignore[no-untyped-def]
    """Authenticate, record the check-in, answer with the manifest this device is offered (or 304):
    a pinned or held version, a rollout's release, or the channel's baseline. ``h``: the lower-cased
    request headers; ``key``: see ValidatedCheckins.checkin."""
    extra: list[tuple[bytes, bytes]] = []
    try:
        device_id = h.get("x-otaml-device-id")
        if device_id is None:
            if not ctx.settings.allow_legacy_clients:
                raise AuthError(
                    f"expected a device id ({p.H_DEVICE_ID}) and token (Authorization: Bearer); this server does "
                    f"not accept legacy clients (OTAML_ALLOW_LEGACY_CLIENTS)"
                )
        else:
            # Everything that will be recorded is checked first: the channel of the path, the id, then
            # (after the token) every header, so a check-in is stored whole or not at all.
            if not CHANNEL.ok(channel):
                raise NotFoundError(f"no channel {shown(channel)}")
            if not DEVICE_ID.ok(device_id):
                raise BadCheckinError(f"{p.H_DEVICE_ID}: expected {DEVICE_ID.expected}, got {shown(device_id)}")
            verdict, handover = await ctx.tokens.check(device_id, bearer_token(h.get("authorization")))
            if verdict is not Verdict.OK:
                if verdict is Verdict.WRONG:
                    raise AuthError(f"unknown device {device_id!r} or wrong device token")
                if verdict is Verdict.PENDING:
                    raise PendingApprovalError(
                        f"device {device_id!r} is waiting for approval (`release device accept {device_id}`)"
                    )
            checkin = ctx.checkin_memo.checkin(h, device_id, channel, key)
            reported_keyset = h.get("x-otaml-keyset-version")
            if reported_keyset is not None:
                try:
                    extra += [(k.encode(), v.encode()) for k, v in (await ctx.keysets.headers(reported_keyset)).items()]
                except ValueError as e:
                    raise BadCheckinError(str(e)) from None
            if verdict is Verdict.PROMOTE:
                await run_in_threadpool(ctx.tokens.promote, device_id)
            if handover is not None:
                extra.append((_H_NEW_TOKEN, handover.encode()))  # only on an answer to a check-in with the current token
            ctx.checkins.record(checkin)
        if device_id is None:
            served = await current_manifest(ctx, channel)
        else:
            policy = await fleet_policy(ctx)
            choice = policy.choose(channel, device_id, h.get("x-otaml-version"))
            extra += _config_headers(ctx, policy, channel, device_id, h.get("x-otaml-config-revision"))
            if choice.manifest is None:
                raise NotFoundError(
                    f"no release published on channel {channel!r}" if choice.because == "baseline" else
                    f"device is {choice.because} at {choice.version}, which has no manifest on {channel!r}"
                )
            served = choice.manifest
    except OtamlError as e:
        body = json.dumps({"detail": str(e), "error": type(e).__name__}).encode()
        return PollAnswer(e.status, [*ctx.poll_heads.error, *extra, (b"content-length", str(len(body)).encode())], body)
    full, not_modified = ctx.poll_heads.of(served)
    inm = h.get("if-none-match")
    if inm is not None and etag_matches(inm, served.etag):
        return PollAnswer(304, [*extra, *not_modified] if extra else not_modified)
    return PollAnswer(200, [*extra, *full] if extra else full, served.body)
