"""Desired configuration from the server (manifests/README.md, "Desired configuration"): a small JSON
document signed by the server's online config key, which the device pins beside (never instead of)
the release key. Checked in the order of firmware/core/src/otaml_config.c: size, signature, strict
JSON and field rules, device, revision, then every property against its range (one out of range
refuses the whole document; unknown names are ignored).

Security-critical: nothing is parsed before the signature verifies, and a document can set only the
properties of PROPERTIES (mirrored in server/otaml/fleet/config.py).
"""

from otaml import jsonr, protocol as P, rules, sig

# name: (low, high), sorted by name (the applied form lists them in this order)
PROPERTIES = {
    "alert_threshold": (0, 100),
    "ml_interval_ms": (10, 3600000),
}
NAMES = sorted(PROPERTIES)

OK = "ok"
TOO_LARGE = "too_large"
SIGNATURE = "signature"
PARSE = "parse"
WRONG_DEVICE = "wrong_device"
STALE = "stale"


class Config:
    """An applied configuration: revision (0: none yet) and the properties set."""

    def __init__(self, revision=0, values=None):
        self.revision = revision
        self.values = dict(values or {})

    def get(self, name, default=None):
        return self.values.get(name, default)

    def applied(self):
        """"alert_threshold=80,ml_interval_ms=200": the X-Otaml-Config-Applied form, and how it is stored."""
        return ",".join("%s=%d" % (n, self.values[n]) for n in NAMES if n in self.values)

    @classmethod
    def from_applied(cls, revision, text):
        """The inverse of applied(); None when the text is not a valid applied form."""
        values = {}
        for item in text.split(",") if text else ():
            name, eq, value = item.partition("=")
            if not eq or name not in PROPERTIES or not value or not value.lstrip("-").isdigit():
                return None
            v = int(value)
            low, high = PROPERTIES[name]
            if not low <= v <= high:
                return None
            values[name] = v
        return cls(revision, values)


def verify(keyring, doc_b64, sig_b64, device_id, applied_revision):
    """(status, Config or None) for the X-Otaml-Config / X-Otaml-Config-Signature headers."""
    raw = sig.c_string(doc_b64)
    if len(raw) > P.MAX_CONFIG_B64:
        return TOO_LARGE, None
    body = sig.b64decode(raw)
    if body is None:
        return SIGNATURE, None
    if len(body) > P.MAX_CONFIG_BYTES:
        return TOO_LARGE, None
    if keyring.verify(body, sig_b64, P.MAX_SIGNATURE_B64) is None:
        return SIGNATURE, None
    try:
        device, revision, props = rules.config_document(jsonr.loads(body))
    except ValueError:
        return PARSE, None
    if device != device_id:
        return WRONG_DEVICE, None
    if revision <= applied_revision:
        return STALE, None
    values = {}
    for name, value in props.items():
        if name not in PROPERTIES:
            continue  # a newer server's property
        low, high = PROPERTIES[name]
        if type(value) is not int or not low <= value <= high:
            return PARSE, None
        values[name] = value
    return OK, Config(revision, values)
