"""The dashboard's admin login: the operator types the admin token once and gets a signed session
cookie (HttpOnly, SameSite=Strict, 12 h). Forms that change state carry a CSRF token bound to that
session. Both are HMACs keyed by the admin token, so rotating the token signs everyone out."""

from __future__ import annotations

import hashlib
import hmac
import re
import time

COOKIE = "otaml_session"
LIFETIME_S = 12 * 3600
_SESSION = re.compile(r"([0-9]{1,12})\.([0-9a-f]{64})")  # expiry (epoch seconds, ASCII digits) . HMAC


def _key(admin_token: str) -> bytes:
    return hashlib.sha256(b"otaml-dashboard\0" + admin_token.encode()).digest()


def _mac(admin_token: str, purpose: str, value: str) -> str:
    return hmac.new(_key(admin_token), f"{purpose}\0{value}".encode(), hashlib.sha256).hexdigest()


def new_session(admin_token: str, now: float | None = None) -> str:
    expires = str(int((now or time.time()) + LIFETIME_S))
    return f"{expires}.{_mac(admin_token, 'session', expires)}"


def valid_session(admin_token: str, cookie: str | None, now: float | None = None) -> bool:
    """Whether the cookie is a session this server signed and that has not expired. Anything else,
    however long or odd, is simply not a session."""
    m = _SESSION.fullmatch(cookie or "")
    if m is None or int(m.group(1)) < (now or time.time()):
        return False
    return hmac.compare_digest(m.group(2), _mac(admin_token, "session", m.group(1)))


def csrf_token(admin_token: str, cookie: str) -> str:
    return _mac(admin_token, "csrf", cookie)


def valid_csrf(admin_token: str, cookie: str | None, token: str | None) -> bool:
    return bool(cookie and token) and hmac.compare_digest(csrf_token(admin_token, cookie or ""), token or "")
