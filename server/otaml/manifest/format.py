"""firmware.json: building the exact bytes that get signed, and reading them back.

Order of trust when reading (manifests/README.md, "Device checks"): cap the size, verify the detached
signature over the raw bytes, and only then parse. ``read_manifest`` enforces that order.
"""

from __future__ import annotations

import json
import re
import time
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from otaml.core.errors import ManifestError, VersionError
from otaml.manifest import signing
from otaml.manifest.versions import Version

MAX_MANIFEST_BYTES = 4096  # the firmware refuses larger bodies before verifying (bounded RAM)
CHANNEL_RE = r"^[a-z0-9][a-z0-9._-]{0,31}$"
DEFAULT_CHANNEL = "stable"
SUPPORTED_CHIPS = ("esp32", "esp32s2", "esp32s3", "esp32c2", "esp32c3", "esp32c5", "esp32c6", "esp32h2", "esp32p4")

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Manifest(BaseModel):
    """The fields of firmware.json. Unknown fields are kept: devices must ignore what they don't know."""

    model_config = ConfigDict(extra="allow", frozen=True)

    version: float = Field(description="legacy number MAJOR.MINOR, for clients that compare doubles")
    file: AnyHttpUrl
    semver: str
    sha256: Sha256Hex
    size: int = Field(gt=0)
    project: str = Field(min_length=1, max_length=31)
    chip: str
    secure_version: int = Field(ge=0, le=2**32 - 1)
    channel: str = Field(pattern=CHANNEL_RE)
    manifest_version: int = Field(ge=1, le=2**53)
    issued_at: int = Field(ge=0)
    expires: int = Field(ge=0)
    key_id: str = Field(pattern=r"^[0-9a-f]{16}$")

    @field_validator("semver")
    @classmethod
    def _semver_parses(cls, v: str) -> str:
        try:
            Version.parse(v)
        except VersionError as e:  # pydantic only turns ValueError into a field error
            raise ValueError(str(e)) from None
        return v

    @field_validator("chip")
    @classmethod
    def _known_chip(cls, v: str) -> str:
        if v not in SUPPORTED_CHIPS:
            raise ValueError(f"expected one of {', '.join(SUPPORTED_CHIPS)}, got {v!r}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.version != Version.parse(self.semver).legacy_number:
            raise ValueError(f"version {self.version} is not the legacy number of semver {self.semver}")
        if self.expires <= self.issued_at:
            raise ValueError("expires must be after issued_at")
        return self

    @property
    def parsed_version(self) -> Version:
        return Version.parse(self.semver)


def build_manifest_bytes(
    *,
    semver: str,
    file_url: str,
    sha256: str,
    size: int,
    project: str,
    chip: str,
    secure_version: int,
    channel: str,
    manifest_version: int,
    key_id: str,
    expires_in: int,
    now: int | None = None,
) -> bytes:
    """The exact bytes to sign and serve. Field order is fixed so humans can diff manifests."""
    now = int(time.time()) if now is None else now
    v = Version.parse(semver)
    body: dict[str, Any] = {
        "version": v.legacy_number,
        "file": file_url,
        "semver": v.text,
        "sha256": sha256,
        "size": size,
        "project": project,
        "chip": chip,
        "secure_version": secure_version,
        "channel": channel,
        "manifest_version": manifest_version,
        "issued_at": now,
        "expires": now + expires_in,
        "key_id": key_id,
    }
    parse_manifest(raw := (json.dumps(body, indent=2) + "\n").encode())  # never sign what we would refuse
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"expected a manifest of at most {MAX_MANIFEST_BYTES} bytes, built {len(raw)}")
    return raw


def parse_manifest(raw: bytes) -> Manifest:
    """Parse and validate manifest bytes (no signature check: see ``read_manifest``)."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"expected a manifest of at most {MAX_MANIFEST_BYTES} bytes, got {len(raw)}")
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"expected a JSON object, got unparsable bytes: {e}") from None
    if not isinstance(obj, dict):
        raise ManifestError(f"expected a JSON object, got {type(obj).__name__}")
    # The legacy client requires `version` to be a JSON number; pydantic would coerce "1.2".
    if not isinstance(obj.get("version"), (int, float)) or isinstance(obj.get("version"), bool):
        raise ManifestError(f"expected `version` to be a JSON number, got {obj.get('version')!r}")
    try:
        return Manifest.model_validate(obj, strict=False)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "manifest"
        raise ManifestError(f"invalid manifest field `{where}`: {first['msg']}") from None


def read_manifest(raw: bytes, signature_b64: str, public_key: ec.EllipticCurvePublicKey) -> Manifest:
    """Cap, verify, then parse: the device's order, for the server and tests."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"expected a manifest of at most {MAX_MANIFEST_BYTES} bytes, got {len(raw)}")
    signing.verify(public_key, raw, signature_b64)
    manifest = parse_manifest(raw)
    if manifest.key_id != signing.key_id(public_key):
        raise ManifestError(
            f"manifest names key {manifest.key_id} but was verified with key {signing.key_id(public_key)}"
        )
    return manifest


def is_valid_channel(name: str) -> bool:
    return re.match(CHANNEL_RE, name) is not None
