"""Device tokens: random, shown once at enrollment, stored as SHA-256, compared in constant time.

The poll path checks a token against an in-memory map of device id to its credentials (token hash,
status, a rotated token waiting to be handed over); a miss loads the device from the database once (so
enrollments in another process are seen). Revocations, rotations, acceptances and removals bump the
fleet's credentials revision; every process reads it at most every ``ttl`` seconds and forgets what it
cached when it moved, so a revoked token stops working everywhere within that time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time

from sqlalchemy.engine import Engine
from dataclasses import dataclass
from enum import Enum

from sqlalchemy import update
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool

from otaml.models import Device, DeviceCredentials, DeviceStatus, FleetRevision, utcnow


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


def bump_credentials(session: Session) -> None:
    """Mark device credentials changed; part of the caller's transaction."""
    session.exec(update(FleetRevision).where(FleetRevision.id == 1).values(credentials=FleetRevision.credentials + 1))  # type: ignore[call-overload, arg-type]


@dataclass(frozen=True)
class Credential:
    token_hash: str
    status: str = DeviceStatus.ACTIVE
    pending_token: str | None = None  # a rotated token, in clear until the device has used it

    @property
    def pending_hash(self) -> str | None:
        return hash_token(self.pending_token) if self.pending_token else None


class Verdict(Enum):
    OK = "ok"
    PROMOTE = "promote"  # the rotated token, used for the first time: it replaces the old one
    WRONG = "wrong"  # unknown device, wrong token, or revoked
    PENDING = "pending"  # claimed, not yet accepted


class TokenCache:
    def __init__(self, engine: Engine, ttl: float = 2.0):
        self._engine = engine
        self._ttl = ttl
        self._lock = threading.Lock()
        self._creds: dict[str, Credential] = {}
        self._unknown: dict[str, float] = {}  # device id -> monotonic time until which it is "not enrolled"
        self._revision = -1
        self._checked = 0.0

    async def verify(self, device_id: str, token: str | None) -> bool:
        """Whether token is this active device's (events and other device requests)."""
        verdict, _ = await self.check(device_id, token)
        if verdict is Verdict.PROMOTE:
            await run_in_threadpool(self.promote, device_id)
        return verdict in (Verdict.OK, Verdict.PROMOTE)

    async def check(self, device_id: str, token: str | None) -> tuple[Verdict, str | None]:
        """The verdict on a device's token, and a rotated token to hand over (only when the device
        authenticated with its current token). The first check of a device in a process loads it (off
        the event loop); an id that is not enrolled is remembered briefly, so polls with made-up ids
        cannot turn into one query each."""
        if token is None:
            return Verdict.WRONG, None
        if time.monotonic() - self._checked > self._ttl:
            await run_in_threadpool(self._sync)
        cred = self._creds.get(device_id)
        if cred is None:
            if self._unknown.get(device_id, 0.0) > time.monotonic():
                return Verdict.WRONG, None
            cred = await run_in_threadpool(self._load, device_id)
        if cred is None or cred.status == DeviceStatus.REVOKED:
            return Verdict.WRONG, None
        presented = hash_token(token)
        if tokens_equal(presented, cred.token_hash):
            if cred.status == DeviceStatus.PENDING:
                return Verdict.PENDING, None
            return Verdict.OK, cred.pending_token
        pending = cred.pending_hash
        if pending is not None and tokens_equal(presented, pending) and cred.status == DeviceStatus.ACTIVE:
            return Verdict.PROMOTE, None
        return Verdict.WRONG, None

    def promote(self, device_id: str) -> None:
        """The device used its rotated token: from now on only that one works (in every process, once
        their caches follow the credentials revision)."""
        cred = self._creds.get(device_id)
        if cred is None or cred.pending_token is None:
            return
        new_hash = hash_token(cred.pending_token)
        with Session(self._engine) as session:
            session.exec(update(Device).where(Device.device_id == device_id).values(token_hash=new_hash))  # type: ignore[call-overload, arg-type]
            session.exec(
                update(DeviceCredentials)  # type: ignore[call-overload]
                .where(DeviceCredentials.device_id == device_id, DeviceCredentials.pending_token == cred.pending_token)  # type: ignore[arg-type]
                .values(pending_token=None, updated_at=utcnow())
            )
            bump_credentials(session)
            session.commit()
        self.remember(device_id, Credential(new_hash, cred.status))

    def _sync(self) -> None:
        with Session(self._engine) as session:
            revision = session.exec(select(FleetRevision.credentials).where(FleetRevision.id == 1)).first() or 0
        with self._lock:
            self._checked = time.monotonic()
            if revision != self._revision:
                self._revision = revision
                self._creds.clear()
                self._unknown.clear()

    def _load(self, device_id: str) -> Credential | None:
        with Session(self._engine) as session:
            token_hash = session.exec(select(Device.token_hash).where(Device.device_id == device_id)).first()
            row = session.get(DeviceCredentials, device_id) if token_hash is not None else None
        cred = None
        if token_hash is not None:
            cred = Credential(token_hash, row.status, row.pending_token) if row else Credential(token_hash)
        with self._lock:
            if cred is not None:
                self._creds[device_id] = cred
            else:
                if len(self._unknown) >= _MAX_UNKNOWN:
                    self._unknown.clear()
                self._unknown[device_id] = time.monotonic() + UNKNOWN_TTL
        return cred

    def remember(self, device_id: str, cred: Credential | str) -> None:
        with self._lock:
            self._creds[device_id] = Credential(cred) if isinstance(cred, str) else cred
            self._unknown.pop(device_id, None)

    def forget(self, device_id: str) -> None:
        with self._lock:
            self._creds.pop(device_id, None)
            self._unknown.pop(device_id, None)
