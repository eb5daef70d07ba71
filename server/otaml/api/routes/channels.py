"""Channels and their current manifests (admin): listing, and storing a re-signed manifest."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session, select

from otaml.api.deps import AdminDep, ContextDep, SessionDep
from otaml.core.errors import ManifestError, NotFoundError
from otaml.manifest.format import MAX_MANIFEST_BYTES, ManifestTooLargeError, is_valid_channel
from otaml.models import ChannelPublic, Manifest, ManifestPublic, Release
from otaml.releases import publishing
from otaml.releases.urls import manifest_path

router = APIRouter(prefix="/api/channels", tags=["channels"])


async def read_capped_manifest(request: Request) -> bytes:
    """The body, refused (413) as soon as it exceeds what any device reads: a declared Content-Length
    before a byte is read, else while it streams in, so nothing larger is ever buffered or parsed."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (len(declared) > 9 or int(declared) > MAX_MANIFEST_BYTES):
        raise ManifestTooLargeError(f"expected a manifest of at most {MAX_MANIFEST_BYTES} bytes, got {declared[:20]}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_MANIFEST_BYTES:
            raise ManifestTooLargeError(f"expected a manifest of at most {MAX_MANIFEST_BYTES} bytes, got more")
    return bytes(body)


def manifest_public(base_url: str, m: Manifest, release: Release) -> ManifestPublic:
    return ManifestPublic(
        channel=m.channel, manifest_version=m.manifest_version, version=release.version, key_id=m.key_id,
        issued_at=m.issued_at, expires=m.expires, url=base_url + manifest_path(m.channel),
    )


def list_channel_states(session: Session, base_url: str) -> list[ChannelPublic]:
    out = []
    for name in sorted(session.exec(select(Release.channel).distinct()).all()):
        m = publishing.current_manifest(session, name)
        release = session.get(Release, m.release_id) if m else None
        out.append(ChannelPublic(name=name, current=manifest_public(base_url, m, release) if m and release else None))
    return out


@router.get("", summary="Channels and their current manifests")
def list_channels(session: SessionDep, ctx: ContextDep, _: AdminDep) -> list[ChannelPublic]:
    return list_channel_states(session, ctx.settings.base_url)


@router.post("/{channel}/manifests", status_code=201, summary="Store a re-signed manifest for the current release")
async def refresh_manifest(
    channel: str,
    ctx: ContextDep,
    _: AdminDep,
    request: Request,
    x_otaml_signature: Annotated[str | None, Header()] = None,
) -> ManifestPublic:
    if not is_valid_channel(channel):
        raise NotFoundError(f"no channel {channel[:40]!r}")
    if x_otaml_signature is None:
        raise ManifestError("expected header X-Otaml-Signature, got none")
    body = await read_capped_manifest(request)

    def _refresh() -> ManifestPublic:
        with Session(ctx.engine) as session:
            release, manifest = publishing.refresh(
                session=session, settings=ctx.settings, store=ctx.store, mirror=ctx.mirror, channel=channel,
                manifest_bytes=body, signature=x_otaml_signature,
            )
            return manifest_public(ctx.settings.base_url, manifest, release)

    try:
        return await run_in_threadpool(_refresh)
    finally:
        ctx.policy.invalidate()


