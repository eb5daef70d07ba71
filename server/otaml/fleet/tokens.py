"""Device tokens: random, shown once at enrollment, stored as SHA-256, compared in constant time.

The poll path checks a token against an in-memory map of device id to token hash; a miss loads the
device from the database once (so enrollments in another process are seen)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

from sqlalchemy.engine import Engine
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool

from otaml.models import Device


def new_token() -> str:
    return secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


UNKNOWN_TTL = 5.0  # seconds an unknown device id is answered from memory (no database query per poll)
_MAX_UNKNOWN = 10_000


class TokenCache:
    def __init__(self, engine: Engine):
        self._engine = engine
        self._lock = threading.Lock()
        self._hashes: dict[str, str] = {}
        self._unknown: dict[str, float] = {}  # device id -> monotonic time until which it is "not enrolled"

    async def verify(self, device_id: str, token: str | None) -> bool:
        """Whether token is this device's. The first check of a device in a process loads its hash
        (off the event loop); an id that is not enrolled is remembered briefly, so polls with made-up
        ids cannot turn into one query each."""
        if token is None:
            return False
        expected = self._hashes.get(device_id)
        if expected is None:
            if self._unknown.get(device_id, 0.0) > time.monotonic():
                return False
            expected = await run_in_threadpool(self._load, device_id)
        return expected is not None and tokens_equal(hash_token(token), expected)

    def _load(self, device_id: str) -> str | None:
        with Session(self._engine) as session:
            token_hash = session.exec(select(Device.token_hash).where(Device.device_id == device_id)).first()
        with self._lock:
            if token_hash is not None:
                self._hashes[device_id] = token_hash
            else:
                if len(self._unknown) >= _MAX_UNKNOWN:
                    self._unknown.clear()
                self._unknown[device_id] = time.monotonic() + UNKNOWN_TTL
        return token_hash

    def remember(self, device_id: str, token_hash: str) -> None:
        with self._lock:
            self._hashes[device_id] = token_hash
            self._unknown.pop(device_id, None)
