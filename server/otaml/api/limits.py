"""Request bodies are limited before any work is done for them: a plain ASGI layer in front of the
routes that knows each route's limit.

- A declared Content-Length above the limit is answered 413 at once, before authentication and
  before a byte of the body is read (the server never buffers what it will refuse).
- A body without a length (chunked) is counted while it streams in and refused at the limit.
- JSON bodies (small, read whole here) are checked before the framework parses them: UTF-8, nesting
  depth, no NaN/Infinity, no duplicate keys, no integers longer than any column holds.
- A body that stops arriving for ``body_idle_timeout`` seconds, or that takes longer than the route's
  total time, is answered 408: a slow client cannot hold a worker or a staging file.

The publish route streams its body to a staging file itself; this layer only counts and times it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from otaml.core.config import Settings
from otaml.core.errors import BadRequestError, BodyTimeoutError, BodyTooLargeError, OtamlError
from otaml.manifest.format import MAX_MANIFEST_BYTES

MAX_JSON_DEPTH = 32
MAX_JSON_INT_DIGITS = 20  # int64 has 19; anything longer is refused before int() sees it
DEFAULT_LIMIT = 64 * 1024
EVENT_LIMIT = 4 * 1024  # a device's event: kind, version, reason and 256 characters of detail
MANIFEST_LIMIT = MAX_MANIFEST_BYTES  # what the firmware accepts
FORM_LIMIT = 4 * 1024  # the dashboard's login and action forms
BATCH_LIMIT = 1024 * 1024  # release provision: up to 10,000 device ids at once
CLAIM_LIMIT = 1024  # a device's claim: its id and the token it chose

Receive = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class BodyRule:
    methods: frozenset[str]
    path: re.Pattern[str]
    limit: int
    kind: str  # "json": read whole and checked here; "form": read whole; "stream": counted as the route reads
    seconds: float | None = None  # total time for the body (None: the idle timeout)


def rules(settings: Settings) -> list[BodyRule]:
    def rule(methods: str, path: str, limit: int, kind: str, seconds: float | None = None) -> BodyRule:
        return BodyRule(frozenset(methods.split()), re.compile(path), limit, kind, seconds)

    return [
        rule("POST", r"/api/releases", settings.max_upload_bytes, "stream", settings.upload_timeout),
        rule("POST", r"/api/channels/[^/]*/manifests", MANIFEST_LIMIT, "stream"),
        rule("POST", r"/api/devices/[^/]*/events", EVENT_LIMIT, "json"),
        rule("POST", r"/api/devices/batch", BATCH_LIMIT, "json"),
        rule("POST", r"/api/claim", CLAIM_LIMIT, "json"),
        rule("POST", r"/api/rollouts", 128 * 1024, "json"),
        rule("POST", r"/dashboard/.*", FORM_LIMIT, "form"),
        rule("POST PUT PATCH", r".*", DEFAULT_LIMIT, "json"),
        rule("GET HEAD DELETE OPTIONS", r".*", DEFAULT_LIMIT, "stream"),
    ]


_JSON_SPECIAL = re.compile(r'[\[\]{}"\\]')


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects, counted outside strings (linear in the text, and no
    recursion: this runs before any parser that could overflow the stack)."""
    depth = deepest = 0
    in_string, skip = False, -1
    for m in _JSON_SPECIAL.finditer(text):
        i = m.start()
        if i == skip:  # the character after a backslash inside a string
            continue
        c = text[i]
        if in_string:
            if c == "\\":
                skip = i + 1
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def _no_constant(name: str) -> object:
    raise BadRequestError(f"body: expected JSON numbers, got {name} (not JSON)")


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise BadRequestError(f"body: expected a finite number, got {text[:40]}")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise BadRequestError(f"body: expected integers of at most {MAX_JSON_INT_DIGITS} digits, got {len(text)}")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BadRequestError(f"body: expected each key once in an object, got {key[:40]!r} twice")
        out[key] = value
    return out


def check_json(body: bytes) -> None:
    """Raises BadRequestError naming what is wrong with a JSON request body."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequestError(f"body: expected UTF-8 JSON, got an invalid byte at offset {e.start}") from None
    if (depth := json_depth(text)) > MAX_JSON_DEPTH:
        raise BadRequestError(f"body: expected JSON nested at most {MAX_JSON_DEPTH} deep, got {depth}")
    try:
        json.loads(text, parse_constant=_no_constant, parse_float=_finite, parse_int=_int, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError) as e:
        raise BadRequestError(f"body: expected JSON, got {str(e)[:80]}") from None


def _content_length(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, bool]:
    """(declared length, whether a body may follow)."""
    length, chunked = None, False
    for name, value in headers:
        if name == b"content-length":
            v = value.strip()
            if not v.isdigit():
                raise BadRequestError(f"Content-Length: expected a number of bytes, got {value[:40]!r}")
            # More digits than any limit has: no need to convert thousands of them.
            length = int(v) if len(v) <= 18 else 10**18
        elif name == b"transfer-encoding":
            chunked = True
    return length, chunked or bool(length)


class _Body:
    """``receive`` for the app, counting and timing the body as it arrives."""

    def __init__(self, receive: Receive, rule: BodyRule, idle: float):
        self._receive = receive
        self._rule = rule
        self._idle = idle
        self._deadline = time.monotonic() + (rule.seconds or idle)
        self.size = 0

    async def __call__(self) -> dict[str, Any]:
        wait = min(self._idle, self._deadline - time.monotonic())
        try:
            if wait <= 0:
                raise TimeoutError
            message = await asyncio.wait_for(self._receive(), wait)
        except TimeoutError:
            raise BodyTimeoutError(
                f"expected the request body within {self._rule.seconds or self._idle:g} s and no pause over "
                f"{self._idle:g} s; got {self.size} bytes so far"
            ) from None
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > self._rule.limit:
                raise BodyTooLargeError(f"expected a request body of at most {self._rule.limit} bytes, got more")
        return message

    async def read_all(self) -> bytes:
        chunks = []
        while True:
            message = await self()
            if message["type"] != "http.request":
                raise BadRequestError("the client went away before the body was complete")
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # http.disconnect, when the client goes away

    return replay


class BodyLimits:
    def __init__(self, app, settings: Settings):  # type: ignore[no-untyped-def]
        self.app = app
        self.rules = rules(settings)
        self.idle = settings.body_idle_timeout

    def rule_for(self, method: str, path: str) -> BodyRule:
        for r in self.rules:
            if method in r.methods and r.path.fullmatch(path):
                return r
        return BodyRule(frozenset(), re.compile(""), DEFAULT_LIMIT, "stream")

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rule = self.rule_for(scope["method"], scope["path"])
        try:
            length, has_body = _content_length(scope["headers"])
            if length is not None and length > rule.limit:
                raise BodyTooLargeError(f"expected a request body of at most {rule.limit} bytes, got {length}")
            body = _Body(receive, rule, self.idle)
            if rule.kind == "stream" or not has_body:
                receive = body
            else:
                data = await body.read_all()
                if rule.kind == "json" and data:
                    check_json(data)
                receive = _replay(data, receive)
        except OtamlError as e:
            return await refuse(send, e)
        return await self.app(scope, receive, send)


async def refuse(send, exc: OtamlError) -> None:  # type: ignore[no-untyped-def]
    body = json.dumps({"detail": str(exc), "error": type(exc).__name__}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close")]
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
