"""Strict JSON for signed documents (manifests/README.md, "Strict JSON", rules J1-J6), rule for rule
what the C core's otaml_json.c and the server's strictjson.py apply.

Why not MicroPython's json: it keeps one of two equal names silently, accepts NaN and lone surrogate
escapes, reads integers of any size and turns fractions into the platform's float (32-bit on an ESP32).
This reader works on the bytes, keeps no recursion (depth and value count are rules, not accidents)
and raises only JSONError. Values: dict, list, str, int (integer literals), Dec (literals with a
fraction, kept exact), True, False, None.

`lenient=True` reads trusted bytes (a model card inside a verified image): exponents and any number
of values are allowed there, and the nesting limit is 32.
"""

MAX_DEPTH = 8
MAX_TOKENS = 256
MAX_NUMBER_CHARS = 32
MAX_SAFE_INTEGER = 9007199254740991

_WS = b" \t\n\r"
_ESC = {0x22: 0x22, 0x5C: 0x5C, 0x2F: 0x2F, 0x62: 8, 0x66: 12, 0x6E: 10, 0x72: 13, 0x74: 9}


class JSONError(ValueError):
    pass


class Dec:
    """An exact decimal m * 10**e (normalized: no trailing zeros in m)."""

    def __init__(self, m, e):
        while m and m % 10 == 0:
            m //= 10
            e += 1
        if m == 0:
            e = 0
        self.m = m
        self.e = e

    def __eq__(self, other):
        return isinstance(other, Dec) and self.m == other.m and self.e == other.e

    def __repr__(self):
        return "Dec(%d, %d)" % (self.m, self.e)


def decimal_of(value):
    """The exact Dec of an int or a Dec (None for anything else)."""
    if type(value) is int:
        return Dec(value, 0)
    return value if isinstance(value, Dec) else None


def check_utf8(raw):
    """RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF, no stray continuation bytes."""
    n = len(raw)
    if n == 0 or max(raw) < 0x80:
        return True
    i = 0
    while i < n:
        c = raw[i]
        if c < 0x80:
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            need, lo, hi = 1, 0x80, 0xBF
        elif c == 0xE0:
            need, lo, hi = 2, 0xA0, 0xBF
        elif 0xE1 <= c <= 0xEC or 0xEE <= c <= 0xEF:
            need, lo, hi = 2, 0x80, 0xBF
        elif c == 0xED:
            need, lo, hi = 2, 0x80, 0x9F
        elif c == 0xF0:
            need, lo, hi = 3, 0x90, 0xBF
        elif 0xF1 <= c <= 0xF3:
            need, lo, hi = 3, 0x80, 0xBF
        elif c == 0xF4:
            need, lo, hi = 3, 0x80, 0x8F
        else:
            return False
        if i + need >= n:
            return False
        if not lo <= raw[i + 1] <= hi:
            return False
        for k in range(2, need + 1):
            if not 0x80 <= raw[i + k] <= 0xBF:
                return False
        i += need + 1
    return True


