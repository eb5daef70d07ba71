"""Desired configuration: properties the operator sets per channel, tag or device, delivered with the
poll as a small document signed by the server's online key.

The release key never reaches the server, so these documents cannot ride in the offline-signed
manifest. A second key, held by the server and pinned by the firmware beside the release key (the
split Uptane makes between its director and image repositories), signs them. What it can change is
limited to the properties below, each with a range the firmware enforces again: a stolen server key
can retune a device, never install firmware.

Document (JSON, at most 512 bytes):  {"device_id": "...", "revision": N, "properties": {"k": v, ...}}
A device applies a document only if it names the device and its revision is higher than the last one
applied, then reports the revision and the properties it runs in its next check-in.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from otaml.core.errors import ManifestError, OtamlError
from otaml.core.types import parse_uint
from otaml.manifest import rules, signing, strictjson


class ConfigValueError(OtamlError):
    status = 422


Value = int | str


@dataclass(frozen=True)
class Property:
    """An integer within low..high, or (``rule`` set) a string the rule accepts whole."""

    name: str
    low: int
    high: int
    help: str
    rule: Callable[[str], bool] | None = None
    expected: str = ""

    def accepts(self, value: object) -> bool:
        """As the device judges a value (otaml_config.c): exact JSON types, no coercion."""
        if self.rule is not None:
            return type(value) is str and self.rule(value)
        return type(value) is int and self.low <= value <= self.high

    def describe(self) -> str:
        return self.expected if self.rule is not None else f"an integer from {self.low} to {self.high}"


# Mirrored in firmware/core/src/otaml_config.c and firmware/micropython/otaml/config.py (tests keep
# them in step; the adversarial corpus holds each rule's edges).
PROPERTIES = {
    p.name: p
    for p in [
        Property("ml_interval_ms", 10, 3_600_000, "milliseconds between inferences of the ML task"),
        Property("alert_threshold", 0, 100, "percent confidence of a non-healthy class that raises an alert"),
        Property("mqtt_enabled", 0, 1, "1: publish every prediction to the MQTT broker, 0: do not"),
        Property("mqtt_url", 0, 0, "the MQTT broker predictions go to", rules.mqtt_url_ok,
                 f"a broker URL (mqtt|mqtts)://HOST(:PORT)? of at most {rules.MAX_MQTT_URL_BYTES} bytes "
                 "(no user info: credentials live in the device's NVS)"),
        Property("mqtt_prefix", 0, 0, "topic prefix: predictions go to PREFIX/DEVICE/inference", rules.mqtt_prefix_ok,
                 f"1 to {rules.MAX_MQTT_PREFIX_BYTES} bytes of topic levels [A-Za-z0-9._-]+ joined by single slashes"),
    ]
}
MAX_DOCUMENT_BYTES = 512


def validate(properties: Mapping[str, object]) -> dict[str, Value]:
    """Raises ConfigValueError naming the property, the rule and what arrived."""
    out: dict[str, Value] = {}
    for name, value in properties.items():
        prop = PROPERTIES.get(name)
        if prop is None:
            raise ConfigValueError(f"expected one of the properties {', '.join(PROPERTIES)}, got {name[:40]!r}")
        if not prop.accepts(value):
            shown = value[:120] if isinstance(value, str) else value
            raise ConfigValueError(f"{name}: expected {prop.describe()}, got {shown!r}")
        out[name] = value  # type: ignore[assignment]
    return dict(sorted(out.items()))


def merge(layers: Iterable[Mapping[str, Value] | None]) -> dict[str, Value]:
    """Later layers win: channel, then each of the device's tags (sorted), then the device."""
    out: dict[str, Value] = {}
    for layer in layers:
        if layer:
            out.update(layer)
    return dict(sorted(out.items()))


def document(device_id: str, revision: int, properties: Mapping[str, Value]) -> bytes:
    body = json.dumps(
        {"device_id": device_id, "revision": revision, "properties": dict(sorted(properties.items()))},
        separators=(",", ":"),
    ).encode()
    if len(body) > MAX_DOCUMENT_BYTES:
        raise ConfigValueError(f"expected a config document of at most {MAX_DOCUMENT_BYTES} bytes, got {len(body)}")
    try:  # never sign what a device would refuse (manifests/README.md, "Strict JSON")
        rules.check_config_document(strictjson.loads(body))
    except ManifestError as e:
        raise ConfigValueError(f"config document for {device_id[:64]!r} breaks the device's rules: {e}") from None
    return body


def parse_reported(value: str) -> dict[str, Value]:
    """'alert_threshold=80,ml_interval_ms=200,mqtt_url=mqtt://broker:1883' from a check-in (string values
    never hold ',' or '='). Raises ValueError."""
    out: dict[str, Value] = {}
    for pair in value.split(","):
        name, _, text = pair.partition("=")
        prop = PROPERTIES.get(name)
        if prop is None:
            raise ValueError(pair[:40])
        if prop.rule is not None:
            if not prop.rule(text):
                raise ValueError(pair[:40])
            out[name] = text
            continue
        number = parse_uint(text, 10**10 - 1)  # ASCII digits only; ranges are the firmware's business here
        if number is None:
            raise ValueError(pair[:40])
        out[name] = number
    return dict(sorted(out.items()))


class ConfigSigner:
    """The server's online key. Created on first start if missing (mode 0600, public half beside it);
    firmware pins the public half as its config key (`release config-key` prints it)."""

    def __init__(self, path: Path):
        if not path.exists():
            signing.write_keypair(signing.generate_key(), path)
        self._key = signing.load_private_key(path)
        self.public_pem = signing.public_pem(self._key.public_key)
        self.key_id = self._key.key_id

    def sign(self, body: bytes) -> tuple[str, str]:
        """(base64 document, base64 DER signature) for the response headers."""
        return base64.b64encode(body).decode(), self._key.sign(body)


class SignedConfigCache:
    """Signed documents by (device, revision): a device that has not acknowledged its document yet
    gets the same bytes on every poll without another signature. Bounded; cleared when full."""

    def __init__(self, signer: ConfigSigner, limit: int = 50_000):
        self.signer = signer
        self._limit = limit
        self._docs: dict[tuple[str, int], tuple[str, str]] = {}

    def get(self, device_id: str, revision: int, properties: Callable[[], Mapping[str, Value]]) -> tuple[str, str]:
        hit = self._docs.get((device_id, revision))
        if hit is None:
            if len(self._docs) >= self._limit:
                self._docs.clear()
            hit = self.signer.sign(document(device_id, revision, properties()))
            self._docs[(device_id, revision)] = hit
        return hit
