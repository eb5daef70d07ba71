"""Device-facing: the detached signatures beside the manifests.

The manifest polls themselves (/firmware.json, /channels/<channel>/firmware.json) are answered by the
ASGI layer in otaml.api.poll_asgi before routing: they are the hottest requests. Their protocol is in
manifests/README.md.
"""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from otaml.api.deps import ContextDep
from otaml.core.errors import NotFoundError
from otaml.manifest.format import is_valid_channel
from otaml.releases.serving import ServedManifest

router = APIRouter(tags=["manifests"])


async def _current(ctx: ContextDep, channel: str) -> ServedManifest:
    if not is_valid_channel(channel):
        raise NotFoundError(f"no channel {channel[:40]!r}")
    served = ctx.manifests.peek(channel)
    if served is False:
        served = await run_in_threadpool(ctx.manifests.get, channel)
    if served is None:
        raise NotFoundError(f"no release published on channel {channel!r}")
    return served  # type: ignore[return-value]


@router.get("/firmware.json.sig", summary="The default channel manifest's detached signature")
async def signature_default(ctx: ContextDep) -> Response:
    served = await _current(ctx, ctx.settings.default_channel)
    return Response(served.signature + "\n", media_type="text/plain", headers={"ETag": served.etag})


@router.get("/channels/{channel}/firmware.json.sig", summary="A channel manifest's detached signature")
async def signature_channel(channel: str, ctx: ContextDep) -> Response:
    served = await _current(ctx, channel)
    return Response(served.signature + "\n", media_type="text/plain", headers={"ETag": served.etag})
