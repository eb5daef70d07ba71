"""The one spelling of a signature (manifests/README.md, "Signature", S1) and pinned public keys.

Security-critical: base64 from `A-Z a-z 0-9 + /`, a multiple of 4 long, `=` only as the last one or
two characters; decoding to canonical DER (short-form lengths, each INTEGER minimal and non-negative,
nothing after the SEQUENCE). Anything else is not a signature.
"""

import hashlib

from otaml import p256

_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_B64_VALUE = bytearray(b"\xff" * 256)
for _i, _c in enumerate(_B64):
    _B64_VALUE[_c] = _i

# DER SubjectPublicKeyInfo of an uncompressed P-256 point, up to the point: SEQUENCE { SEQUENCE {
# id-ecPublicKey, prime256v1 }, BIT STRING 00 04 X Y }.
_SPKI_PREFIX = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")


def b64decode(text, max_len=None):
    """Bytes of strict standard base64 (with padding), or None when it is not spelled that way."""
    if isinstance(text, str):
        try:
            text = text.encode()
        except UnicodeError:
            return None
    n = len(text)
    if n == 0 or n % 4 or (max_len is not None and n > max_len):
        return None
    pad = 2 if text[-2:] == b"==" else (1 if text[-1:] == b"=" else 0)
    out = bytearray()
    acc = 0
    bits = 0
    for i in range(n - pad):
        v = _B64_VALUE[text[i]]
        if v == 0xFF:
            return None
        acc = ((acc << 6) | v) & 0xFFFFFF
        bits += 6
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    return bytes(out)


def _der_int(der, pos, end):
    if pos + 2 > end or der[pos] != 0x02:
        return None, pos
    n = der[pos + 1]
    pos += 2
    if n == 0 or n > 0x7F or pos + n > end:
        return None, pos
    if der[pos] & 0x80:  # negative
        return None, pos
    if n > 1 and der[pos] == 0 and not der[pos + 1] & 0x80:  # not minimal
        return None, pos
    return int.from_bytes(der[pos:pos + n], "big"), pos + n


def parse_der(der):
    """(r, s) of a canonical DER ECDSA-Sig-Value, or None."""
    if der is None or len(der) < 8 or der[0] != 0x30 or der[1] > 0x7F or der[1] + 2 != len(der):
        return None
    end = len(der)
    r, pos = _der_int(der, 2, end)
    if r is None:
        return None
    s, pos = _der_int(der, pos, end)
    if s is None or pos != end:
        return None
    return r, s


def c_string(value):
    """A header value as the C core receives it: it ends at the first NUL (both must judge alike)."""
    if isinstance(value, str):
        value = value.encode()
    end = value.find(b"\x00")
    return value if end < 0 else value[:end]


def parse_signature(b64, max_len=128):
    """(r, s) of a signature spelled as S1, or None."""
    return parse_der(b64decode(c_string(b64), max_len))


class Key:
    """A pinned P-256 public key and its key id (first 16 hex digits of SHA-256 over the DER SPKI)."""

    def __init__(self, pem):
        if isinstance(pem, str):
            pem = pem.encode()
        begin = pem.find(b"-----BEGIN PUBLIC KEY-----")
        end = pem.find(b"-----END PUBLIC KEY-----")
        if begin < 0 or end < begin:
            raise ValueError("expected a PEM public key")
        body = b"".join(pem[begin + 26:end].split())
        der = b64decode(body)
        if der is None or len(der) != 91 or der[:26] != _SPKI_PREFIX or der[26] != 4:
            raise ValueError("expected an uncompressed P-256 public key")
        self.x = int.from_bytes(der[27:59], "big")
        self.y = int.from_bytes(der[59:91], "big")
        if not p256.on_curve(self.x, self.y):
            raise ValueError("the public key is not a point of P-256")
        self.key_id = hashlib.sha256(der).digest()[:8].hex()

    def verify(self, body, rs):
        return p256.verify_digest(self.x, self.y, hashlib.sha256(body).digest(), rs[0], rs[1])


class Keyring:
    """The keys a device pins (at most 4: a rotation ships old and new together)."""

    def __init__(self, pems):
        if not 1 <= len(pems) <= 4:
            raise ValueError("expected 1 to 4 pinned keys, got %d" % len(pems))
        self.keys = [Key(p) for p in pems]

    def verify(self, body, signature_b64, max_len=128):
        """The key that verifies signature_b64 over body, or None (not S1, or no pinned key verifies)."""
        rs = parse_signature(signature_b64, max_len)
        if rs is None:
            return None
        for key in self.keys:
            if key.verify(body, rs):
                return key
        return None
