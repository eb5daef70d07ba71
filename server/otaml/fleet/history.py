"""Fleet history as aggregates, written by the check-in flush and by update events.

Nothing here runs on the poll path: a poll only counts itself (CheckinBuffer.record). The flush that
writes a batch of check-ins reads, in the same transaction and with the device rows locked, what each
device reported before (last_seen, version, ML counters, uptime), and adds to

- ``history_bucket``: per minute and per hour, per channel and version: polls, distinct devices,
  devices first seen in the bucket, restarts, inference latency (sum and count);
- ``history_class``: predictions per class, from the deltas of the devices' lifetime ML counters. A
  device's counters restart at boot: when its uptime went back, a counter went down or its version
  changed, the new values are the delta (everything it counted since that boot);
- ``device_history``: one row per device and hour (a heartbeat: check-ins, predictions, latency,
  signal, heap).

Several server processes on one database never count a check-in twice: each process adds only what it
flushed (the SQL upserts add), and a device's previous report is read under its row lock, so two
flushes of one device's check-ins are serialized and each computes its delta against the other's
result. A report older than the stored one (it reached another process later) adds its polls and
nothing else: its counters are already inside the newer report. Locks are taken in one order (device
rows sorted by id, then buckets sorted by key), so concurrent flushes cannot deadlock.

Minute buckets are kept ``history_minute_retention`` hours; hour buckets (written alongside, not rolled
up afterwards, so distinct-device counts per hour stay exact and no rollup can race another process)
``history_hour_retention`` days; device hours ``device_history_retention`` days.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, and_, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from otaml.fleet import stored
from otaml.models import AuditEntry, Device, DeviceHistory, HistoryBucket, HistoryClass, HistoryOutcome, WebhookDelivery

if TYPE_CHECKING:
    from otaml.fleet.checkins import Checkin

MINUTE, HOUR = 60, 3600
RESOLUTIONS = (MINUTE, HOUR)
CHUNK = 500  # ids per IN (...) list
NOT_A_CLASS = frozenset({"alerts"})  # a counter the ML task adds that is not a class of the model

BUCKET: Table = HistoryBucket.__table__  # type: ignore[attr-defined]
CLASS: Table = HistoryClass.__table__  # type: ignore[attr-defined]
OUTCOME: Table = HistoryOutcome.__table__  # type: ignore[attr-defined]
DEVICE_HOUR: Table = DeviceHistory.__table__  # type: ignore[attr-defined]
DEVICE: Table = Device.__table__  # type: ignore[attr-defined]


def epoch(t: datetime) -> int:
    return int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp())


def bucket_start(ts: int, resolution: int) -> int:
    return ts - ts % resolution


@dataclass(frozen=True)
class Prior:
    """What a device had reported before this flush."""

    last_seen: int | None
    version: str | None
    channel: str | None
    ml_counters: str | None
    uptime_s: int | None


@dataclass
class _Bucket:
    checkins: int = 0
    devices: int = 0
    first_seen: int = 0
    reboots: int = 0
    latency_sum: int = 0
    latency_n: int = 0


@dataclass
class _DeviceHour:
    version: str = ""
    checkins: int = 0
    reboots: int = 0
    ml: dict[str, int] = field(default_factory=dict)
    latency_sum: int = 0
    latency_n: int = 0
    rssi_sum: int = 0
    rssi_n: int = 0
    rssi_min: int | None = None
    free_heap_min: int | None = None
    min_free_heap: int | None = None


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def lock_prior(conn: Connection, device_ids: Sequence[str]) -> dict[str, Prior]:
    """The stored reports of these devices, their rows locked until the transaction ends (PostgreSQL;
    on SQLite the flush holds the database's write lock from its first statement)."""
    prior: dict[str, Prior] = {}
    ids = sorted(set(device_ids))
    cols = [DEVICE.c.device_id, DEVICE.c.last_seen, DEVICE.c.version, DEVICE.c.channel, DEVICE.c.ml_counters, DEVICE.c.uptime_s]
    for i in range(0, len(ids), CHUNK):
        chunk = ids[i : i + CHUNK]
        stmt = select(*cols).where(DEVICE.c.device_id.in_(chunk)).order_by(DEVICE.c.device_id).with_for_update()
        for device_id, last_seen, version, channel, counters, uptime in conn.execute(stmt):
            prior[device_id] = Prior(epoch(last_seen) if last_seen else None, version, channel, counters, uptime)
    return prior


def ml_delta(new: dict[str, int], old: dict[str, int] | None, restarted: bool) -> tuple[dict[str, int], bool]:
    """Predictions since the previous report, and whether the counters show a restart. Lifetime counters
    start again at boot: after a restart (or when any counter went down) the new values are the delta."""
    if old is None:
        return dict(new), False
    went_down = any(new.get(k, 0) < v for k, v in old.items())
    if restarted or went_down:
        return dict(new), went_down
    return {k: v - old.get(k, 0) for k, v in new.items() if v - old.get(k, 0) > 0}, False


def record_checkins(conn: Connection, items: Iterable[Checkin], prior: dict[str, Prior],
                    polls: dict[str, int]) -> dict[str, tuple[dict[str, int], bool]]:
    """Add a flushed batch to the history tables (same transaction as the device rows). Returns each
    device's ML counter delta and whether it restarted (for the MQTT bridge)."""
    buckets: dict[tuple[int, int, str, str], _Bucket] = defaultdict(_Bucket)
    classes: dict[tuple[int, int, str, str, str], int] = defaultdict(int)
    hours: dict[tuple[str, int], _DeviceHour] = {}
    deltas: dict[str, tuple[dict[str, int], bool]] = {}
    for c in items:
        ts = epoch(c.last_seen)
        version = c.version or ""
        n = polls.get(c.device_id, 1)
        p = prior.get(c.device_id)
        newer = p is None or p.last_seen is None or p.last_seen <= ts
        hour_key = (c.device_id, bucket_start(ts, HOUR))
        dh = hours.setdefault(hour_key, _DeviceHour())
        dh.checkins += n
        for res in RESOLUTIONS:
            buckets[(res, bucket_start(ts, res), c.channel, version)].checkins += n
        if not newer:
            continue  # an older report that reached this process late: its counters are in the newer one
        reported = p is not None and p.last_seen is not None
        uptime_back = (c.uptime_s is not None and p is not None and p.uptime_s is not None and c.uptime_s < p.uptime_s)
        restarted = reported and (uptime_back or (p is not None and c.version != p.version))
        delta: dict[str, int] = {}
        new_counts = stored.counts(c.ml_counters) if c.ml_counters is not None else None
        if new_counts:
            old = stored.counts(p.ml_counters) if p is not None and p.ml_counters is not None else None
            delta, went_down = ml_delta(new_counts, old, restarted)
            restarted = restarted or went_down
        for res in RESOLUTIONS:
            start = bucket_start(ts, res)
            b = buckets[(res, start, c.channel, version)]
            same = reported and p is not None and p.last_seen is not None and bucket_start(p.last_seen, res) == start
            if not same or (p is not None and (p.version != c.version or p.channel != c.channel)):
                b.devices += 1
            if not same:
                b.first_seen += 1
            if restarted:
                b.reboots += 1
            if c.ml_latency_us is not None:
                b.latency_sum += c.ml_latency_us
                b.latency_n += 1
            for label, count in delta.items():
                classes[(res, start, c.channel, version, label)] += count
        deltas[c.device_id] = (delta, restarted)
        dh.version = version
        dh.reboots += int(restarted)
        for label, count in delta.items():
            dh.ml[label] = dh.ml.get(label, 0) + count
        if c.ml_latency_us is not None:
            dh.latency_sum += c.ml_latency_us
            dh.latency_n += 1
        if c.rssi is not None:
            dh.rssi_sum += c.rssi
            dh.rssi_n += 1
            dh.rssi_min = _min(dh.rssi_min, c.rssi)
        dh.free_heap_min = _min(dh.free_heap_min, c.free_heap)
        dh.min_free_heap = _min(dh.min_free_heap, c.min_free_heap)

    _write_device_hours(conn, hours)
    keys = ("resolution", "start", "channel", "version")
    rows = [dict(zip(keys, k), **vars(b)) for k, b in sorted(buckets.items())]
    upsert_add(conn, BUCKET, keys, rows, ("checkins", "devices", "first_seen", "reboots", "latency_sum", "latency_n"))
    ckeys = ("resolution", "start", "channel", "version", "label")
    crows = [{**dict(zip(ckeys, k)), "count": n} for k, n in sorted(classes.items()) if n > 0]
    upsert_add(conn, CLASS, ckeys, crows, ("count",))
    return deltas


def _write_device_hours(conn: Connection, hours: dict[tuple[str, int], _DeviceHour]) -> None:
    """Merge into the devices' hour rows. Each device's row is only written under its device row's lock,
    so reading and rewriting it here is safe across processes."""
    if not hours:
        return
    existing: dict[tuple[str, int], Any] = {}
    by_start: dict[int, list[str]] = defaultdict(list)
    for device_id, start in hours:
        by_start[start].append(device_id)
    for start, ids in by_start.items():
        for i in range(0, len(ids), CHUNK):
            stmt = select(DEVICE_HOUR).where(DEVICE_HOUR.c.start == start, DEVICE_HOUR.c.device_id.in_(ids[i : i + CHUNK]))
            for row in conn.execute(stmt):
                existing[(row.device_id, row.start)] = row
    inserts, updates = [], []
    for (device_id, start), h in sorted(hours.items()):
        row = existing.get((device_id, start))
        ml = dict(h.ml)
        values: dict[str, Any] = {"version": h.version, "checkins": h.checkins, "reboots": h.reboots,
                                  "latency_sum": h.latency_sum, "latency_n": h.latency_n, "rssi_sum": h.rssi_sum,
                                  "rssi_n": h.rssi_n, "rssi_min": h.rssi_min, "free_heap_min": h.free_heap_min,
                                  "min_free_heap": h.min_free_heap}
        if row is not None:
            for label, n in (stored.counts(row.ml_counts) or {}).items():
                ml[label] = ml.get(label, 0) + n
            values.update(
                version=h.version or row.version, checkins=row.checkins + h.checkins, reboots=row.reboots + h.reboots,
                latency_sum=row.latency_sum + h.latency_sum, latency_n=row.latency_n + h.latency_n,
                rssi_sum=row.rssi_sum + h.rssi_sum, rssi_n=row.rssi_n + h.rssi_n, rssi_min=_min(row.rssi_min, h.rssi_min),
                free_heap_min=_min(row.free_heap_min, h.free_heap_min), min_free_heap=_min(row.min_free_heap, h.min_free_heap),
            )
        values["ml_counts"] = _fit_counts(ml)
        if row is None:
            inserts.append({"device_id": device_id, "start": start, **values})
        else:
            updates.append({"b_id": row.id, **values})
    if inserts:
        conn.execute(DEVICE_HOUR.insert(), inserts)
    if updates:
        names = [k for k in updates[0] if k != "b_id"]
        stmt = update(DEVICE_HOUR).where(DEVICE_HOUR.c.id == bindparam("b_id")).values({k: bindparam(k) for k in names})
        conn.execute(stmt.execution_options(synchronize_session=False), updates)


def _fit_counts(ml: dict[str, int]) -> str:
    """JSON for the 400-character column: at most 8 labels of 15 characters (what a check-in carries)."""
    text = json.dumps(dict(sorted(ml.items())[:9]), separators=(",", ":"))
    return text if len(text) <= 400 else "{}"


def upsert_add(conn: Connection, table: Table, keys: Sequence[str], rows: list[dict[str, Any]], add: Sequence[str]) -> None:
    """INSERT rows; on a key that exists, add ``add`` columns to the stored ones (PostgreSQL, SQLite)."""
    if not rows:
        return
    dialect = conn.dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={c: table.c[c] + stmt.excluded[c] for c in add})
    conn.execute(stmt, rows)


