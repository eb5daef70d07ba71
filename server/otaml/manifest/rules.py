"""The field rules of signed documents: manifests/README.md, "Manifest fields" and "Config document
fields", exactly as the device checks them (firmware/core/src/otaml_manifest.c, otaml_config.c).

These decide the device's verdict (``otaml.manifest.device``). The server adds rules of its own on top
when it accepts a manifest (``format.Manifest``: a chip it knows). Every pattern matches the whole
value (``fullmatch``), and strings are measured in bytes of UTF-8, as the C core measures them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from otaml.core.errors import ManifestError, VersionError
from otaml.manifest.strictjson import MAX_SAFE_INTEGER
from otaml.manifest.versions import Version

MAX_U32 = 2**32 - 1
MAX_FILE_URL_BYTES = 255  # the device keeps `file` in char[256]
FILE_URL = re.compile(
    r"(?:http|https)://(?:[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
    r"/(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*"
)
SHA256 = re.compile(r"[0-9a-f]{64}")
PROJECT = re.compile(r"[A-Za-z0-9._+-]{1,31}")
CHIP = re.compile(r"[a-z0-9]{1,15}")
CHANNEL = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
KEY_ID = re.compile(r"[0-9a-f]{16}")
DEVICE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# Desired-config strings (otaml_config.c: otaml_config_mqtt_url_ok, otaml_config_mqtt_prefix_ok).
MAX_MQTT_URL_BYTES = 100
MAX_MQTT_PREFIX_BYTES = 48
MQTT_URL = re.compile(r"mqtts?://(?:[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[1-9][0-9]{0,4}))?")
MQTT_PREFIX = re.compile(r"[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")


def mqtt_url_ok(value: str) -> bool:
    """A broker URL (mqtt|mqtts)://HOST(:PORT)? of at most 100 bytes, PORT 1..65535: no user info (the
    device's credentials live in its NVS), no path."""
    m = MQTT_URL.fullmatch(value)
    return m is not None and len(value) <= MAX_MQTT_URL_BYTES and (m["port"] is None or int(m["port"]) <= 65535)


def mqtt_prefix_ok(value: str) -> bool:
    """1 to 48 bytes of topic levels [A-Za-z0-9._-]+ joined by single slashes: no wildcard, no $ topic."""
    return MQTT_PREFIX.fullmatch(value) is not None and len(value) <= MAX_MQTT_PREFIX_BYTES


@dataclass(frozen=True)
class ManifestFields:
    """The required fields of a manifest that passed every rule (unknown fields are not kept: devices
    ignore them, and so does the server)."""

    version: int | Decimal
    file: str
    semver: str
    sha256: str
    size: int
    project: str
    chip: str
    secure_version: int
    channel: str
    manifest_version: int
    issued_at: int
    expires: int
    key_id: str

    @property
    def parsed_version(self) -> Version:
        return Version.parse(self.semver)


def _bad(name: str, expected: str, value: object) -> ManifestError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ManifestError(f"manifest field `{name}`: expected {expected}, got {shown}")


def _string(obj: dict[str, Any], name: str, pattern: re.Pattern[str], expected: str, max_bytes: int = 255) -> str:
    value = obj.get(name)
    if type(value) is not str:
        raise _bad(name, f"a string, {expected}", value)
    if len(value.encode("utf-8")) > max_bytes or not pattern.fullmatch(value):
        raise _bad(name, expected, value)
    return value


def _integer(obj: dict[str, Any], name: str, low: int, high: int) -> int:
    value = obj.get(name)
    if type(value) is not int:  # not bool, not a literal with a fraction (1.0)
        raise _bad(name, f"an integer literal from {low} to {high}", value)
    if not low <= value <= high:
        raise _bad(name, f"an integer from {low} to {high}", value)
    return value


def legacy_decimal(semver: str) -> Decimal:
    """MAJOR.MINOR of ``semver`` as the decimal ``version`` must equal (MINOR 0 when absent)."""
    parts = semver.split(".")
    return Decimal(f"{parts[0]}.{parts[1] if len(parts) > 1 else '0'}")


def check_manifest(obj: dict[str, Any]) -> ManifestFields:
    """Apply the manifest field rules to a strictly parsed document.

    Raises:
        ManifestError: naming the first field that breaks its rule, what it expected and what came.
    """
    if "version" not in obj:
        raise _bad("version", "a JSON number", None)
    version = obj["version"]
    if type(version) not in (int, Decimal):
        raise _bad("version", "a JSON number (legacy clients compare it as one)", version)
    file = _string(obj, "file", FILE_URL, "an http(s) URL by the rule of manifests/README.md", MAX_FILE_URL_BYTES)
    semver = obj.get("semver")
    try:
        Version.parse(semver)  # type: ignore[arg-type]
    except VersionError as e:
        raise ManifestError(f"manifest field `semver`: {e}") from None
    assert isinstance(semver, str)
    if Decimal(version) != legacy_decimal(semver):
        raise _bad("version", f"MAJOR.MINOR of semver {semver!r} ({legacy_decimal(semver)})", version)
    sha256 = _string(obj, "sha256", SHA256, "64 lowercase hex digits")
    size = _integer(obj, "size", 1, MAX_U32)
    project = _string(obj, "project", PROJECT, "1 to 31 of A-Z a-z 0-9 . _ + -")
    chip = _string(obj, "chip", CHIP, "1 to 15 of a-z 0-9")
    secure_version = _integer(obj, "secure_version", 0, MAX_U32)
    channel = _string(obj, "channel", CHANNEL, "a channel name [a-z0-9][a-z0-9._-]{0,31}")
    manifest_version = _integer(obj, "manifest_version", 1, MAX_SAFE_INTEGER)
    issued_at = _integer(obj, "issued_at", 0, MAX_SAFE_INTEGER)
    expires = _integer(obj, "expires", 0, MAX_SAFE_INTEGER)
    if expires <= issued_at:
        raise _bad("expires", f"a time after issued_at ({issued_at})", expires)
    key_id = _string(obj, "key_id", KEY_ID, "16 lowercase hex digits")
    return ManifestFields(version, file, semver, sha256, size, project, chip, secure_version, channel,
                          manifest_version, issued_at, expires, key_id)


def check_config_document(obj: dict[str, Any]) -> tuple[str, int, dict[str, Any]]:
    """(device_id, revision, properties) of a strictly parsed config document; the property values
    are judged against their table by the caller (after the device and revision checks).

    Raises:
        ManifestError: naming the field.
    """
    device_id = _string(obj, "device_id", DEVICE_ID, "a device id [A-Za-z0-9._:-]{1,64}")
    revision = _integer(obj, "revision", 1, MAX_SAFE_INTEGER)
    properties = obj.get("properties")
    if type(properties) is not dict:
        raise _bad("properties", "an object", properties)
    return device_id, revision, properties
