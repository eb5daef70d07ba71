"""Publishing and listing releases (admin).

Publish is one streamed request so that a dropped or cancelled upload leaves nothing behind: the body
is the raw binary; the signed manifest, its signature and the signer's public key travel in headers.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from sqlmodel import Session, select

from otaml.api.deps import AdminDep, AuditDep, ContextDep, SessionDep
from otaml.core.errors import ManifestError
from otaml.core.types import Channel, Filename
from otaml.models import Release, ReleasePublic, ReleasesPublic
from otaml.releases import publishing
from otaml.releases.urls import binary_url

router = APIRouter(prefix="/api/releases", tags=["releases"])

H_MANIFEST = "X-Otaml-Manifest"  # base64 of the exact firmware.json bytes
H_PUBLIC_KEY = "X-Otaml-Public-Key"  # base64 of the signer's public key PEM (registers the first key)


def _b64(name: str, value: str | None) -> bytes:
    if value is None:
        raise ManifestError(f"expected header {name}, got none")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ManifestError(f"expected base64 in header {name}") from None


def release_public(session: Session, base_url: str, release: Release) -> ReleasePublic:
    current = publishing.current_manifest(session, release.channel)
    is_current = current is not None and current.release_id == release.id
    return ReleasePublic(
        **release.model_dump(),
        file_url=binary_url(base_url, release.sha256, release.filename),
        manifest_version=current.manifest_version if is_current else None,
        expires=current.expires if is_current else None,
        current=is_current,
    )


@router.post("", status_code=201, summary="Publish a signed release (body: the raw app image)")
async def publish_release(
    request: Request,
    ctx: ContextDep,
    audit: AuditDep,
    channel: Channel,
    filename: Filename,
    legacy_clients: bool = True,
    staged: bool = False,
    x_otaml_manifest: Annotated[str | None, Header()] = None,
    x_otaml_signature: Annotated[str | None, Header()] = None,
    x_otaml_public_key: Annotated[str | None, Header()] = None,
) -> ReleasePublic:
    audit.about("release.publish", f"{filename} on {channel}", "staged" if staged else "")
    manifest_bytes = _b64(H_MANIFEST, x_otaml_manifest)
    if x_otaml_signature is None:
        raise ManifestError("expected header X-Otaml-Signature, got none")
    public_pem = _b64(H_PUBLIC_KEY, x_otaml_public_key).decode("ascii", "replace") if x_otaml_public_key else None
    staging = ctx.store.open_staging(max_bytes=ctx.settings.max_upload_bytes)
    try:
        async for chunk in request.stream():
            staging.write(chunk)
    except BaseException:  # includes the client going away mid-upload
        staging.abort()
        raise
    blob = staging.finish()

    def _publish() -> ReleasePublic:
        with Session(ctx.engine) as session:
            release, _manifest = publishing.publish(
                session=session, settings=ctx.settings, store=ctx.store, mirror=ctx.mirror,
                channel=channel, filename=filename, manifest_bytes=manifest_bytes,
                signature=x_otaml_signature, public_pem=public_pem, staged=blob,
                legacy_clients=legacy_clients, hold_back=staged,
            )
            return release_public(session, ctx.settings.base_url, release)

    try:
        published = await run_in_threadpool(_publish)
    finally:
        ctx.policy.invalidate()
    audit.about("release.publish", f"release {published.version} on {channel}",
                f"{filename}, {published.size:,} bytes, sha256 {published.sha256[:16]}{', staged' if staged else ''}")
    return published


@router.get("", summary="List releases, newest first")
def list_releases(session: SessionDep, ctx: ContextDep, _: AdminDep, channel: Channel | None = None) -> ReleasesPublic:
    query = select(Release).order_by(Release.id.desc())  # type: ignore[union-attr]
    if channel is not None:
        query = query.where(Release.channel == channel)
    releases = session.exec(query).all()
    data = [release_public(session, ctx.settings.base_url, r) for r in releases]
    return ReleasesPublic(data=data, count=len(data))


