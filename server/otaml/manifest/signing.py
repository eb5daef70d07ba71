"""ECDSA P-256 / SHA-256 keys and detached signatures over the exact bytes of firmware.json.

Encoding (manifests/README.md, "Signature"): the signature is the DER ``ECDSA-Sig-Value`` (what
mbedtls_pk_verify takes on the device) in standard base64 without line breaks. The key id is the first
16 hex digits of SHA-256 over the public key's DER SubjectPublicKeyInfo.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from otaml.core.errors import KeyFileError, SignatureError

PRIVATE_KEY_NAME = "otaml-signing.pem"
PUBLIC_KEY_NAME = "otaml-signing.pub.pem"


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def public_pem(public_key: ec.EllipticCurvePublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


@dataclass(frozen=True)
class SigningKey:
    private_key: ec.EllipticCurvePrivateKey

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def sign(self, data: bytes) -> str:
        """The detached signature over ``data``, base64 of DER."""
        # RFC 6979 nonces: a weak RNG on a build machine cannot leak the key, and equal input gives
        # equal signatures (reproducible test vectors).
        der = self.private_key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        return base64.b64encode(der).decode("ascii")


def generate_key() -> SigningKey:
    return SigningKey(ec.generate_private_key(ec.SECP256R1()))


def write_keypair(key: SigningKey, private_path: Path, *, force: bool = False) -> Path:
    """Write the private key (mode 0600, created exclusively) and the public key beside it.

    Returns the public key's path. Raises KeyFileError if the private key exists and ``force`` is off:
    overwriting a release key silently would orphan every device that pins it.
    """
    private_path = Path(private_path)
    public_path = public_path_for(private_path)
    private_path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(private_path, flags, 0o600)
    except FileExistsError:
        raise KeyFileError(
            f"expected no key at {private_path}, but one exists: devices pin its public key, so it is kept; "
            f"pass --force to replace it"
        ) from None
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)  # O_CREAT's mode is masked by umask; an existing file kept its mode
        f.write(pem)
    public_path.write_text(public_pem(key.public_key))
    return public_path


def public_path_for(private_path: Path) -> Path:
    private_path = Path(private_path)
    name = private_path.name
    stem = name[: -len(".pem")] if name.endswith(".pem") else name
    return private_path.with_name(f"{stem}.pub.pem")


def load_private_key(path: Path) -> SigningKey:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"expected a signing key at {path}, found no file; run `release keygen` first") from None
    except OSError as e:
        raise KeyFileError(f"cannot read signing key {path}: {e.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"expected an unencrypted PEM private key in {path}: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(f"expected an ECDSA P-256 private key in {path}, got {type(key).__name__}")
    return SigningKey(key)


def load_public_key(pem: str | bytes) -> ec.EllipticCurvePublicKey:
    if isinstance(pem, str):
        pem = pem.encode()
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as e:
        raise KeyFileError(f"expected a PEM public key: {e}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise KeyFileError(f"expected an ECDSA P-256 public key, got {type(key).__name__}")
    return key


MAX_SIGNATURE_B64 = 128  # base64 of a DER P-256 signature is at most 96 characters
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def decode_base64_strict(text: str | bytes) -> bytes:
    """Base64 spelled one way (manifests/README.md, "Signature", S1): the standard alphabet, a multiple
    of 4 characters, ``=`` only as the last one or two, nothing else (no line breaks, no spaces).
    The device (otaml_base64_decode_strict) accepts exactly the same texts.

    Raises:
        SignatureError: anything else, or an empty text.
    """
    if isinstance(text, str):
        text = text.encode("utf-8", "surrogatepass")
    if not text or not _BASE64.fullmatch(text.decode("latin-1")):
        raise SignatureError("expected standard base64 (A-Z a-z 0-9 + /, padded with =, no spaces); got other text")
    return base64.b64decode(text, validate=True)


def _der_integer(der: bytes, at: int) -> int:
    """Offset after a minimal, non-negative DER INTEGER at ``at``; -1 if it is not one."""
    if at + 2 > len(der) or der[at] != 0x02 or not 1 <= der[at + 1] <= 33:
        return -1
    n = der[at + 1]
    body = der[at + 2 : at + 2 + n]
    if len(body) != n or body[0] & 0x80 or (n > 1 and body[0] == 0 and not body[1] & 0x80):
        return -1
    return at + 2 + n


def is_canonical_der_signature(der: bytes) -> bool:
    """SEQUENCE { r INTEGER, s INTEGER } in canonical DER (short-form lengths, minimal non-negative
    integers, nothing after): one encoding per signature, as OpenSSL and the device's check require."""
    if len(der) < 8 or der[0] != 0x30 or der[1] != len(der) - 2 or der[1] >= 0x80:
        return False
    after_r = _der_integer(der, 2)
    return after_r > 0 and _der_integer(der, after_r) == len(der)


def decode_signature(signature_b64: str | bytes) -> bytes:
    """The DER bytes of a signature spelled as S1 (manifests/README.md, "Signature").

    Raises:
        SignatureError: too long, not strict base64, or not canonical DER.
    """
    raw = signature_b64.encode("utf-8", "surrogatepass") if isinstance(signature_b64, str) else signature_b64
    if len(raw) > MAX_SIGNATURE_B64:
        raise SignatureError(f"expected a signature of at most {MAX_SIGNATURE_B64} base64 characters, got {len(raw)}")
    der = decode_base64_strict(raw)
    if not is_canonical_der_signature(der):
        raise SignatureError("expected the signature as canonical DER of an ECDSA signature; got other bytes")
    return der


def verify(public_key: ec.EllipticCurvePublicKey, data: bytes, signature_b64: str) -> None:
    """Verify a detached signature over ``data``.

    Raises:
        SignatureError: the signature is not spelled as S1 (strict base64 of canonical DER), or it
            does not verify.
    """
    der = decode_signature(signature_b64)
    try:
        public_key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError(
            f"signature does not verify with key {key_id(public_key)} over the {len(data)} manifest bytes"
        ) from None
