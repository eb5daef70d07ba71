"""Accepting a signed release on the server. The CLI signs; the server trusts nothing it is sent:
it verifies the signature with a registered key and re-validates the image before anything is stored.

All checks run before the first write. The database transaction, the blob rename and the static mirror
update are ordered so that a failure at any point leaves no row and no file behind (see ``publish``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, func, select

from otaml.core.config import Settings
from otaml.core.types import FILENAME
from otaml.core.errors import (
    ChannelChipError,
    ConflictError,
    DowngradeError,
    ImageError,
    ManifestError,
    NotFoundError,
    ReleaseExistsError,
    UnknownKeyError,
)
from otaml.fleet.revision import bump_policy
from otaml.image.app_image import load_app_image
from otaml.image.embedded_model import check_embedded_models
from otaml.manifest import signing
from otaml.manifest.rules import ManifestFields as ManifestDoc
from otaml.manifest.format import read_key_id_untrusted, read_manifest
from otaml.manifest.versions import Version, check_successor
from otaml.models import Manifest, Release, SigningKey
from otaml.releases import keys
from otaml.releases.urls import binary_url
from otaml.storage.blobs import BlobStore, StagedBlob
from otaml.storage.static_mirror import StaticMirror

log = logging.getLogger(__name__)


def _ts(epoch: int) -> datetime:
    try:
        return datetime.fromtimestamp(epoch, UTC)
    except (OverflowError, OSError, ValueError):  # beyond what a timestamp column holds
        raise ManifestError(f"expected a time before the year 10000, got {epoch} seconds since 1970") from None


def check_channel_chip(session: Session, channel: str, chip: str) -> None:
    """A channel has one chip, taken from its first release: a build for another chip would replace
    the baseline of devices that cannot run it."""
    first = session.exec(select(Release).where(Release.channel == channel).order_by(Release.id).limit(1)).first()  # type: ignore[arg-type]
    if first is not None and first.chip != chip:
        raise ChannelChipError(
            f"channel {channel!r} serves {first.chip} (its first release {first.version} is for {first.chip}), "
            f"got a build for {chip}; publish {chip} builds to a channel of their own, e.g. --channel {channel}-{chip}"
        )


def current_manifest(session: Session, channel: str) -> Manifest | None:
    """The channel's baseline: the newest manifest of its newest release that is not staged. Ordered by
    release first, because a refresh of an older baseline signed during a rollout carries a higher
    manifest_version than the release that rollout then promotes."""
    return session.exec(
        select(Manifest)
        .join(Release, Release.id == Manifest.release_id)  # type: ignore[arg-type]
        .where(Manifest.channel == channel, Release.staged == False)  # noqa: E712
        .order_by(Release.id.desc(), Manifest.manifest_version.desc())  # type: ignore[union-attr]
        .limit(1)
    ).first()


def current_release(session: Session, channel: str) -> Release | None:
    m = current_manifest(session, channel)
    return session.get(Release, m.release_id) if m else None


def newest_manifest(session: Session, release: Release) -> Manifest | None:
    return session.exec(
        select(Manifest).where(Manifest.release_id == release.id).order_by(Manifest.manifest_version.desc()).limit(1)  # type: ignore[union-attr]
    ).first()


def latest_release(session: Session, channel: str) -> Release | None:
    """The newest release on the channel, staged or not: the one a new version must succeed."""
    return session.exec(
        select(Release).where(Release.channel == channel).order_by(Release.id.desc()).limit(1)  # type: ignore[union-attr]
    ).first()


def next_manifest_version(session: Session) -> int:
    # Global, not per channel: a device that moves between channels must still see a rising number.
    return (session.exec(select(func.max(Manifest.manifest_version))).one() or 0) + 1


def _trusted_key(session: Session, settings: Settings, public_pem: str | None, key_id: str):  # type: ignore[no-untyped-def]
    """The trusted key named ``key_id``. Keys are trusted with `release key trust` (releases/keys.py); on
    a server that trusts none yet, the first publish (an admin-authenticated request) trusts its key, as
    `release key trust` would. A retired key is refused, and so is a repository test key outside
    development (unless OTAML_ALLOW_TEST_KEYS)."""
    record = session.get(SigningKey, key_id)
    if record is not None and record.retired_at is None:
        keys.refuse_test_key(settings, key_id)
        return signing.load_public_key(record.public_pem)
    if record is not None:
        raise UnknownKeyError(
            f"manifest is signed by key {key_id}, which was retired on {record.retired_at:%Y-%m-%d}; sign with a "
            f"trusted key (`release key list`)"
        )
    known = session.exec(select(SigningKey.key_id).where(SigningKey.retired_at == None)).all()  # noqa: E711
    if key_id in known:  # another process's first publish trusted this very key since the read above
        keys.refuse_test_key(settings, key_id)
        return signing.load_public_key(session.exec(select(SigningKey.public_pem).where(SigningKey.key_id == key_id)).one())
    if known or public_pem is None or session.exec(select(SigningKey.key_id)).first() is not None:
        raise UnknownKeyError(
            f"manifest is signed by key {key_id}, which this server does not trust; expected one of: "
            f"{', '.join(known) or 'none trusted'} (`release key trust {key_id}.pub.pem` adds one)"
        )
    key = signing.load_public_key(public_pem)
    if signing.key_id(key) != key_id:
        raise UnknownKeyError(f"public key sent is {signing.key_id(key)}, but the manifest names {key_id}")
    keys.refuse_test_key(settings, key_id)
    session.add(SigningKey(key_id=key_id, public_pem=signing.public_pem(key)))
    return key


def _check_manifest_against_server(session: Session, settings: Settings, doc: ManifestDoc, channel: str) -> None:
    if doc.channel != channel:
        raise ManifestError(f"manifest is for channel {doc.channel!r}, but it was sent to channel {channel!r}")
    if doc.project != settings.project:
        raise ManifestError(f"expected project {settings.project!r} in the manifest, got {doc.project!r}")
    nxt = next_manifest_version(session)
    if doc.manifest_version < nxt:
        raise ConflictError(
            f"manifest_version {doc.manifest_version} is taken; expected {nxt} or higher (another publish "
            f"happened since this one was signed: sign again)"
        )


def publish(
    *,
    session: Session,
    settings: Settings,
    store: BlobStore,
    mirror: StaticMirror,
    channel: str,
    filename: str,
    manifest_bytes: bytes,
    signature: str,
    public_pem: str | None,
    staged: StagedBlob,
    legacy_clients: bool = True,
    hold_back: bool = False,
) -> tuple[Release, Manifest]:
    """Verify and store one release. The staged blob is consumed (moved into place or deleted).
    With ``hold_back`` the release is staged: stored and signed, but offered only by a rollout.

    Raises:
        UnknownKeyError: the manifest's key is not registered.
        SignatureError: the signature does not verify over the manifest bytes.
        ManifestError: the manifest is malformed or disagrees with the binary, channel or server.
        ImageError: the binary is not a genuine app image for the manifest's chip, its app
            description disagrees (version, project), or a model it embeds does not match its card.
        ReleaseExistsError: this version is already published (on this channel, or elsewhere with
            other bytes).
        DowngradeError / LegacyOrderError: the version does not sort above the channel's current one,
            or its secure_version is lower.
        ConflictError: the manifest_version was taken by a concurrent publish.
    """
    try:
        if not FILENAME.ok(filename):
            raise ManifestError(f"expected a plain file name (letters, digits, . _ -), got {filename!r}")
        probe = read_key_id_untrusted(manifest_bytes)
        key = _trusted_key(session, settings, public_pem, probe)
        doc = read_manifest(manifest_bytes, signature, key)
        _check_manifest_against_server(session, settings, doc, channel)
        check_channel_chip(session, channel, doc.chip)

        if staged.sha256 != doc.sha256 or staged.size != doc.size:
            raise ManifestError(
                f"manifest declares sha256 {doc.sha256[:12]}… and {doc.size} bytes, the upload is "
                f"{staged.sha256[:12]}… and {staged.size} bytes"
            )
        expected_url = binary_url(settings.base_url, doc.sha256, filename)
        if doc.file != expected_url:
            raise ManifestError(f"expected `file` to be {expected_url}, got {doc.file}")
        image = load_app_image(staged.path.read_bytes(), doc.chip)
        if image.desc.version != doc.semver:
            raise ImageError(f"image says version {image.desc.version!r}, but it is published as {doc.semver!r}")
        if image.desc.project_name != settings.project:
            raise ImageError(f"expected an image of project {settings.project!r}, got {image.desc.project_name!r}")
        if image.desc.secure_version != doc.secure_version:
            raise ManifestError(
                f"manifest says secure_version {doc.secure_version}, the image says {image.desc.secure_version}"
            )
        check_embedded_models(image)

        version = doc.parsed_version
        same = session.exec(select(Release).where(Release.version == version.text)).all()
        for other in same:
            if other.sha256 != doc.sha256:
                raise ReleaseExistsError(
                    f"version {version} is already published with other bytes (sha256 {other.sha256[:12]}…, "
                    f"got {doc.sha256[:12]}…): published versions are immutable; bump the version"
                )
            if other.channel == channel:
                raise ReleaseExistsError(
                    f"version {version} is already published on channel {channel!r}; "
                    f"use `release refresh` to re-sign its manifest"
                )
        current = latest_release(session, channel)
        if current is not None:
            check_successor(version, Version.parse(current.version), legacy_clients=legacy_clients)
            if doc.secure_version < current.secure_version:
                raise DowngradeError(
                    f"secure_version {doc.secure_version} is lower than the current release's "
                    f"{current.secure_version}: devices with anti-rollback would refuse it"
                )

        release = Release(
            version=version.text,
            channel=channel,
            sha256=doc.sha256,
            size=doc.size,
            filename=filename,
            project=image.desc.project_name,
            chip=doc.chip,
            secure_version=doc.secure_version,
            idf_ver=image.desc.idf_ver,
            staged=hold_back,
        )
        session.add(release)
        session.flush()
        manifest = _manifest_row(doc, release, manifest_bytes, signature)
        session.add(manifest)
        bump_policy(session)  # every process reloads its fleet policy: a new baseline or staged release
        session.flush()  # surfaces a concurrent manifest_version before the blob moves
    except IntegrityError:
        # Another process published (or registered the first key) between our reads and writes.
        session.rollback()
        store.discard(staged)
        raise ConflictError(
            "a concurrent publish changed the server's state while this one was checked; sign again"
        ) from None
    except BaseException:
        session.rollback()
        store.discard(staged)
        raise

    new_blob = store.commit(staged)
    try:
        session.commit()
    except BaseException as e:
        session.rollback()
        if new_blob:
            store.remove(doc.sha256)
        if isinstance(e, IntegrityError):
            raise ConflictError(f"manifest_version {doc.manifest_version} was taken by a concurrent publish; sign again") from None
        raise
    session.refresh(release)
    session.refresh(manifest)
    if not release.staged:
        _mirror(mirror, store, release, manifest)
    log.info("published %s on %s as manifest_version %d", release.version, channel, manifest.manifest_version)
    return release, manifest


def refresh(
    *, session: Session, settings: Settings, store: BlobStore, mirror: StaticMirror, channel: str,
    manifest_bytes: bytes, signature: str,
) -> tuple[Release, Manifest]:
    """Store a re-signed manifest (new manifest_version and expiry) for the channel's current release.

    Raises what ``publish`` raises for the manifest, and NotFoundError when the channel has no release,
    ManifestError when the manifest describes anything but the current release.
    """
    try:
        key = _trusted_key(session, settings, None, read_key_id_untrusted(manifest_bytes))
        doc = read_manifest(manifest_bytes, signature, key)
        _check_manifest_against_server(session, settings, doc, channel)
        release = current_release(session, channel)
        if release is None:
            raise NotFoundError(f"no release published on channel {channel!r}; nothing to refresh")
        if doc.semver != release.version:
            # A staged release under rollout needs fresh manifests too, or it expires mid-rollout.
            other = session.exec(
                select(Release).where(Release.channel == channel, Release.version == doc.semver, Release.staged == True)  # noqa: E712
            ).first()
            release = other or release
        expected_url = binary_url(settings.base_url, release.sha256, release.filename)
        mismatches = [
            name for name, want, got in [
                ("semver", release.version, doc.semver), ("sha256", release.sha256, doc.sha256),
                ("size", release.size, doc.size), ("chip", release.chip, doc.chip),
                ("secure_version", release.secure_version, doc.secure_version), ("file", expected_url, doc.file),
            ] if want != got
        ]
        if mismatches:
            raise ManifestError(
                f"a refreshed manifest must describe the current release {release.version} (or a staged one) exactly; "
                f"these fields differ: {', '.join(mismatches)}"
            )
        manifest = _manifest_row(doc, release, manifest_bytes, signature)
        session.add(manifest)
        bump_policy(session)
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ConflictError("manifest_version was taken by a concurrent publish; sign again") from None
    except BaseException:
        session.rollback()
        raise
    session.refresh(manifest)
    if not release.staged:
        _mirror(mirror, store, release, manifest)
    return release, manifest


def _manifest_row(doc: ManifestDoc, release: Release, body: bytes, signature: str) -> Manifest:
    assert release.id is not None
    return Manifest(
        manifest_version=doc.manifest_version,
        channel=doc.channel,
        release_id=release.id,
        body=body,
        signature=signature,
        key_id=doc.key_id,
        issued_at=_ts(doc.issued_at),
        expires=_ts(doc.expires),
    )


def _mirror(mirror: StaticMirror, store: BlobStore, release: Release, manifest: Manifest) -> None:
    # The binary link goes first so a manifest in the mirror never points at a missing file.
    mirror.link_binary(release.sha256, release.filename, store.path_for(release.sha256))
    mirror.write_manifest(manifest.channel, manifest.body, manifest.signature)


def rebuild_mirror(session: Session, store: BlobStore, mirror: StaticMirror) -> int:
    """Rewrite the static mirror from the database (at start-up). Returns the number of channels."""
    channels = session.exec(select(Manifest.channel).distinct()).all()
    for channel in channels:
        m = current_manifest(session, channel)
        if m is None:
            continue
        release = session.get(Release, m.release_id)
        if release is not None and store.exists(release.sha256):
            _mirror(mirror, store, release, m)
    mirror.write_keysets(keys.chain(session))
    return len(channels)
