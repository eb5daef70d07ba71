"""Field rules of signed documents (manifests/README.md, "Manifest fields", "Config document fields"),
as the C core's otaml_manifest.c / otaml_config.c and the server's rules.py apply them. Every rule
matches the whole value; strings are measured in bytes of UTF-8. Written without `re` (MicroPython's
has no counted repetition), one small function per grammar.
"""

from otaml import version as versions
from otaml.jsonr import MAX_SAFE_INTEGER, Dec, decimal_of

MAX_U32 = 4294967295
MAX_FILE_URL_BYTES = 255

_DIGIT = b"0123456789"
_LOWER = b"abcdefghijklmnopqrstuvwxyz"
_ALNUM = _DIGIT + _LOWER + b"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_HEX_LOWER = b"0123456789abcdef"
_HEX = b"0123456789abcdefABCDEF"
_PATH = _ALNUM + b"._~!$&'()*+,;=:@/?-"


class RuleError(ValueError):
    pass


def _only(value, allowed, lo, hi):
    return lo <= len(value) <= hi and all(c in allowed for c in value)


def is_file_url(text):
    """`(http|https)://HOST(:PORT)?/PATH` of manifests/README.md."""
    b = text.encode()
    if len(b) > MAX_FILE_URL_BYTES:
        return False
    if b.startswith(b"https://"):
        i = 8
    elif b.startswith(b"http://"):
        i = 7
    else:
        return False
    n = len(b)
    if i < n and b[i] == 0x5B:  # [v6 literal]
        j = b.find(b"]", i)
        if j < 0 or not _only(b[i + 1:j], _HEX + b":.", 1, 255):
            return False
        i = j + 1
    else:
        if i >= n or b[i] not in _ALNUM:
            return False
        i += 1
        while i < n and b[i] in _ALNUM + b".-":
            i += 1
    if i < n and b[i] == 0x3A:
        j = i + 1
        while j < n and b[j] in _DIGIT:
            j += 1
        if not 1 <= j - i - 1 <= 5:
            return False
        i = j
    if i >= n or b[i] != 0x2F:
        return False
    while i < n:
        c = b[i]
        if c == 0x25:
            if i + 2 >= n or b[i + 1] not in _HEX or b[i + 2] not in _HEX:
                return False
            i += 3
        elif c in _PATH:
            i += 1
        else:
            return False
    return True


def _string(obj, name, ok):
    value = obj.get(name)
    if type(value) is not str or not ok(value):
        raise RuleError("manifest field `%s` breaks its rule" % name)
    return value


def _integer(obj, name, low, high):
    value = obj.get(name)
    if type(value) is not int or not low <= value <= high:  # not bool, not 1.0
        raise RuleError("manifest field `%s`: expected an integer literal from %d to %d" % (name, low, high))
    return value


def is_project(s):
    return _only(s.encode(), _ALNUM + b"._+-", 1, 31)


def is_chip(s):
    return _only(s.encode(), _DIGIT + _LOWER, 1, 15)


def is_channel(s):
    b = s.encode()
    return 1 <= len(b) <= 32 and b[0] in _DIGIT + _LOWER and _only(b[1:], _DIGIT + _LOWER + b"._-", 0, 31)


def is_device_id(s):
    return _only(s.encode(), _ALNUM + b"._:-", 1, 64)


def legacy_decimal(semver):
    """MAJOR.MINOR of semver as the exact decimal `version` must equal (MINOR 0 when absent)."""
    parts = semver.split(".")
    minor = parts[1] if len(parts) > 1 else "0"
    return Dec(int(parts[0] + minor), -len(minor))


class Manifest:
    """The required fields of a manifest that passed every rule."""

    def __init__(self, obj):
        if "version" not in obj or decimal_of(obj["version"]) is None:
            raise RuleError("manifest field `version`: expected a JSON number")
        self.file = _string(obj, "file", is_file_url)
        self.semver = _string(obj, "semver", lambda s: versions.parse(s) is not None)
        self.version = versions.parse(self.semver)
        if decimal_of(obj["version"]) != legacy_decimal(self.semver):
            raise RuleError("manifest field `version`: expected MAJOR.MINOR of semver")
        self.sha256 = bytes.fromhex(_string(obj, "sha256", lambda s: _only(s.encode(), _HEX_LOWER, 64, 64)))
        self.size = _integer(obj, "size", 1, MAX_U32)
        self.project = _string(obj, "project", is_project)
        self.chip = _string(obj, "chip", is_chip)
        self.secure_version = _integer(obj, "secure_version", 0, MAX_U32)
        self.channel = _string(obj, "channel", is_channel)
        self.manifest_version = _integer(obj, "manifest_version", 1, MAX_SAFE_INTEGER)
        self.issued_at = _integer(obj, "issued_at", 0, MAX_SAFE_INTEGER)
        self.expires = _integer(obj, "expires", 0, MAX_SAFE_INTEGER)
        if self.expires <= self.issued_at:
            raise RuleError("manifest field `expires`: expected a time after issued_at")
        self.key_id = _string(obj, "key_id", lambda s: _only(s.encode(), _HEX_LOWER, 16, 16))


def config_document(obj):
    """(device_id, revision, properties) of a config document that passed its field rules."""
    device_id = _string(obj, "device_id", is_device_id)
    revision = _integer(obj, "revision", 1, MAX_SAFE_INTEGER)
    props = obj.get("properties")
    if type(props) is not dict:
        raise RuleError("config field `properties`: expected an object")
    return device_id, revision, props
