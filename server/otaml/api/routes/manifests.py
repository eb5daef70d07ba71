"""Device-facing: the detached signatures beside the manifests.

The manifest polls themselves (/firmware.json, /channels/<channel>/firmware.json) are answered by the
ASGI layer in otaml.api.poll_asgi before routing: they are the hottest requests. Their protocol is in
manifests/README.md.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from otaml.api.deps import ContextDep
from otaml.releases.polling import current_manifest

router = APIRouter(tags=["manifests"])
_SIG = {200: {"content": {"text/plain": {}}, "description": "base64 DER ECDSA P-256 signature over the manifest body"}}


@router.get("/firmware.json.sig", summary="The default channel manifest's detached signature", responses=_SIG)
async def signature_default(ctx: ContextDep) -> Response:
    served = await current_manifest(ctx, ctx.settings.default_channel)
    return Response(served.signature + "\n", media_type="text/plain", headers={"ETag": served.etag})


@router.get("/channels/{channel}/firmware.json.sig", summary="A channel manifest's detached signature", responses=_SIG)
async def signature_channel(channel: str, ctx: ContextDep) -> Response:
    served = await current_manifest(ctx, channel)
    return Response(served.signature + "\n", media_type="text/plain", headers={"ETag": served.etag})
