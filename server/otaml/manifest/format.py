"""firmware.json: building the exact bytes that get signed, and reading them back.

Order of trust when reading (manifests/README.md, "Device checks"): cap the size, verify the detached
signature over the raw bytes, and only then parse, by the strict JSON and field rules the device applies
(``strictjson``, ``rules``). ``read_manifest`` enforces that order.
"""

from __future__ import annotations

import json
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from otaml.core.errors import ManifestError
from otaml.manifest import rules, signing, strictjson
from otaml.manifest.versions import Version

MAX_MANIFEST_BYTES = 4096  # the firmware refuses larger bodies before verifying (bounded RAM)
DEFAULT_CHANNEL = "stable"
SUPPORTED_CHIPS = ("esp32", "esp32s2", "esp32s3", "esp32c2", "esp32c3", "esp32c5", "esp32c6", "esp32h2", "esp32p4")


class ManifestTooLargeError(ManifestError):
    """More bytes than any device reads: refused before anything else looks at them."""

    status = 413


def check_size(raw: bytes) -> None:
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ManifestTooLargeError(f"expected a manifest of at most {MAX_MANIFEST_BYTES} bytes, got {len(raw)}")


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
    raw = (json.dumps(body, indent=2) + "\n").encode()
    parse_manifest(raw)  # never sign what a device (or this server) would refuse
    return raw


def parse_manifest(raw: bytes) -> rules.ManifestFields:
    """Parse and validate manifest bytes (no signature check: see ``read_manifest``).

    Raises:
        ManifestTooLargeError: over MAX_MANIFEST_BYTES.
        ManifestError: a strict JSON rule (J1-J6) or a field rule is broken, or the chip is unknown
            to the server; the message names the rule or the field.
    """
    check_size(raw)
    fields = rules.check_manifest(strictjson.loads(raw))
    # The server's own rule on top of the device's (which only compares the chip with its own).
    if fields.chip not in SUPPORTED_CHIPS:
        raise ManifestError(f"invalid manifest field `chip`: expected one of {', '.join(SUPPORTED_CHIPS)}, got {fields.chip!r}")
    return fields


def read_key_id_untrusted(raw: bytes) -> str:
    """The key id a manifest claims, read (strictly, within the size cap) only to pick the key that
    then verifies it."""
    check_size(raw)
    kid = strictjson.loads(raw).get("key_id")
    if type(kid) is not str or not rules.KEY_ID.fullmatch(kid):
        raise ManifestError(f"expected key_id of 16 hex digits, got {kid!r}"[:160])
    return kid


def read_manifest(raw: bytes, signature_b64: str, public_key: ec.EllipticCurvePublicKey) -> rules.ManifestFields:
    """Cap, verify, then parse: the device's order, for the server and tests."""
    check_size(raw)
    signing.verify(public_key, raw, signature_b64)
    manifest = parse_manifest(raw)
    if manifest.key_id != signing.key_id(public_key):
        raise ManifestError(
            f"manifest names key {manifest.key_id} but was verified with key {signing.key_id(public_key)}"
        )
    return manifest


def is_valid_channel(name: str) -> bool:
    return isinstance(name, str) and rules.CHANNEL.fullmatch(name) is not None
