"""Rings are bands of a fixed per-device bucket, so a device's ring never changes: bucket =
sha256(device_id) % 10000 and ring i holds the buckets from rings[i-1] * 100 up to rings[i] * 100."""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence

BUCKETS = 10000


def bucket(device_id: str) -> int:
    return int.from_bytes(hashlib.sha256(device_id.encode()).digest()[:8], "big") % BUCKETS


def bound(rings: Sequence[int], stage: int) -> int:
    """Devices with a bucket below this are in rings 0..stage."""
    return rings[stage] * (BUCKETS // 100)


def matches(device_id: str, device_tags: Collection[str], tags: Collection[str], devices: Collection[str]) -> bool:
    """A rollout narrowed by tags takes devices carrying all of them; by a device list, only those."""
    if devices and device_id not in devices:
        return False
    return all(t in device_tags for t in tags)
