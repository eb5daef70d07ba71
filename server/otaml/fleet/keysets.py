"""Key sets on the poll path: a device that reports a key-set version older than the newest gets the
next one of the chain (one step per poll, each verifiable with the set it has), as two response
headers beside the manifest. Refilled from the database at most every ``ttl`` seconds, off the loop."""

from __future__ import annotations

import threading
import time

from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from otaml.core.types import INT64_MAX, parse_uint, shown
from otaml.fleet import protocol as p


class KeySetCache:
    def __init__(self, engine: Engine, ttl: float = 2.0):
        self._engine = engine
        self._ttl = ttl
        self._lock = threading.Lock()
        self._sets: list[tuple[int, str, str]] = []  # (version, document base64, signature), ascending
        self._loaded = -1e9

    def _load(self) -> None:
        from otaml.releases.keys import chain, document_b64

        with Session(self._engine) as session:
            sets = [(r.keyset_version, document_b64(r), r.signature) for r in chain(session)]
        with self._lock:
            self._sets = sets
            self._loaded = time.monotonic()

    def invalidate(self) -> None:
        self._loaded = -1e9

    async def headers(self, reported: str | None) -> dict[str, str]:
        """The next key set after the reported version, or nothing (no header: a device without key-set
        support). Raises ValueError for a malformed version."""
        if reported is None:
            return {}
        version = parse_uint(reported, INT64_MAX)
        if version is None:
            raise ValueError(f"{p.H_KEYSET_VERSION}: expected an integer from 0 to {INT64_MAX} in ASCII digits, got {shown(reported)}")
        if time.monotonic() - self._loaded > self._ttl:
            await run_in_threadpool(self._load)
        for v, doc, sig in self._sets:
            if v > version:
                return {p.H_KEYSET: doc, p.H_KEYSET_SIGNATURE: sig}
        return {}
