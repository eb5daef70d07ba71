"""Reading the fleet history (fleet/history.py writes it): time series for a range, for the whole fleet,
a channel, a release (channel and version) or one device. Every query reads a few hundred aggregate
rows through the (resolution, start, ...) unique index, so it costs the same at 100k devices as at 10.

Ranges: 1 h from minute buckets (60 points), 24 h and 7 d from hour buckets (24 and 168 points; hour
buckets count distinct devices per hour exactly). Device pages read the device's hours.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from sqlmodel import Session, select

from otaml.core.db import sum_int
from otaml.fleet import stored
from otaml.fleet.history import HOUR, MINUTE, NOT_A_CLASS, bucket_start, epoch
from otaml.models import DeviceHistory, HistoryBucket, HistoryClass, HistoryOutcome


class Range(StrEnum):
    HOUR = "1h"
    DAY = "24h"
    WEEK = "7d"


SPAN = {Range.HOUR: (MINUTE, 60), Range.DAY: (HOUR, 24), Range.WEEK: (HOUR, 168)}  # resolution, points


def axis(r: Range, now: datetime | None = None) -> tuple[int, list[int]]:
    """(resolution, bucket starts oldest first, ending with the current bucket)."""
    resolution, points = SPAN[r]
    last = bucket_start(epoch(now or datetime.now(UTC)), resolution)
    return resolution, [last - resolution * i for i in range(points - 1, -1, -1)]


@dataclass
class Series:
    """Values per bucket start, one list per named line (same length as ``starts``)."""

    resolution: int
    starts: list[int]
    lines: dict[str, list[float | None]] = field(default_factory=dict)

    def total(self, name: str) -> float:
        return sum(v or 0 for v in self.lines.get(name, []))


@dataclass
class FleetHistory:
    checkins: Series  # "polls"
    devices: Series  # "online" (fleet) or per version
    versions: Series  # devices per version
    latency: Series  # mean µs per version
    reboots: Series
    classes: Series  # predictions per class
    class_rates: Series  # share of predictions per class, 0..1
    outcomes: Series  # update events per kind (confirmed, rolled_back, rejected, download_failed)

    @property
    def empty(self) -> bool:
        return self.checkins.total("polls") == 0


def _index(starts: list[int]) -> dict[int, int]:
    return {s: i for i, s in enumerate(starts)}


def fleet_history(session: Session, r: Range, *, channel: str | None = None, version: str | None = None,
                  now: datetime | None = None, top_versions: int = 6) -> FleetHistory:
    resolution, starts = axis(r, now)
    at = _index(starts)
    n = len(starts)

    def where(model):  # type: ignore[no-untyped-def]
        conds = [model.resolution == resolution, model.start >= starts[0]]
        if channel is not None:
            conds.append(model.channel == channel)
        if version is not None:
            conds.append(model.version == version)
        return conds

    b = HistoryBucket
    rows = session.exec(  # type: ignore[call-overload]
        select(b.start, b.version, sum_int(b.checkins), sum_int(b.devices), sum_int(b.first_seen), sum_int(b.reboots),
               sum_int(b.latency_sum), sum_int(b.latency_n))
        .where(*where(b)).group_by(b.start, b.version)
    ).all()
    polls = [0.0] * n
    online = [0.0] * n
    reboots = [0.0] * n
    per_version: dict[str, list[float | None]] = defaultdict(lambda: [0.0] * n)
    lat_sum: dict[str, list[float]] = defaultdict(lambda: [0.0] * n)
    lat_n: dict[str, list[float]] = defaultdict(lambda: [0.0] * n)
    for start, ver, checkins, devices, first, boots, ls, ln in rows:
        i = at.get(start)
        if i is None:
            continue
        polls[i] += checkins or 0
        online[i] += first or 0
        reboots[i] += boots or 0
        name = ver or "unknown"
        per_version[name][i] = (per_version[name][i] or 0) + (devices or 0)
        lat_sum[name][i] += ls or 0
        lat_n[name][i] += ln or 0
    ranked = sorted(per_version, key=lambda v: -sum(x or 0 for x in per_version[v]))
    versions = {v: per_version[v] for v in ranked[:top_versions]}
    if len(ranked) > top_versions:
        versions["other"] = [sum((per_version[v][i] or 0) for v in ranked[top_versions:]) for i in range(n)]
    latency = {
        v: [lat_sum[v][i] / lat_n[v][i] if lat_n[v][i] else None for i in range(n)] for v in ranked[:top_versions] if sum(lat_n[v])
    }

    c = HistoryClass
    class_rows = session.exec(  # type: ignore[call-overload]
        select(c.start, c.label, sum_int(c.count)).where(*where(c)).group_by(c.start, c.label)
    ).all()
    classes: dict[str, list[float | None]] = defaultdict(lambda: [0.0] * n)
    for start, label, count in class_rows:
        i = at.get(start)
        if i is not None and label not in NOT_A_CLASS:
            classes[label][i] = (classes[label][i] or 0) + (count or 0)
    totals = [sum((classes[k][i] or 0) for k in classes) for i in range(n)]
    rates = {k: [(v or 0) / totals[i] if totals[i] else None for i, v in enumerate(vals)] for k, vals in classes.items()}

    o = HistoryOutcome
    out_rows = session.exec(  # type: ignore[call-overload]
        select(o.start, o.kind, sum_int(o.count)).where(*where(o)).group_by(o.start, o.kind)
    ).all()
    outcomes: dict[str, list[float | None]] = defaultdict(lambda: [0.0] * n)
    for start, kind, count in out_rows:
        i = at.get(start)
        if i is not None:
            outcomes[kind][i] = (outcomes[kind][i] or 0) + (count or 0)

    def s(lines: dict[str, list[float | None]]) -> Series:
        return Series(resolution, starts, dict(lines))

    return FleetHistory(
        checkins=s({"polls": list(polls)}), devices=s({"online": list(online)}), versions=s(versions), latency=s(latency),
        reboots=s({"restarts": list(reboots)}), classes=s(dict(sorted(classes.items()))),
        class_rates=s(dict(sorted(rates.items()))), outcomes=s(dict(sorted(outcomes.items()))),
    )


@dataclass
class DeviceTimeline:
    checkins: Series
    class_rates: Series
    latency: Series
    rssi: Series
    heap: Series
    reboots: Series

    @property
    def empty(self) -> bool:
        return self.checkins.total("check-ins") == 0


def device_history(session: Session, device_id: str, r: Range, now: datetime | None = None) -> DeviceTimeline:
    """One device's hours (24 h or 7 d; the 1 h range shows the current and previous hour)."""
    _, points = SPAN[r]
    hours = max(2, points if r != Range.HOUR else 2)
    last = bucket_start(epoch(now or datetime.now(UTC)), HOUR)
    starts = [last - HOUR * i for i in range(hours - 1, -1, -1)]
    at = _index(starts)
    n = len(starts)
    rows = session.exec(
        select(DeviceHistory).where(DeviceHistory.device_id == device_id, DeviceHistory.start >= starts[0])  # type: ignore[arg-type]
    ).all()
    checkins = [0.0] * n
    reboots = [0.0] * n
    latency: list[float | None] = [None] * n
    rssi: list[float | None] = [None] * n
    heap: list[float | None] = [None] * n
    min_heap: list[float | None] = [None] * n
    classes: dict[str, list[float]] = defaultdict(lambda: [0.0] * n)
    for row in rows:
        i = at.get(row.start)
        if i is None:
            continue
        checkins[i] = row.checkins
        reboots[i] = row.reboots
        latency[i] = row.latency_sum / row.latency_n if row.latency_n else None
        rssi[i] = row.rssi_sum / row.rssi_n if row.rssi_n else None
        heap[i] = row.free_heap_min
        min_heap[i] = row.min_free_heap
        for label, count in (stored.counts(row.ml_counts, "ml_counts") or {}).items():
            if label not in NOT_A_CLASS:
                classes[label][i] += count
    totals = [sum(classes[k][i] for k in classes) for i in range(n)]
    rates: dict[str, list[float | None]] = {
        k: [v / totals[i] if totals[i] else None for i, v in enumerate(vals)] for k, vals in sorted(classes.items())
    }

    def s(lines: dict[str, list[float | None]]) -> Series:
        return Series(HOUR, starts, lines)

    return DeviceTimeline(
        checkins=s({"check-ins": list(checkins)}), class_rates=s(rates), latency=s({"latency": latency}),
        rssi=s({"rssi": rssi}), heap=s({"free heap (lowest)": heap, "minimum free heap": min_heap}),
        reboots=s({"restarts": list(reboots)}),
    )
