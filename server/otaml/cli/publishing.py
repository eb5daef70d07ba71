"""Publishing from the operator's machine: validate the image, sign its manifest, upload both.

The private key never leaves this machine; the server gets the manifest bytes, the detached signature
and the public key (which it registers on first use and pins afterwards)."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from otaml.core.errors import ImageError, ManifestError
from otaml.image.app_image import load_app_image
from otaml.image.embedded_model import EmbeddedModel, check_embedded_models
from otaml.manifest import signing
from otaml.core.types import CHANNEL, shown
from otaml.manifest.format import build_manifest_bytes
from otaml.manifest.versions import Version
from otaml.cli.client import ReleaseClient
from otaml.releases.urls import binary_url, manifest_path

DEFAULT_EXPIRY = 30 * 86400
_DURATION_RE = re.compile(r"([0-9]{1,12})([smhd]?)")
MAX_EXPIRY = 10 * 365 * 86400  # a manifest valid for longer is a freeze attack waiting to happen


def parse_duration(text: str) -> int:
    """'30d', '12h', '90m', '3600s' or '3600' to seconds, at most 10 years."""
    m = _DURATION_RE.fullmatch(text.strip())
    seconds = int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)] if m else 0
    if not 0 < seconds <= MAX_EXPIRY:
        raise ManifestError(f"expected a duration from 1s to 3650d, like 30d, 12h, 90m or 3600s, got {shown(text)}")
    return seconds


@dataclass
class PublishResult:
    release: dict[str, Any]
    manifest_url: str
    manifest_version: int
    size: int
    seconds: float
    models: list[EmbeddedModel]  # the model cards the image embeds, each matched by its model


def publish(
    client: ReleaseClient,
    key: signing.SigningKey,
    *,
    version: str,
    path: Path,
    channel: str,
    chip: str | None = None,
    expires_in: int = DEFAULT_EXPIRY,
    legacy_clients: bool = True,
    staged: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> PublishResult:
    """Validate ``path`` as release ``version``, sign its manifest and upload it.

    Raises:
        VersionError: ``version`` is malformed.
        ImageError: the file is not a genuine app image for the chip, its app version or project
            differs from what is published, or a model it embeds does not match its card.
        ManifestError: bad channel, file name or expiry.
        ServerError (or the server's own refusal: DowngradeError, ReleaseExistsError, ...).
    """
    v = Version.parse(version)
    if not CHANNEL.ok(channel):
        raise ManifestError(f"expected a channel of lowercase letters, digits, . _ - (max 32), got {channel!r}")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"no such file: {path}") from None
    except OSError as e:
        raise ImageError(f"cannot read {path}: {e.strerror}") from None

    info = client.info()
    chip = chip or info["chip"]
    image = load_app_image(data, chip)
    if image.desc.version != v.text:
        raise ImageError(
            f"{path.name} says app version {image.desc.version!r} in its esp_app_desc_t, but it is being "
            f"published as {v.text!r}; rebuild with the right PROJECT_VER or publish it as {image.desc.version}"
        )
    if image.desc.project_name != info["project"]:
        raise ImageError(
            f"{path.name} is project {image.desc.project_name!r}; this server publishes project {info['project']!r}"
        )
    models = check_embedded_models(image)  # the server checks again; refusing here uploads nothing

    sha = hashlib.sha256(data).hexdigest()
    manifest = build_manifest_bytes(
        semver=v.text,
        file_url=binary_url(info["base_url"], sha, path.name),
        sha256=sha,
        size=len(data),
        project=info["project"],
        chip=chip,
        secure_version=image.desc.secure_version,
        channel=channel,
        manifest_version=info["next_manifest_version"],
        key_id=key.key_id,
        expires_in=expires_in,
    )
    signature = key.sign(manifest)
    if on_start:
        on_start(len(data))
    started = time.monotonic()
    release = client.publish(
        path=path,
        channel=channel,
        manifest=manifest,
        signature=signature,
        public_pem=signing.public_pem(key.public_key),
        legacy_clients=legacy_clients,
        staged=staged,
        on_progress=on_progress,
    )
    return PublishResult(
        release=release,
        manifest_url=info["base_url"] + manifest_path(channel),
        manifest_version=info["next_manifest_version"],
        size=len(data),
        seconds=time.monotonic() - started,
        models=models,
    )


def refresh(client: ReleaseClient, key: signing.SigningKey, *, channel: str, expires_in: int = DEFAULT_EXPIRY,
            version: str | None = None) -> dict[str, Any]:
    """Re-sign the channel's current release (or its staged ``version``, under rollout) with the next
    manifest_version and a new expiry."""
    info = client.info()
    current = next((c["current"] for c in info["channels"] if c["name"] == channel and c["current"]), None)
    if current is None:
        raise ManifestError(f"no release published on channel {channel!r}; nothing to refresh")
    releases = client.releases(channel)["data"]
    if version is None:
        release = next(r for r in releases if r["current"])
    else:
        release = next((r for r in releases if r["version"] == version and (r["current"] or r["staged"])), None)
        if release is None:
            raise ManifestError(f"expected the current or a staged release of {channel!r}, got {version!r}")
    manifest = build_manifest_bytes(
        semver=release["version"],
        file_url=release["file_url"],
        sha256=release["sha256"],
        size=release["size"],
        project=release["project"],
        chip=release["chip"],
        secure_version=release["secure_version"],
        channel=channel,
        manifest_version=info["next_manifest_version"],
        key_id=key.key_id,
        expires_in=expires_in,
    )
    return client.refresh(channel=channel, manifest=manifest, signature=key.sign(manifest))
