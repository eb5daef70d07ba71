"""A plain ASGI layer that answers manifest polls before the framework sees them.

Polls are most of a fleet's traffic; routing, dependency injection and response classes cost more
than the poll itself. Everything else passes through to FastAPI untouched.
"""

from __future__ import annotations

from otaml.releases.polling import answer_poll, poll_channel


class PollFastPath:
    def __init__(self, app, fastapi_app):  # type: ignore[no-untyped-def]
        self.app = app
        self.fastapi_app = fastapi_app

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        ctx = getattr(self.fastapi_app.state, "ctx", None)
        channel = poll_channel(scope["path"], ctx.settings.default_channel) if ctx is not None else None
        if channel is None:
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        answer = await answer_poll(ctx, channel, headers)
        out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.items()]
        if answer.status != 304:
            out.append((b"content-type", answer.media_type.encode()))
            out.append((b"content-length", str(len(answer.body)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": out})
        body = answer.body if scope["method"] == "GET" and answer.status != 304 else b""
        await send({"type": "http.response.body", "body": body})
