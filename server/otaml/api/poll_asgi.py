"""The ASGI callable the HTTP server runs: device traffic is answered here, before the framework.

Polls and downloads are most of a fleet's requests; routing, dependency injection, the framework's
middleware and response classes cost more than the work itself, so this layer sits outside the FastAPI
application (``api/main.py: build_asgi``) and hands everything else to it.

- Polls: one implementation in releases/polling.py. The request headers are read once; only the ones a
  poll uses are decoded.
- Binaries: immutable blobs with the semantics of the binaries route (strong ETag, If-None-Match, one
  Range, If-Range, 416). A binary of up to 4 MB, or one range of it, is sent from the in-memory copy
  (storage/blob_cache.py) in one message; a larger one is sent by the HTTP server itself from the blob's
  file (the ASGI pathsend extension: no Python read loop). Anything else (several ranges, ranges of
  large blobs, unknown blobs) falls through to the FastAPI route.
"""

from __future__ import annotations

import re

from otaml.core.http import etag_matches
from otaml.releases.polling import answer_poll

_CHANNEL_PATH = re.compile(r"/channels/([^/]*)/firmware\.json")
_BINARY_PATH = re.compile(r"/binaries/([0-9a-f]{64})/[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")  # ASCII digits only: \d would take any script's digits
_HUGE = 10**18  # beyond any blob: a position with more digits is "past the end", never converted
_PATHSEND = "http.response.pathsend"
_BINARY_HEADERS = [(b"cache-control", b"public, max-age=31536000, immutable"), (b"accept-ranges", b"bytes")]


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


def poll_headers(raw: list[tuple[bytes, bytes]]) -> tuple[dict[str, str], tuple[tuple[bytes, bytes], ...]]:
    """(the headers a poll reads, decoded; every X-Otaml-* header as sent, the check-in memo's key). A
    repeated header: the last one counts."""
    h: dict[str, str] = {}
    state = []
    for name, value in raw:
        if name[:8] == b"x-otaml-":
            h[name.decode("latin-1")] = value.decode("latin-1")
            state.append((name, value))
        elif name == b"authorization" or name == b"if-none-match":
            h[name.decode("latin-1")] = value.decode("latin-1")
    return h, tuple(state)


class DeviceFastPath:
    def __init__(self, app, fastapi_app):  # type: ignore[no-untyped-def]
        self.app = app  # the FastAPI application (behind the proxy-headers layer)
        self.fastapi_app = fastapi_app
        self.ctx = None  # the server context, once the lifespan has built it

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] == "http" and (scope["method"] == "GET" or scope["method"] == "HEAD"):
            ctx = self.ctx
            if ctx is None:
                ctx = self.ctx = getattr(self.fastapi_app.state, "ctx", None)
            if ctx is not None:
                path = scope["path"]
                if path == "/firmware.json":
                    return await self._poll(ctx, ctx.settings.default_channel, scope, send)
                if path[:10] == "/channels/":
                    m = _CHANNEL_PATH.fullmatch(path)
                    if m is not None:
                        return await self._poll(ctx, m.group(1), scope, send)
                elif path[:10] == "/binaries/":
                    m = _BINARY_PATH.fullmatch(path)
                    if m is not None and await self._binary(ctx, m.group(1), scope, send):
                        return None
        return await self.app(scope, receive, send)

    async def _poll(self, ctx, channel, scope, send):  # type: ignore[no-untyped-def]
        h, key = poll_headers(scope["headers"])
        answer = await answer_poll(ctx, channel, h, key)
        counters = ctx.counters
        counters.polls += 1  # plain ints on the event loop's thread: no lock, nothing allocated
        if answer.status == 304:
            counters.not_modified += 1
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
        await send({"type": "http.response.body", "body": answer.body if scope["method"] == "GET" else b""})

    async def _binary(self, ctx, sha256, scope, send) -> bool:  # type: ignore[no-untyped-def]
        h = {}
        for name, value in scope["headers"]:
            if name == b"range" or name == b"if-range" or name == b"if-none-match":
                h[name] = value.decode("latin-1")
        etag = f'"{sha256}"'
        base = [(b"etag", etag.encode()), *_BINARY_HEADERS]
        if etag_matches(h.get(b"if-none-match"), etag):
            if not ctx.store.exists(sha256):
                return False  # the route answers 404
            await send({"type": "http.response.start", "status": 304, "headers": base})
            await send({"type": "http.response.body", "body": b""})
            return True
        spec = h.get(b"range")
        if spec is not None and h.get(b"if-range", etag) == etag:
            data = ctx.blob_cache.get(sha256)
            if data is None:
                return False  # unknown or large: the FastAPI route streams the range from disk (or answers 404)
            size = len(data)
            r = range_of(spec, size)
            if r is False:
                return False  # several ranges or odd syntax: leave it to the framework
            if r is None:
                await send({"type": "http.response.start", "status": 416,
                            "headers": [*base, (b"content-range", f"bytes */{size}".encode()), (b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return True
            body = data[r[0]:r[1]]
            base += [(b"content-range", f"bytes {r[0]}-{r[1] - 1}/{size}".encode()),
                     (b"content-type", b"application/octet-stream"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 206, "headers": base})
            await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
            return True
        # Up to 4 MB: the in-memory copy in one send (measured faster under granian than pathsend, whose
        # file reads go through its blocking-thread pool); larger: pathsend, granian reads the file.
        data = ctx.blob_cache.get(sha256)
        path = ctx.store.path_for(sha256)
        pathsend = data is None and _PATHSEND in scope.get("extensions", ())
        if data is None and not pathsend:
            return False  # unknown, or large under a server without pathsend: the route answers
        try:
            size = len(data) if data is not None else path.stat().st_size
        except OSError:
            return False  # the route answers 404
        base += [(b"content-type", b"application/octet-stream"), (b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": base})
        if scope["method"] == "HEAD":
            await send({"type": "http.response.body", "body": b""})
        elif pathsend:
            await send({"type": _PATHSEND, "path": str(path)})
        else:
            await send({"type": "http.response.body", "body": data})
        return True
