"""Rings are bands of a fixed per-device bucket, so a device's ring never changes once its rollout has
reached it.

bucket = the first 8 bytes of sha256(device id), read as a big-endian unsigned integer, mod 10000.
Ring i of a rollout nominally holds the buckets from rings[i-1] x 100 up to rings[i] x 100. On a small
fleet a nominal band may hold nobody (1 % of 12 devices is no one), so when a rollout enters a ring
its bound is widened, if needed, to take in the next matching device: the first ring offered is never
empty (the canary is at least one device), and every later ring adds at least one device while any
remain. Bounds only ever grow, and the ones a rollout reached are stored with it (``Rollout.bounds``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence

BUCKETS = 10000


def bucket(device_id: str) -> int:
    return int.from_bytes(hashlib.sha256(device_id.encode()).digest()[:8], "big") % BUCKETS


def nominal_bound(rings: Sequence[int], stage: int) -> int:
    """Devices with a bucket below this are in rings 0..stage by the percentages alone."""
    return rings[stage] * (BUCKETS // 100)


def entry_bound(rings: Sequence[int], stage: int, previous: int, first_new: int | None) -> int:
    """The bound of ring ``stage`` as the rollout enters it: its nominal band (never below the previous
    ring's bound), widened to take in ``first_new``, the lowest bucket of a matching device not in an
    earlier ring (None when every matching device is already in one)."""
    bound = max(nominal_bound(rings, stage), previous)
    if first_new is not None:
        bound = max(bound, first_new + 1)
    return min(bound, BUCKETS)


def bounds_for(rings: Sequence[int], reached: Sequence[int]) -> list[int]:
    """Every ring's bound: the stored ones for the rings a rollout reached, the nominal ones (kept
    monotonic) for the rest."""
    out: list[int] = []
    for i in range(len(rings)):
        b = reached[i] if i < len(reached) else nominal_bound(rings, i)
        out.append(max(b, out[-1]) if out else b)
    return out


def matches(device_id: str, device_tags: Collection[str], tags: Collection[str], devices: Collection[str]) -> bool:
    """A rollout narrowed by tags takes devices carrying all of them; by a device list, only those."""
    if devices and device_id not in devices:
        return False
    return all(t in device_tags for t in tags)
