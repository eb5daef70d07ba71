"""Immutable binaries held in memory for the download path: a blob never changes under its sha256, so a
cached copy cannot go stale. Bounded by total bytes, least recently used out first."""

from __future__ import annotations

import threading
from collections import OrderedDict

from otaml.storage.blobs import BlobStore

MAX_CACHED_BLOB = 4 * 1024 * 1024  # larger images stream from disk


class BlobCache:
    def __init__(self, store: BlobStore, capacity: int = 64 * 1024 * 1024):
        self._store = store
        self._capacity = capacity
        self._size = 0
        self._lock = threading.Lock()
        self._blobs: OrderedDict[str, bytes] = OrderedDict()

    def get(self, sha256: str) -> bytes | None:
        """The blob's bytes if it is small enough to cache (reads it once from disk), else None."""
        with self._lock:
            data = self._blobs.get(sha256)
            if data is not None:
                self._blobs.move_to_end(sha256)
                return data
        path = self._store.path_for(sha256)
        try:
            if path.stat().st_size > MAX_CACHED_BLOB:
                return None
            data = path.read_bytes()
        except OSError:
            return None
        with self._lock:
            if sha256 not in self._blobs:
                self._blobs[sha256] = data
                self._size += len(data)
                while self._size > self._capacity and self._blobs:
                    _, old = self._blobs.popitem(last=False)
                    self._size -= len(old)
        return data
