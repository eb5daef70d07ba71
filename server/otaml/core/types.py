"""Constrained value types: one per kind of value that can reach the database, each checked against
the column it lands in (length, charset, integer range as the column is declared on PostgreSQL).

Every model, path, query and header that accepts such a value uses the type here, so a limit is
written once. Text rules match the whole value (``re.fullmatch``: never a ``$`` that admits a trailing
newline), digits are ASCII only (``str.isdigit`` accepts ``²``), and no text holds NUL or another
control character (PostgreSQL refuses NUL; SQLite stores it and every reader then trips on it).

The poll path does not go through pydantic (it is the hottest request): it calls ``Rule.ok`` and
``parse_uint`` directly, so both ways share one definition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated

from pydantic import AfterValidator, Field, WithJsonSchema

INT32_MAX = 2**31 - 1  # sa.Integer on PostgreSQL
UINT32_MAX = 2**32 - 1  # a uint32_t on the device (secure_version), stored in a BigInteger column
INT64_MAX = 2**63 - 1  # sa.BigInteger on PostgreSQL (SQLite's INTEGER)


@dataclass(frozen=True)
class Rule:
    """A text rule: ``pattern`` must match the whole value (ASCII classes only)."""

    pattern: str
    expected: str  # "1 to 64 of A-Z a-z 0-9 . _ : -", for messages
    max_length: int

    def ok(self, value: object) -> bool:
        return isinstance(value, str) and len(value) <= self.max_length and self._fullmatch(value) is not None

    @cached_property
    def _fullmatch(self):  # type: ignore[no-untyped-def]  # compiled once: the poll path checks ids on every request
        return re.compile(self.pattern).fullmatch

    def check(self, value: str) -> str:
        if not self.ok(value):
            raise ValueError(f"expected {self.expected}, got {shown(value)}")
        return value

    @property
    def type(self):  # type: ignore[no-untyped-def]
        # JSON Schema patterns are ECMA-262, where `$` without the m flag is the very end of the value:
        # the published schema says the same as the fullmatch above.
        schema = {"type": "string", "pattern": f"^(?:{self.pattern})$", "maxLength": self.max_length}
        return Annotated[str, AfterValidator(self.check), WithJsonSchema(schema)]


class VersionRule(Rule):
    def ok(self, value: object) -> bool:
        # Each component fits the firmware's uint16_t.
        return super().ok(value) and all(int(p) <= 65535 for p in str(value).split("."))


def shown(value: object, limit: int = 40) -> str:
    """A value for an error message: repr, cut to ``limit`` characters (never the whole input)."""
    text = repr(value[:limit] if isinstance(value, str) else value)
    return text if len(text) <= limit + 2 else text[: limit + 2] + "..."


_VERSION = r"(0|[1-9][0-9]{0,4})(\.(0|[1-9][0-9]{0,4})){0,2}"

DEVICE_ID = Rule(r"[A-Za-z0-9._:-]{1,64}", "a device id of 1 to 64 of A-Z a-z 0-9 . _ : -", 64)
DEVICE_ID_PREFIX = Rule(r"[A-Za-z0-9._:-]{0,64}", "a device id prefix of up to 64 of A-Z a-z 0-9 . _ : -", 64)
TAG = Rule(r"[a-z0-9._:-]{1,32}", "a tag of 1 to 32 of a-z 0-9 . _ : -", 32)
CHANNEL = Rule(r"[a-z0-9][a-z0-9._-]{0,31}", "a channel of 1 to 32 of a-z 0-9 . _ - (starting with a letter or digit)", 32)
VERSION = VersionRule(_VERSION, "a version of 1 to 3 dot-separated numbers (0 to 65535, no leading zeros), like 1.2 or 1.2.3", 17)
FILENAME = Rule(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", "a plain file name of letters, digits, . _ - (at most 128)", 128)
# A device or claim token (what tokens.new_token makes, or a claiming device chooses): base64url.
DEVICE_TOKEN = Rule(r"[A-Za-z0-9_-]{16,64}", "a token of 16 to 64 of A-Z a-z 0-9 _ -", 64)
KEY_ID = Rule(r"[0-9a-f]{16}", "a key id of 16 lowercase hex digits", 16)
SHA256 = Rule(r"[0-9a-f]{64}", "64 lowercase hex digits", 64)
# What a device reports about itself (esp_app_desc_t strings, partition labels): printable ASCII.
REPORTED_VERSION = Rule(r"[\x20-\x7e]{1,32}", "1 to 32 printable ASCII characters", 32)


def printable(max_length: int, what: str = "text"):  # type: ignore[no-untyped-def]
    """Free text (any printable Unicode: no NUL, control, surrogate or unassigned character)."""

    def check(v: str) -> str:
        if len(v) > max_length or not v.isprintable():
            raise ValueError(f"expected printable {what} of at most {max_length} characters, got {shown(v)}")
        return v

    return Annotated[str, AfterValidator(check), WithJsonSchema({"type": "string", "maxLength": max_length})]


def parse_uint(text: str, high: int) -> int | None:
    """ASCII decimal digits for 0..high, or None. Never calls int() on more digits than ``high`` has,
    so thousands of digits cost nothing and raise nothing."""
    if not 0 < len(text) <= len(str(high)) or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= high else None


def parse_int(text: str, low: int, high: int) -> int | None:
    """An optional minus sign and ASCII decimal digits for low..high, or None (as parse_uint)."""
    digits = text[1:] if text.startswith("-") else text
    magnitude = parse_uint(digits, max(abs(low), abs(high)))
    if magnitude is None:
        return None
    value = -magnitude if text.startswith("-") else magnitude
    return value if low <= value <= high else None


DeviceId = DEVICE_ID.type
DeviceIdPrefix = DEVICE_ID_PREFIX.type
DeviceToken = DEVICE_TOKEN.type
KeyId = KEY_ID.type
Tag = TAG.type
Channel = CHANNEL.type
VersionText = VERSION.type
Filename = FILENAME.type
ReportedVersion = REPORTED_VERSION.type
Detail = printable(256, "detail")
Reason = printable(256, "reason")

Int32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
Int64 = Annotated[int, Field(ge=0, le=INT64_MAX)]
RowId = Annotated[int, Field(ge=1, le=INT32_MAX, description="a row id (32-bit on PostgreSQL)")]
Seconds = Annotated[int, Field(ge=0, le=100 * 365 * 86400, description="seconds (at most 100 years)")]
