"""Strict JSON for signed documents: manifests/README.md, "Strict JSON" (rules J1-J6), rule for rule
what the device's firmware/core/src/otaml_json.c applies.

Why not ``json.loads``: it keeps the last of two equal member names (the device's old cJSON kept the
first), accepts NaN, lone surrogate escapes, ``\\u0000``, integers of any size and a BOM-less but
otherwise lenient grammar, and it recurses, so a deeply nested document raises RecursionError. This
reader is iterative, bounded (depth and value count are rules, not accidents) and can only raise
``StrictJSONError``.

Values come back as dict, list, str, int (integer literals), Decimal (literals with a fraction),
True, False and None.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from otaml.core.errors import ManifestError

MAX_DEPTH = 8  # J6: the top-level object is depth 1
MAX_TOKENS = 256  # J6: values (containers included) plus member names
MAX_NUMBER_CHARS = 32  # J5
MAX_SAFE_INTEGER = 2**53 - 1  # J5: integers a double (and JavaScript, and MicroPython floats) hold exactly

_WS = " \t\n\r"
_PLAIN = re.compile(r'[^"\\\x00-\x1f]+')
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_LITERALS = (("true", True), ("false", False), ("null", None))


class StrictJSONError(ManifestError):
    """The bytes break one of the strict JSON rules; the message names the rule."""


def loads(raw: bytes) -> dict[str, Any]:
    """Read one strict JSON object from ``raw``.

    Raises:
        StrictJSONError: naming the rule (J1-J6) and the character offset where it broke.
    """
    if raw.startswith(b"\xef\xbb\xbf"):
        raise StrictJSONError("strict JSON rule J1: a byte-order mark before the document")
    try:
        text = raw.decode("utf-8")  # strict: RFC 3629 (no overlongs, surrogates, or > U+10FFFF)
    except UnicodeDecodeError as e:
        raise StrictJSONError(f"strict JSON rule J1: not UTF-8 at byte {e.start} ({e.reason})") from None
    return _Reader(text).document()


class _Reader:
    def __init__(self, text: str):
        self.s = text
        self.i = 0
        self.tokens = 0

    def fail(self, rule: str, what: str) -> StrictJSONError:
        return StrictJSONError(f"strict JSON rule {rule}: {what} at character {self.i}")

    def ws(self) -> None:
        s, n = self.s, len(self.s)
        while self.i < n and s[self.i] in _WS:
            self.i += 1

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def count(self) -> None:
        self.tokens += 1
        if self.tokens > MAX_TOKENS:
            raise self.fail("J6", f"more than {MAX_TOKENS} values and member names")

    def document(self) -> dict[str, Any]:
        self.ws()
        if self.peek() != "{":
            raise self.fail("J2", "expected the top level to be an object")
        # One frame per open container: the container and, for objects, the name awaiting its value.
        stack: list[list[Any]] = []
        names: list[str] = []
        root: dict[str, Any] = {}
        state = "value"
        while True:
            self.ws()
            if state == "value":
                c = self.peek()
                if c in ("{", "["):
                    if len(stack) == MAX_DEPTH:
                        raise self.fail("J6", f"nesting deeper than {MAX_DEPTH}")
                    self.count()
                    new: Any = ({} if c == "{" else []) if stack else root
                    if stack:
                        self._attach(stack[-1], names, new)
                    stack.append(new)
                    names.append("")
                    self.i += 1
                    state = "first"
                    continue
                self._attach(stack[-1], names, self.scalar())
                state = "after"
                continue
            top = stack[-1]
            c = self.peek()
            if state in ("first", "name"):
                if isinstance(top, list):
                    if state == "first" and c == "]":
                        state = self._close(stack, names)
                    else:
                        state = "value"
                elif state == "first" and c == "}":
                    state = self._close(stack, names)
                else:
                    if c != '"':
                        raise self.fail("J2", "expected a member name")
                    name = self.string()
                    self.count()
                    if name in top:
                        raise self.fail("J4", f"duplicate member name {name[:40]!r}")
                    self.ws()
                    if self.peek() != ":":
                        raise self.fail("J2", "expected ':' after a member name")
                    self.i += 1
                    names[-1] = name
                    state = "value"
            else:  # after a value
                if c == ",":
                    self.i += 1
                    state = "name" if isinstance(top, dict) else "value"
                elif (c == "}" and isinstance(top, dict)) or (c == "]" and isinstance(top, list)):
                    state = self._close(stack, names)
                else:
                    raise self.fail("J2", "expected ',' or the end of the object or array")
            if state == "done":
                break
        self.ws()
        if self.i != len(self.s):
            raise self.fail("J2", "data after the JSON object")
        return root

    @staticmethod
    def _attach(top: Any, names: list[str], value: Any) -> None:
        if isinstance(top, dict):
            top[names[-1]] = value
        else:
            top.append(value)

    def _close(self, stack: list[Any], names: list[str]) -> str:
        self.i += 1
        stack.pop()
        names.pop()
        return "after" if stack else "done"

    def scalar(self) -> Any:
        c = self.peek()
        if c == '"':
            self.count()
            return self.string()
        if c == "-" or "0" <= c <= "9":
            self.count()
            return self.number()
        for word, value in _LITERALS:
            if self.s.startswith(word, self.i):
                self.count()
                self.i += len(word)
                return value
        raise self.fail("J2", "expected a value" if c else "unexpected end of the document")

    def number(self) -> int | Decimal:
        m = _NUMBER.match(self.s, self.i)
        if m is None:
            raise self.fail("J5", "not a JSON number")
        text = m.group()
        end = m.end()
        if end < len(self.s) and self.s[end] in "eE":
            raise self.fail("J5", "a number with an exponent")
        if end < len(self.s) and "0" <= self.s[end] <= "9":
            raise self.fail("J5", "a number with a leading zero")
        if end < len(self.s) and self.s[end] == ".":
            raise self.fail("J5", "a number ending in '.'")
        if len(text) > MAX_NUMBER_CHARS:
            raise self.fail("J5", f"a number of more than {MAX_NUMBER_CHARS} characters")
        if text[0] == "-" and not text.strip("-0."):
            raise self.fail("J5", "negative zero")
        self.i = end
        if "." in text:
            return Decimal(text)
        value = int(text)
        if abs(value) > MAX_SAFE_INTEGER:
            raise self.fail("J5", f"an integer beyond ±(2^53-1): {text}")
        return value

    def string(self) -> str:
        s, n = self.s, len(self.s)
        self.i += 1  # the opening quote
        parts: list[str] = []
        while True:
            m = _PLAIN.match(s, self.i)
            if m:
                parts.append(m.group())
                self.i = m.end()
            if self.i >= n:
                raise self.fail("J2", "unterminated string")
            c = s[self.i]
            if c == '"':
                self.i += 1
                return "".join(parts)
            if c != "\\":
                raise self.fail("J3", f"raw control character U+{ord(c):04X} in a string")
            esc = s[self.i + 1] if self.i + 1 < n else ""
            if esc and esc in _ESCAPES:
                parts.append(_ESCAPES[esc])
                self.i += 2
                continue
            if esc != "u":
                raise self.fail("J3", f"unknown escape \\{esc}")
            cp = self._hex4(self.i + 2)
            if cp == 0:
                raise self.fail("J3", "the escape \\u0000")
            if 0xDC00 <= cp <= 0xDFFF:
                raise self.fail("J3", "a low surrogate escape without a high one before it")
            if 0xD800 <= cp <= 0xDBFF:
                if s[self.i + 6 : self.i + 8] != "\\u":
                    raise self.fail("J3", "a high surrogate escape not followed by a low one")
                low = self._hex4(self.i + 8)
                if not 0xDC00 <= low <= 0xDFFF:
                    raise self.fail("J3", "a high surrogate escape not followed by a low one")
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
                self.i += 6
            parts.append(chr(cp))
            self.i += 6

    def _hex4(self, at: int) -> int:
        m = _HEX4.match(self.s, at)
        if m is None:
            raise self.fail("J3", "\\u not followed by 4 hex digits")
        return int(m.group(), 16)
