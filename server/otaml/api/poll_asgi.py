"""A plain ASGI layer that answers the device traffic before the framework sees it.

Polls and downloads are most of a fleet's requests; routing, dependency injection and response classes
cost more than the work itself. Polls: one implementation in releases/polling.py. Binaries: immutable
blobs of up to 4 MB from memory (storage/blob_cache.py), with the semantics of the binaries route
(strong ETag, If-None-Match, one Range, If-Range, 416); anything else falls through to FastAPI.
"""

from __future__ import annotations

import re

from otaml.core.http import etag_matches
from otaml.releases.polling import answer_poll, poll_channel

_BINARY_PATH = re.compile(r"/binaries/([0-9a-f]{64})/[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")  # ASCII digits only: \d would take any script's digits
_HUGE = 10**18  # beyond any blob: a position with more digits is "past the end", never converted


def _position(digits: str) -> int:
    return int(digits) if len(digits) <= 18 else _HUGE


def range_of(spec: str, size: int) -> tuple[int, int] | None | bool:
    """(start, end exclusive) for one byte range; None if not satisfiable; False if not understood."""
    m = _RANGE.fullmatch(spec.strip())
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return False
    if m.group(1) == "":
        n = _position(m.group(2))
        return (max(size - n, 0), size) if n > 0 else None
    start = _position(m.group(1))
    end = min(_position(m.group(2)) + 1, size) if m.group(2) else size
    return (start, end) if start < size and start < end else None


class PollFastPath:
    def __init__(self, app, fastapi_app):  # type: ignore[no-untyped-def]
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        ctx = getattr(self.fastapi_app.state, "ctx", None)
        if ctx is None:
            return await self.app(scope, receive, send)
        path = scope["path"]
        channel = poll_channel(path, ctx.settings.default_channel)
        if channel is not None:
            return await self._poll(ctx, channel, scope, send)
        m = _BINARY_PATH.fullmatch(path)
        if m is not None and await self._binary(ctx, m.group(1), scope, send):
            return None
        return await self.app(scope, receive, send)

    async def _poll(self, ctx, channel, scope, send):  # type: ignore[no-untyped-def]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        answer = await answer_poll(ctx, channel, headers)
        ctx.counters.polls += 1  # plain ints on the event loop's thread: no lock, nothing allocated
        if answer.status == 304:
            ctx.counters.not_modified += 1
        out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()]
        if answer.status != 304:
            out.append((b"content-type", answer.media_type.encode()))
            out.append((b"content-length", str(len(answer.body)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": out})
        body = answer.body if scope["method"] == "GET" and answer.status != 304 else b""
        await send({"type": "http.response.body", "body": body})

    async def _binary(self, ctx, sha256, scope, send) -> bool:  # type: ignore[no-untyped-def]
        data = ctx.blob_cache.get(sha256)
        if data is None:
            return False  # unknown or large: the FastAPI route streams it (or answers 404)
        h = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        etag = f'"{sha256}"'
        base = [(b"etag", etag.encode()), (b"cache-control", b"public, max-age=31536000, immutable"),
                (b"accept-ranges", b"bytes")]
        if etag_matches(h.get("if-none-match"), etag):
            await send({"type": "http.response.start", "status": 304, "headers": base})
            await send({"type": "http.response.body", "body": b""})
            return True
        status, body, size = 200, data, len(data)
        spec = h.get("range")
        if spec is not None and h.get("if-range", etag) == etag:
            r = range_of(spec, size)
            if r is False:
                return False  # several ranges or odd syntax: leave it to the framework
            if r is None:
                await send({"type": "http.response.start", "status": 416,
                            "headers": [*base, (b"content-range", f"bytes */{size}".encode()), (b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return True
            status, body = 206, data[r[0]:r[1]]
            base.append((b"content-range", f"bytes {r[0]}-{r[1] - 1}/{size}".encode()))
        base += [(b"content-type", b"application/octet-stream"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": base})
        await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
        return True