def record_outcome(conn: Connection, *, channel: str | None, version: str | None, kind: str, reason: str, at: datetime) -> None:
    """One update event into the outcome buckets (in the caller's transaction)."""
    record_outcomes(conn, {(channel or "", version or "", kind, reason, epoch(at)): 1})


def record_outcomes(conn: Connection, events: dict[tuple[str, str, str, str, int], int]) -> None:
    """Update events, counted by (channel, version, kind, reason, epoch second), into the outcome buckets:
    one upsert per bucket, not per event (the check-in flush writes what the events route counted, so a
    fleet's events do not queue on the same few bucket rows one transaction each)."""
    keys = ("resolution", "start", "channel", "version", "kind", "reason")
    counts: dict[tuple[int, int, str, str, str, str], int] = defaultdict(int)
    for (channel, version, kind, reason, ts), n in events.items():
        for res in RESOLUTIONS:
            counts[(res, bucket_start(ts, res), channel, version, kind, reason)] += n
    rows = [{**dict(zip(keys, k)), "count": n} for k, n in sorted(counts.items())]
    upsert_add(conn, OUTCOME, keys, rows, ("count",))


@dataclass(frozen=True)
class Retention:
    minute_hours: float = 48
    hour_days: float = 90
    device_days: float = 7
    audit_days: float = 365
    deliveries_days: float = 30


