"""Device-facing: content-addressed binaries with Range (for resumed downloads) and strong ETags."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response
from fastapi.responses import FileResponse

from otaml.api.deps import ContextDep
from otaml.core.errors import NotFoundError
from otaml.core.http import etag_matches
from otaml.core.types import FILENAME, SHA256

router = APIRouter(prefix="/binaries", tags=["binaries"])


_BINARY = {
    200: {"content": {"application/octet-stream": {}}, "description": "the binary (HEAD: its headers)"},
    206: {"content": {"application/octet-stream": {}}, "description": "one byte range of it"},
    304: {"description": "unchanged (If-None-Match)"},
    416: {"description": "the range is outside the binary"},
}


@router.get("/{sha256}/{filename}", summary="Download a published binary", responses=_BINARY)
def get_binary(
    sha256: str, filename: str, ctx: ContextDep, if_none_match: Annotated[str | None, Header()] = None
) -> Response:
    if not SHA256.ok(sha256) or not FILENAME.ok(filename) or not ctx.store.exists(sha256):
        raise NotFoundError("Binary not found")
    # The bytes never change for a sha256, so the digest is a strong validator (also for If-Range).
    etag = f'"{sha256}"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=31536000, immutable"}
    if etag_matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    return FileResponse(
        ctx.store.path_for(sha256), media_type="application/octet-stream", filename=filename, headers=headers
    )


@router.head("/{sha256}/{filename}", summary="A published binary's headers", responses=_BINARY)
def head_binary(
    sha256: str, filename: str, ctx: ContextDep, if_none_match: Annotated[str | None, Header()] = None
) -> Response:
    return get_binary(sha256, filename, ctx, if_none_match)
