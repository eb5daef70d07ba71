"""What a manifest poll is answered with, cached in memory: polls are the hottest path and must not
touch the database. Entries expire after ``ttl`` seconds so several server processes sharing one
database converge on a new publish without talking to each other; a publish in this process
invalidates at once."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session

from otaml.models import Manifest
from otaml.releases.publishing import current_manifest


@dataclass(frozen=True)
class ServedManifest:
    body: bytes
    signature: str
    key_id: str
    etag: str
    manifest_version: int


def served(m: Manifest) -> ServedManifest:
    etag = '"' + hashlib.sha256(m.body).hexdigest()[:32] + '"'
    return ServedManifest(m.body, m.signature, m.key_id, etag, m.manifest_version)


class ManifestCache:
    def __init__(self, engine: Engine, ttl: float = 2.0):
        self._engine = engine
        self._ttl = ttl
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, ServedManifest | None]] = {}

    def get(self, channel: str) -> ServedManifest | None:
        """The channel's current manifest, or None if nothing is published there. May hit the database
        (once per channel per ttl): call it from a worker thread."""
        now = time.monotonic()
        hit = self._entries.get(channel)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        with Session(self._engine) as session:
            m = current_manifest(session, channel)
            entry = served(m) if m is not None else None
        with self._lock:
            self._entries[channel] = (now, entry)
        return entry

    def peek(self, channel: str) -> ServedManifest | None | bool:
        """The cached entry if fresh, else False (caller must ``get`` off the event loop)."""
        hit = self._entries.get(channel)
        if hit is not None and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        return False

    def invalidate(self, channel: str | None = None) -> None:
        with self._lock:
            if channel is None:
                self._entries.clear()
            else:
                self._entries.pop(channel, None)
