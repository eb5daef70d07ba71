"""The key-set document: release-key rotation without reflashing (manifests/README.md, "Key rotation").

A key set names the release keys devices verify manifests with. Set N+1 is signed by a key of set N (set
0 is the keyring the firmware was built with), so a device applies only a chain of sets each vouched for
by the one before; a device offline across several rotations is served them one at a time, oldest first.

    {"keyset_version":2,"project":"otaml","keys":[{"key_id":"...","public_key":"<base64 DER SPKI>"}]}

The same strict JSON (``strictjson``) and the same field rules as the device (firmware/core/src/
otaml_keyset.c); ``judge`` is the device's verdict in Python, the reference the C core is compared with
on the adversarial corpus.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from otaml.core.errors import ManifestError, SignatureError
from otaml.manifest import rules, signing, strictjson

MAX_KEYSET_BYTES = 1024  # OTAML_MAX_KEYSET_BYTES
MAX_KEYSET_B64 = 1368  # base64 of 1024 bytes
MAX_KEYS = 4  # OTAML_MAX_KEYS: the firmware's keyring
SPKI_P256_BYTES = 91  # SubjectPublicKeyInfo of an uncompressed P-256 point
SPKI_P256_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")

OK = "ok"
TOO_LARGE = "keyset_too_large"
BAD_SIGNATURE = "bad_signature"
MALFORMED = "keyset_malformed"
PROJECT_MISMATCH = "project_mismatch"
REPLAYED = "keyset_replayed"
VERDICTS = (OK, TOO_LARGE, BAD_SIGNATURE, MALFORMED, PROJECT_MISMATCH, REPLAYED)


@dataclass(frozen=True)
class KeySetFields:
    keyset_version: int
    project: str
    keys: tuple[tuple[str, bytes], ...]  # (key id, DER SubjectPublicKeyInfo)

    @property
    def key_ids(self) -> list[str]:
        return [k for k, _ in self.keys]

    def public_keys(self) -> list[ec.EllipticCurvePublicKey]:
        return [serialization.load_der_public_key(der) for _, der in self.keys]  # type: ignore[misc]


def _bad(name: str, expected: str, value: object) -> ManifestError:
    shown = repr(value)
    return ManifestError(f"key set field `{name}`: expected {expected}, got {shown[:77] + '...' if len(shown) > 80 else shown}")


def _public_key(text: object) -> bytes:
    """The DER of an uncompressed P-256 SubjectPublicKeyInfo, spelled as S1 base64; exactly what the
    device accepts (its fixed 26-byte prefix, then a point on the curve)."""
    if not isinstance(text, str):
        raise _bad("public_key", "base64 of a P-256 public key (91 bytes of DER)", text)
    try:
        der = signing.decode_base64_strict(text)
    except SignatureError:
        raise _bad("public_key", "strict base64 (A-Z a-z 0-9 + /, padded with =)", text) from None
    if len(der) != SPKI_P256_BYTES or not der.startswith(SPKI_P256_PREFIX):
        raise _bad("public_key", "the DER SubjectPublicKeyInfo of an uncompressed P-256 point (91 bytes)", text)
    try:
        key = serialization.load_der_public_key(der)
    except ValueError:
        raise _bad("public_key", "a point on P-256", text) from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise _bad("public_key", "a P-256 key", text)
    return der


def check_keyset(obj: dict[str, Any]) -> KeySetFields:
    """The field rules (manifests/README.md, "Key-set fields"). Raises ManifestError naming the field."""
    version = rules._integer(obj, "keyset_version", 1, strictjson.MAX_SAFE_INTEGER)
    project = rules._string(obj, "project", rules.PROJECT, "[A-Za-z0-9._+-]{1,31}")
    keys = obj.get("keys")
    if not isinstance(keys, list) or not 1 <= len(keys) <= MAX_KEYS:
        raise _bad("keys", f"an array of 1 to {MAX_KEYS} keys", keys)
    out: list[tuple[str, bytes]] = []
    for entry in keys:
        if not isinstance(entry, dict):
            raise _bad("keys", "objects {key_id, public_key}", entry)
        key_id = entry.get("key_id")
        if not isinstance(key_id, str) or not rules.KEY_ID.fullmatch(key_id):
            raise _bad("key_id", "16 lowercase hex digits", key_id)
        der = _public_key(entry.get("public_key"))
        if hashlib.sha256(der).hexdigest()[:16] != key_id:
            raise _bad("key_id", f"the key's id {hashlib.sha256(der).hexdigest()[:16]}", key_id)
        if any(k == key_id for k, _ in out):
            raise _bad("keys", "each key once", key_id)
        out.append((key_id, der))
    return KeySetFields(version, project, tuple(out))


def read(body: bytes) -> KeySetFields:
    if len(body) > MAX_KEYSET_BYTES:
        raise ManifestError(f"expected a key set of at most {MAX_KEYSET_BYTES} bytes, got {len(body)}")
    return check_keyset(strictjson.loads(body))


def build(version: int, project: str, keys: Sequence[ec.EllipticCurvePublicKey]) -> bytes:
    """The canonical bytes of a key set (compact JSON, keys in the order given)."""
    entries = []
    for key in keys:
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        entries.append({"key_id": signing.key_id(key), "public_key": base64.b64encode(der).decode()})
    body = json.dumps({"keyset_version": version, "project": project, "keys": entries}, separators=(",", ":")).encode()
    read(body)  # what we sign is what devices accept
    return body


def judge(doc_b64: str | bytes, signature_b64: str | bytes, trusted: Sequence[ec.EllipticCurvePublicKey],
          project: str, current_version: int) -> str:
    """The device's verdict on a key set received as X-Otaml-Keyset / -Signature (otaml_keyset_verify),
    checks in order: the size, the signature with a key of the set the device uses now, the strict JSON
    and field rules, the project, a version above the current one."""
    from otaml.manifest.device import _c_string, _verifying_key  # device imports rules from here

    raw = _c_string(doc_b64)
    if len(raw) > MAX_KEYSET_B64:
        return TOO_LARGE
    try:
        body = signing.decode_base64_strict(raw)
    except SignatureError:
        return BAD_SIGNATURE
    if len(body) > MAX_KEYSET_BYTES:
        return TOO_LARGE
    if _verifying_key(trusted, body, signature_b64) is None:
        return BAD_SIGNATURE
    try:
        fields = read(body)
    except ManifestError:
        return MALFORMED
    if fields.project != project:
        return PROJECT_MISMATCH
    if fields.keyset_version <= current_version:
        return REPLAYED
    return OK
