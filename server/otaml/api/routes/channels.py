"""Channels and their current manifests (admin): listing, and storing a re-signed manifest."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session, select

from otaml.api.deps import AdminDep, AuditDep, ContextDep, SessionDep
from otaml.core.errors import ManifestError, NotFoundError
from otaml.manifest.format import is_valid_channel
from otaml.models import ChannelPublic, Manifest, ManifestPublic, Release
from otaml.releases import publishing
from otaml.releases.urls import manifest_path

router = APIRouter(prefix="/api/channels", tags=["channels"])


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
    audit: AuditDep,
    request: Request,
    x_otaml_signature: Annotated[str | None, Header()] = None,
) -> ManifestPublic:
    audit.about("manifest.refresh", f"channel {channel}"[:128])
    if not is_valid_channel(channel):
        raise NotFoundError(f"no channel {channel[:40]!r}")
    if x_otaml_signature is None:
        raise ManifestError("expected header X-Otaml-Signature, got none")
    body = await request.body()  # api/limits.py caps it at MAX_MANIFEST_BYTES (413) while it streams in

    def _refresh() -> ManifestPublic:
        with Session(ctx.engine) as session:
            release, manifest = publishing.refresh(
                session=session, settings=ctx.settings, store=ctx.store, mirror=ctx.mirror, channel=channel,
                manifest_bytes=body, signature=x_otaml_signature,
            )
            return manifest_public(ctx.settings.base_url, manifest, release)

    try:
        refreshed = await run_in_threadpool(_refresh)
    finally:
        ctx.policy.invalidate()
    audit.detail = f"{refreshed.version} as manifest_version {refreshed.manifest_version}, expires {refreshed.expires:%Y-%m-%d %H:%M}Z"
    return refreshed


