"""Device tokens: random, shown once at enrollment, stored as SHA-256, compared in constant time.

The poll path checks a token against an in-memory map of device id to its credentials (token hash,
status, a rotated token waiting to be handed over); a miss loads the device from the database once (so
enrollments in another process are seen). Revocations, rotations, acceptances and removals bump the
fleet's credentials revision; every process reads it at most every ``ttl`` seconds and, when it moved,
reads again every credential it holds, so a revoked token stops working everywhere within that time
(plus one database round trip).

That read is one query in the background per stale period, never one per poll: when the period runs
out, the poll that notices starts it and every poll goes on with the map it has. Only a map three
periods old (the database has not answered since) makes polls wait, and then all of them wait for the
same query. (Each poll awaiting its own query queued hundreds of them on the connection pool at 256
connections: the event loop sat idle for seconds.)"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import secrets
import threading
import time
from dataclasses import dataclass
from enum import Enum

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
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


_READ_CHUNK = 900  # ids per query: under every SQLite build's bound-parameter limit


def _read_credentials(session: Session, device_ids: list[str]) -> dict[str, Credential]:
    """The stored credentials of these devices (a removed one is absent)."""
    out: dict[str, Credential] = {}
    for i in range(0, len(device_ids), _READ_CHUNK):
        rows = session.exec(
            select(Device.device_id, Device.token_hash, DeviceCredentials.status, DeviceCredentials.pending_token)
            .outerjoin(DeviceCredentials, DeviceCredentials.device_id == Device.device_id)  # type: ignore[arg-type]
            .where(col(Device.device_id).in_(device_ids[i:i + _READ_CHUNK]))
        ).all()
        for device_id, token_hash, status, pending in rows:
            if token_hash is not None:
                out[device_id] = Credential(token_hash, status or DeviceStatus.ACTIVE, pending)
    return out


class TokenCache:
    def __init__(self, engine: Engine, ttl: float = 2.0):
        self._engine = engine
        self._ttl = ttl
        self._lock = threading.Lock()
        self._creds: dict[str, Credential] = {}
        self._unknown: dict[str, float] = {}  # device id -> monotonic time until which it is "not enrolled"
        self._revision = -1
        self._checked = 0.0
        self._syncing: asyncio.Future[None] | None = None  # the one revision read in flight
        self._touched: set[str] | None = None  # ids changed here while a revision read runs
        self._wanted: dict[str, asyncio.Future[Credential | None]] = {}  # misses waiting for _load_batches
        self._loader: asyncio.Task[None] | None = None

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
        age = time.monotonic() - self._checked
        if age > self._ttl:
            sync = self._sync_in_flight()
            if age > 3 * self._ttl:  # the background read has not succeeded: revocations may be missed
                await asyncio.shield(sync)
        cred = self._creds.get(device_id)
        if cred is None:
            if self._unknown.get(device_id, 0.0) > time.monotonic():
                return Verdict.WRONG, None
            cred = await self._loaded(device_id)
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

    def _sync_in_flight(self) -> asyncio.Future[None]:
        """The revision read running now, or a new one (one per event loop at a time)."""
        sync = self._syncing
        loop = asyncio.get_running_loop()
        if sync is None or sync.done() or sync.get_loop() is not loop:
            sync = self._syncing = loop.run_in_executor(None, self._sync)
            # A failed read is retried by the next stale poll; retrieve it so it is not logged as lost.
            sync.add_done_callback(lambda f: f.cancelled() or f.exception())
        return sync

    def _sync(self) -> None:
        """Read the credentials revision; when it moved, read again every credential this process holds,
        in a few queries (dropping the map instead made each of a large fleet's next polls a query of
        its own). A credential this process changed meanwhile (promote, remember, forget) is newer than
        what was read and is kept."""
        with self._lock:
            self._touched = set()
            held = list(self._creds)
        try:
            with Session(self._engine) as session:
                revision = session.exec(select(FleetRevision.credentials).where(FleetRevision.id == 1)).first() or 0
                fresh = None if revision == self._revision else _read_credentials(session, held)
            with self._lock:
                self._checked = time.monotonic()
                if fresh is not None:
                    for device_id in self._touched:
                        if device_id in self._creds:
                            fresh[device_id] = self._creds[device_id]
                        else:
                            fresh.pop(device_id, None)
                    self._revision = revision
                    self._creds = fresh
                    self._unknown.clear()
        finally:
            with self._lock:
                self._touched = None

    async def _loaded(self, device_id: str) -> Credential | None:
        """The stored credential of a device this process has not seen. Misses are read in batches,
        one query at a time per process: the polls of a fleet after a restart (or a flood of made-up
        ids) cost a query per few hundred devices, not one each, and never more than one connection."""
        loop = asyncio.get_running_loop()
        waiting = self._wanted.get(device_id)
        if waiting is None or waiting.get_loop() is not loop:
            waiting = self._wanted[device_id] = loop.create_future()
            if self._loader is None or self._loader.done() or self._loader.get_loop() is not loop:
                self._loader = loop.create_task(self._load_batches())
        return await asyncio.shield(waiting)

    async def _load_batches(self) -> None:
        await asyncio.sleep(0)  # the other polls of this turn of the loop add their ids first
        loop = asyncio.get_running_loop()
        while self._wanted:
            ids = list(itertools.islice(self._wanted, _READ_CHUNK))
            batch = {i: self._wanted.pop(i) for i in ids}
            try:
                found = await loop.run_in_executor(None, self._load, ids)
            except Exception as e:  # noqa: BLE001 - handed to the waiting polls: they fail, the next ones retry
                for waiting in batch.values():
                    if not waiting.done():
                        waiting.set_exception(e)
                continue
            for i, waiting in batch.items():
                if not waiting.done():
                    waiting.set_result(found.get(i))

    def _load(self, device_ids: list[str]) -> dict[str, Credential]:
        with Session(self._engine) as session:
            found = _read_credentials(session, device_ids)
        with self._lock:
            self._creds.update(found)
            now = time.monotonic()
            for device_id in device_ids:
                if device_id not in found:
                    if len(self._unknown) >= _MAX_UNKNOWN:
                        self._unknown.clear()
                    self._unknown[device_id] = now + UNKNOWN_TTL
        return found

    def remember(self, device_id: str, cred: Credential | str) -> None:
        with self._lock:
            if self._touched is not None:
                self._touched.add(device_id)
            self._creds[device_id] = Credential(cred) if isinstance(cred, str) else cred
            self._unknown.pop(device_id, None)

    def forget(self, device_id: str) -> None:
        with self._lock:
            if self._touched is not None:
                self._touched.add(device_id)
            self._creds.pop(device_id, None)
            self._unknown.pop(device_id, None)
