"""Device tokens: random, shown once at enrollment, stored as SHA-256, compared in constant time.

The poll path checks a token against an in-memory map of device id to token hash; a miss loads the
device from the database once (so enrollments in another process are seen)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from otaml.models import Device


def new_token() -> str:
    return secrets.token_urlsafe(24)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


class TokenCache:
    def __init__(self, engine: Engine):
        self._engine = engine
        self._lock = threading.Lock()
        self._hashes: dict[str, str] = {}

    def cached(self, device_id: str) -> str | None:
        return self._hashes.get(device_id)

    def load(self, device_id: str) -> str | None:
        """Look the device up in the database (call off the event loop)."""
        with Session(self._engine) as session:
            token_hash = session.exec(select(Device.token_hash).where(Device.device_id == device_id)).first()
        if token_hash is not None:
            with self._lock:
                self._hashes[device_id] = token_hash
        return token_hash

    def remember(self, device_id: str, token_hash: str) -> None:
        with self._lock:
            self._hashes[device_id] = token_hash
