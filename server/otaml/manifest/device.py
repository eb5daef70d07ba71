"""The device's verdict, in Python: manifests/README.md, "Device checks, in order", one line per check,
in the order firmware/core/src/otaml_policy.c applies them; and the config-document checks of
firmware/core/src/otaml_config.c.

This is the reference the C core is compared against, entry by entry, on the adversarial corpus
(manifests/vectors/adversarial.jsonl, tests/firmware/test_corpus.py), and what a MicroPython client
must agree with. It decides nothing on the server; the server's own acceptance (``format``) applies the
same rules plus its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from otaml.core.errors import ManifestError, SignatureError
from otaml.fleet.protocol import Reason
from otaml.manifest import rules, signing, strictjson
from otaml.manifest.format import MAX_MANIFEST_BYTES
from otaml.manifest.versions import Version

UPDATE, NO_UPDATE, REJECT = "update", "no_update", "reject"
MAX_CONFIG_B64 = 700  # OTAML_MAX_CONFIG_B64: a longer header is refused before it is decoded


@dataclass(frozen=True)
class DeviceContext:
    """What the device knows when it judges (otaml_policy_ctx_t)."""

    now: int  # trusted Unix time; 0 when the device has none
    running_version: str
    project: str
    chip: str
    channel: str
    secure_version: int
    last_manifest_version: int
    failed_version: str  # "" when nothing rolled back
    slot_size: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeviceContext:
        return cls(**{name: d[name] for name in cls.__dataclass_fields__})


def _c_string(text: str | bytes) -> bytes:
    """A header value as the core receives it: a C string, which ends at the first NUL."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return raw.split(b"\x00", 1)[0]


def _verifying_key(keys: Sequence[ec.EllipticCurvePublicKey], body: bytes, signature_b64: str | bytes) -> int | None:
    """Index of the first pinned key that verifies, as otaml_manifest_verify tries them."""
    signature_b64 = _c_string(signature_b64)
    try:
        der = signing.decode_signature(signature_b64)
    except SignatureError:
        return None
    for i, key in enumerate(keys):
        try:
            key.verify(der, body, ec.ECDSA(hashes.SHA256()))
            return i
        except InvalidSignature:
            continue
    return None


def judge(body: bytes, signature_b64: str | bytes, keys: Sequence[ec.EllipticCurvePublicKey],
          context: DeviceContext) -> tuple[str, str]:
    """(decision, reason): ("update", "ok"), ("no_update", "ok") or ("reject", <reason code>)."""
    if len(body) > MAX_MANIFEST_BYTES:  # 1
        return REJECT, Reason.MANIFEST_TOO_LARGE.value
    index = _verifying_key(keys, body, signature_b64)  # 2
    if index is None:
        return REJECT, Reason.BAD_SIGNATURE.value
    return judge_verified(body, signing.key_id(keys[index]), context)


def judge_verified(body: bytes, key_id: str, context: DeviceContext) -> tuple[str, str]:
    """Checks 3-11 on bytes whose signature verified with the key ``key_id``
    (otaml_policy_evaluate_verified)."""
    if len(body) > MAX_MANIFEST_BYTES:  # otaml_manifest_parse refuses it as malformed
        return REJECT, Reason.MANIFEST_MALFORMED.value
    try:  # 3
        m = rules.check_manifest(strictjson.loads(body))
    except ManifestError:
        return REJECT, Reason.MANIFEST_MALFORMED.value
    if m.key_id != key_id:  # 4
        return REJECT, Reason.KEY_MISMATCH.value
    return policy(m, context)


def policy(m: rules.ManifestFields, ctx: DeviceContext) -> tuple[str, str]:
    """Checks 5-11 on an authentic, well-formed manifest (otaml_policy_check)."""
    if m.project != ctx.project:
        return REJECT, Reason.PROJECT_MISMATCH.value
    if m.chip != ctx.chip:
        return REJECT, Reason.CHIP_MISMATCH.value
    if m.channel != ctx.channel:
        return REJECT, Reason.CHANNEL_MISMATCH.value
    # Without trusted time expiry cannot be judged; the replay rule still bounds a freeze.
    if ctx.now > 0 and m.expires <= ctx.now:
        return REJECT, Reason.MANIFEST_EXPIRED.value
    if m.manifest_version < ctx.last_manifest_version:
        return REJECT, Reason.MANIFEST_REPLAYED.value
    if m.manifest_version == ctx.last_manifest_version:
        return NO_UPDATE, Reason.OK.value
    if Version.parse(m.semver) <= Version.parse(ctx.running_version):
        return NO_UPDATE, Reason.OK.value
    if ctx.failed_version and m.semver == ctx.failed_version:
        return REJECT, Reason.VERSION_FAILED_BEFORE.value
    if m.secure_version < ctx.secure_version:
        return REJECT, Reason.SECURE_VERSION_LOWER.value
    if m.size > ctx.slot_size:
        return REJECT, Reason.IMAGE_TOO_LARGE.value
    return UPDATE, Reason.OK.value


def judge_config(doc_b64: str | bytes, signature_b64: str | bytes, keys: Sequence[ec.EllipticCurvePublicKey],
                 device_id: str, applied_revision: int) -> tuple[str, dict[str, int | str]]:
    """(status, properties applied) for a desired-config document, as otaml_config_verify decides:
    "ok", "too_large", "signature", "parse", "wrong_device" or "stale"; the properties only for "ok"."""
    from otaml.fleet.config import MAX_DOCUMENT_BYTES, PROPERTIES  # fleet imports this package

    raw_b64 = _c_string(doc_b64)
    if len(raw_b64) > MAX_CONFIG_B64:
        return "too_large", {}
    try:
        body = signing.decode_base64_strict(raw_b64)
    except SignatureError:
        return "signature", {}
    if len(body) > MAX_DOCUMENT_BYTES:
        return "too_large", {}
    if _verifying_key(keys, body, signature_b64) is None:
        return "signature", {}
    try:
        doc_device, revision, properties = rules.check_config_document(strictjson.loads(body))
    except ManifestError:
        return "parse", {}
    if doc_device != device_id:
        return "wrong_device", {}
    if revision <= applied_revision:
        return "stale", {}
    applied = {}
    for name, value in properties.items():
        prop = PROPERTIES.get(name)
        if prop is None:
            continue  # a newer server's property: ignored, whatever its value
        if not prop.accepts(value):
            return "parse", {}
        applied[name] = value
    return "ok", dict(sorted(applied.items()))