class _Reader:
    def __init__(self, raw, lenient):
        self.s = raw
        self.n = len(raw)
        self.i = 0
        self.tokens = 0
        self.lenient = lenient
        self.max_depth = 32 if lenient else MAX_DEPTH

    def fail(self, rule, what):
        return JSONError("strict JSON rule %s: %s at byte %d" % (rule, what, self.i))

    def ws(self):
        s = self.s
        while self.i < self.n and s[self.i] in _WS:
            self.i += 1

    def count(self):
        self.tokens += 1
        if self.tokens > MAX_TOKENS and not self.lenient:
            raise self.fail("J6", "more than %d values and member names" % MAX_TOKENS)

    def document(self):
        self.ws()
        if self.i >= self.n or self.s[self.i] != 0x7B:
            raise self.fail("J2", "expected the top level to be an object")
        stack = []
        names = []
        root = {}
        state = 0  # 0 value, 1 first, 2 name, 3 after
        while True:
            self.ws()
            c = self.s[self.i] if self.i < self.n else -1
            if state == 0:
                if c == 0x7B or c == 0x5B:
                    if len(stack) == self.max_depth:
                        raise self.fail("J6", "nesting deeper than %d" % self.max_depth)
                    self.count()
                    new = ({} if c == 0x7B else []) if stack else root
                    if stack:
                        self._attach(stack[-1], names, new)
                    stack.append(new)
                    names.append("")
                    self.i += 1
                    state = 1
                    continue
                self._attach(stack[-1], names, self.scalar(c))
                state = 3
                continue
            top = stack[-1]
            is_dict = isinstance(top, dict)
            if state == 1 or state == 2:
                if not is_dict:
                    if state == 1 and c == 0x5D:
                        state = self._close(stack, names)
                    else:
                        state = 0
                elif state == 1 and c == 0x7D:
                    state = self._close(stack, names)
                else:
                    if c != 0x22:
                        raise self.fail("J2", "expected a member name")
                    name = self.string()
                    self.count()
                    if name in top:
                        raise self.fail("J4", "duplicate member name")
                    self.ws()
                    if self.i >= self.n or self.s[self.i] != 0x3A:
                        raise self.fail("J2", "expected ':' after a member name")
                    self.i += 1
                    names[-1] = name
                    state = 0
            else:
                if c == 0x2C:
                    self.i += 1
                    state = 2 if is_dict else 0
                elif (c == 0x7D and is_dict) or (c == 0x5D and not is_dict):
                    state = self._close(stack, names)
                else:
                    raise self.fail("J2", "expected ',' or the end of the object or array")
            if state == 4:
                break
        self.ws()
        if self.i != self.n:
            raise self.fail("J2", "data after the JSON object")
        return root

    @staticmethod
    def _attach(top, names, value):
        if isinstance(top, dict):
            top[names[-1]] = value
        else:
            top.append(value)

    def _close(self, stack, names):
        self.i += 1
        stack.pop()
        names.pop()
        return 3 if stack else 4

    def scalar(self, c):
        if c == 0x22:
            self.count()
            return self.string()
        if c == 0x2D or 0x30 <= c <= 0x39:
            self.count()
            return self.number()
        for word, value in ((b"true", True), (b"false", False), (b"null", None)):
            if self.s[self.i:self.i + len(word)] == word:
                self.count()
                self.i += len(word)
                return value
        raise self.fail("J2", "expected a value" if c >= 0 else "unexpected end of the document")

    def _digits(self):
        s = self.s
        start = self.i
        while self.i < self.n and 0x30 <= s[self.i] <= 0x39:
            self.i += 1
        return self.i - start

    def number(self):
        s = self.s
        start = self.i
        neg = s[self.i] == 0x2D
        if neg:
            self.i += 1
        int_start = self.i
        nd = self._digits()
        if nd == 0:
            raise self.fail("J5", "not a JSON number")
        if nd > 1 and s[int_start] == 0x30:
            raise self.fail("J5", "a number with a leading zero")
        frac = b""
        if self.i < self.n and s[self.i] == 0x2E:
            self.i += 1
            f_start = self.i
            if self._digits() == 0:
                raise self.fail("J5", "a number ending in '.'")
            frac = s[f_start:self.i]
        exp = 0
        if self.i < self.n and s[self.i] in b"eE":
            if not self.lenient:
                raise self.fail("J5", "a number with an exponent")
            self.i += 1
            eneg = self.i < self.n and s[self.i] == 0x2D
            if self.i < self.n and s[self.i] in b"+-":
                self.i += 1
            e_start = self.i
            if self._digits() == 0 or self.i - e_start > 4:
                raise self.fail("J5", "a bad exponent")
            exp = int(s[e_start:self.i])
            if eneg:
                exp = -exp
        if self.i - start > MAX_NUMBER_CHARS and not self.lenient:
            raise self.fail("J5", "a number of more than %d characters" % MAX_NUMBER_CHARS)
        mant = int(s[int_start:int_start + nd] + frac)
        if neg and mant == 0:
            raise self.fail("J5", "negative zero")
        if neg:
            mant = -mant
        if not frac and not exp:
            if not self.lenient and (mant > MAX_SAFE_INTEGER or mant < -MAX_SAFE_INTEGER):
                raise self.fail("J5", "an integer beyond +-(2^53-1)")
            return mant
        return Dec(mant, exp - len(frac))

    def _hex4(self, at):
        h = self.s[at:at + 4]
        if len(h) != 4:
            raise self.fail("J3", "\\u not followed by 4 hex digits")
        for ch in h:
            if not (0x30 <= ch <= 0x39 or 0x41 <= ch <= 0x46 or 0x61 <= ch <= 0x66):
                raise self.fail("J3", "\\u not followed by 4 hex digits")
        return int(h, 16)

    def string(self):
        s = self.s
        n = self.n
        self.i += 1
        out = bytearray()
        while True:
            start = self.i
            while self.i < n:
                ch = s[self.i]
                if ch == 0x22 or ch == 0x5C or ch < 0x20:
                    break
                self.i += 1
            out.extend(s[start:self.i])
            if self.i >= n:
                raise self.fail("J2", "unterminated string")
            ch = s[self.i]
            if ch == 0x22:
                self.i += 1
                return out.decode()
            if ch != 0x5C:
                raise self.fail("J3", "a raw control character in a string")
            esc = s[self.i + 1] if self.i + 1 < n else -1
            if esc in _ESC:
                out.append(_ESC[esc])
                self.i += 2
                continue
            if esc != 0x75:
                raise self.fail("J3", "an unknown escape")
            cp = self._hex4(self.i + 2)
            if cp == 0:
                raise self.fail("J3", "the escape \\u0000")
            if 0xDC00 <= cp <= 0xDFFF:
                raise self.fail("J3", "a low surrogate escape without a high one before it")
            if 0xD800 <= cp <= 0xDBFF:
                if s[self.i + 6:self.i + 8] != b"\\u":
                    raise self.fail("J3", "a high surrogate escape not followed by a low one")
                low = self._hex4(self.i + 8)
                if not 0xDC00 <= low <= 0xDFFF:
                    raise self.fail("J3", "a high surrogate escape not followed by a low one")
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
                self.i += 6
            out.extend(chr(cp).encode())
            self.i += 6


def loads(raw, lenient=False):
    """One JSON object from bytes. Raises JSONError naming the rule (J1-J6) it broke."""
    if isinstance(raw, str):
        raw = raw.encode()
    if raw[:3] == b"\xef\xbb\xbf":
        raise JSONError("strict JSON rule J1: a byte-order mark before the document")
    if not check_utf8(raw):
        raise JSONError("strict JSON rule J1: not UTF-8")
    return _Reader(raw, lenient).document()