def prune(conn: Connection, retention: Retention, now: datetime | None = None) -> int:
    """Delete what is past its retention (idempotent: safe in every process at once). Returns rows deleted."""
    now = now or datetime.now(UTC)
    ts = epoch(now)
    minute_cut = ts - int(retention.minute_hours * 3600)
    hour_cut = ts - int(retention.hour_days * 86400)
    deleted = 0
    for table in (BUCKET, CLASS, OUTCOME):
        deleted += conn.execute(delete(table).where(table.c.resolution == MINUTE, table.c.start < minute_cut)).rowcount
        deleted += conn.execute(delete(table).where(table.c.resolution == HOUR, table.c.start < hour_cut)).rowcount
    deleted += conn.execute(delete(DEVICE_HOUR).where(DEVICE_HOUR.c.start < ts - int(retention.device_days * 86400))).rowcount
    audit: Table = AuditEntry.__table__  # type: ignore[attr-defined]
    deleted += conn.execute(delete(audit).where(audit.c.at < now - timedelta(days=retention.audit_days))).rowcount
    deliveries: Table = WebhookDelivery.__table__  # type: ignore[attr-defined]
    deleted += conn.execute(delete(deliveries).where(
        and_(deliveries.c.state != "pending", deliveries.c.created_at < now - timedelta(days=retention.deliveries_days)))
    ).rowcount
    return deleted

