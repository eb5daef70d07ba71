"""Desired configuration from the server (manifests/README.md, "Desired configuration"): a small JSON
document signed by the server's online config key, which the device pins beside (never instead of)
the release key. Checked in the order of firmware/core/src/otaml_config.c: size, signature, strict
JSON and field rules, device, revision, then every property against its range (one out of range
refuses the whole document; unknown names are ignored).

Security-critical: nothing is parsed before the signature verifies, and a document can set only the
properties of PROPERTIES (mirrored in server/otaml/fleet/config.py).
"""

from otaml import jsonr, protocol as P, rules, sig

MAX_MQTT_URL = 100
MAX_MQTT_PREFIX = 48
_ALNUM = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_HEX = "0123456789abcdefABCDEF"


def mqtt_url_ok(s):
    """(mqtt|mqtts)://HOST(:PORT)?, at most 100 bytes: otaml_config_mqtt_url_ok, step for step."""
    if len(s) > MAX_MQTT_URL:
        return False
    if s.startswith("mqtt://"):
        i = 7
    elif s.startswith("mqtts://"):
        i = 8
    else:
        return False
    n = len(s)
    if i < n and s[i] == "[":
        i += 1
        start = i
        while i < n and (s[i] in _HEX or s[i] in ":."):
            i += 1
        if i == start or i >= n or s[i] != "]":
            return False
        i += 1
    else:
        if i >= n or s[i] not in _ALNUM:
            return False
        while i < n and (s[i] in _ALNUM or s[i] in ".-"):
            i += 1
    if i == n:
        return True
    if s[i] != ":":
        return False
    digits = s[i + 1:]
    return 1 <= len(digits) <= 5 and all(c in "0123456789" for c in digits) and digits[0] != "0" and int(digits) <= 65535


def mqtt_prefix_ok(s):
    """1 to 48 bytes of topic levels [A-Za-z0-9._-]+ joined by single slashes."""
    if not 1 <= len(s) <= MAX_MQTT_PREFIX:
        return False
    for level in s.split("/"):
        if not level or not all(c in _ALNUM or c in "._-" for c in level):
            return False
    return True


# name: (low, high) for an integer, or the rule a string must pass; sorted by name (the applied form
# lists them in this order)
PROPERTIES = {
    "alert_threshold": (0, 100),
    "ml_interval_ms": (10, 3600000),
    "mqtt_enabled": (0, 1),
    "mqtt_prefix": mqtt_prefix_ok,
    "mqtt_url": mqtt_url_ok,
}
NAMES = sorted(PROPERTIES)


def accepts(name, value):
    rule = PROPERTIES[name]
    if callable(rule):
        return type(value) is str and rule(value)
    low, high = rule
    return type(value) is int and low <= value <= high

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
        return ",".join("%s=%s" % (n, self.values[n]) for n in NAMES if n in self.values)

    @classmethod
    def from_applied(cls, revision, text):
        """The inverse of applied(); None when the text is not a valid applied form."""
        values = {}
        for item in text.split(",") if text else ():
            name, eq, value = item.partition("=")
            if not eq or name not in PROPERTIES:
                return None
            if callable(PROPERTIES[name]):
                if not accepts(name, value):
                    return None
                values[name] = value
                continue
            if not value or not value.lstrip("-").isdigit():
                return None
            v = int(value)
            if not accepts(name, v):
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
        if not accepts(name, value):
            return PARSE, None
        values[name] = value
    return OK, Config(revision, values)
