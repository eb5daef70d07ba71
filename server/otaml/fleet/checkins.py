"""Check-ins are recorded in memory and written in batches.

A poll only replaces the device's entry in a dict (the newest report wins; nothing in between matters
for "reported state"). A background task flushes every ``checkin_flush_interval`` seconds, readers of
device state flush first, and shutdown flushes last, so no check-in that was answered is lost to a
clean stop.

One device cannot stop another's check-ins: a batch the database refuses is written again row by
row, and a row it still refuses is dropped (one log line, counted in ``dropped``, shown by /api/info).
Only a database that cannot be reached at all puts the batch back for the next flush. Every value is
validated when the poll is answered (releases/polling.py), so a drop means a gap in that validation.

The same transaction adds the batch to the fleet history (fleet/history.py). ``record`` also counts the
polls per device between flushes (one dict update under the lock it already takes), so the history has
every poll, not only the newest report of each device; the totals are plain ints for /metrics.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import bindparam, or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from otaml.fleet import history
from otaml.models import Device

log = logging.getLogger(__name__)
_MAX_CHANNELS = 200_000  # devices whose channel is remembered (cleared when full)
# The database is unreachable, locked or out of connections: nothing is wrong with the rows.
TRANSIENT = (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError)

@dataclass(frozen=True)
class Checkin:
    device_id: str
    last_seen: datetime
    channel: str
    version: str | None
    partition: str | None
    ota_state: str | None
    manifest_version: int | None
    secure_version: int | None
    ml_model: str | None = None
    ml_counters: str | None = None  # JSON object, label -> count
    ml_latency_us: int | None = None
    config_revision: int | None = None
    reported_config: str | None = None  # JSON object, property -> value
    rssi: int | None = None
    free_heap: int | None = None
    min_free_heap: int | None = None
    uptime_s: int | None = None
    reset_reason: str | None = None


class CheckinBuffer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending: dict[str, Checkin] = {}
        self._polls: dict[str, int] = {}  # polls per device since the last flush
        # The channel of each device's newest check-in in this process, pending or written (bounded).
        self._channels: dict[str, str] = {}
        # Update events since the last flush, for the history's outcome buckets: (channel, version,
        # kind, reason, epoch second) -> count.
        self._outcomes: dict[tuple[str, str, str, str, int], int] = {}
        self.dropped = 0  # check-ins the database refused even alone
        self.written = 0  # check-ins stored (one per device per flush: the newest report)
        # Called after a batch commits, with each device's ML counter delta (ops/mqtt.py); never on the poll path.
        self.on_written: Callable[[list[Checkin], dict[str, tuple[dict[str, int], bool]]], None] | None = None

    def record(self, checkin: Checkin) -> None:
        with self._lock:
            self._pending[checkin.device_id] = checkin
            self._polls[checkin.device_id] = self._polls.get(checkin.device_id, 0) + 1
            if self._channels.get(checkin.device_id) != checkin.channel:
                if len(self._channels) >= _MAX_CHANNELS:
                    self._channels.clear()
                self._channels[checkin.device_id] = checkin.channel

    def record_outcome(self, channel: str | None, version: str | None, kind: str, reason: str, at: datetime) -> None:
        """A stored update event, for the history's outcome buckets (written by the next flush)."""
        key = (channel or "", version or "", kind, reason, history.epoch(at))
        with self._lock:
            self._outcomes[key] = self._outcomes.get(key, 0) + 1

    def flush(self, engine: Engine) -> int:
        """Write pending check-ins; returns how many were stored. A refused batch is retried row by row
        and refused rows are dropped. If the database cannot be reached, what is not written yet is put
        back (unless a newer report for the same device arrived meanwhile) and the error is raised."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
                polls, self._polls = self._polls, {}
                outcomes, self._outcomes = self._outcomes, {}
            if outcomes:
                try:
                    with engine.begin() as conn:
                        history.record_outcomes(conn, outcomes)
                except TRANSIENT:
                    self._put_back([], {}, outcomes)
                    self._put_back(list(batch.values()), polls)
                    raise
                except Exception as e:  # cannot happen with validated events; never costs the check-ins
                    log.error("dropped the history counts of %d update events: %s", sum(outcomes.values()), _short(e))
            if not batch:
                return 0
            items = list(batch.values())
            try:
                self._written(items, _write(engine, items, polls))
                self.written += len(items)
                return len(items)
            except TRANSIENT:
                self._put_back(items, polls)
                raise
            except Exception as e:  # some row does not fit its column: find it, keep the others
                log.warning("a batch of %d check-ins was refused (%s); writing them one by one", len(items), _short(e))
            written = 0
            for i, checkin in enumerate(items):
                try:
                    self._written([checkin], _write(engine, [checkin], polls))
                    written += 1
                    self.written += 1
                except TRANSIENT:
                    self._put_back(items[i:], polls)
                    raise
                except Exception as e:
                    self.dropped += 1
                    log.error("dropped the check-in of device %.64r: %s", checkin.device_id, _short(e))
            return written

    def _written(self, items: list[Checkin], deltas: dict[str, tuple[dict[str, int], bool]]) -> None:
        if self.on_written is not None:
            try:
                self.on_written(items, deltas)
            except Exception:  # a listener's bug must not put stored check-ins back
                log.exception("check-in listener failed")

    def channel_of(self, device_id: str, stored: str | None) -> str | None:
        """The device's channel as its newest check-in in this process says, else the stored row's (a
        device posts events right after the poll that offered the update: its check-in may be pending,
        or in a flush that has not committed when the event's transaction read the row)."""
        with self._lock:
            channel = self._channels.get(device_id)
        return channel if channel is not None else stored

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def _put_back(self, items: list[Checkin], polls: dict[str, int],
                  outcomes: dict[tuple[str, str, str, str, int], int] | None = None) -> None:
        with self._lock:
            for key, n in (outcomes or {}).items():
                self._outcomes[key] = self._outcomes.get(key, 0) + n
            for c in items:
                self._pending.setdefault(c.device_id, c)
                self._polls[c.device_id] = self._polls.get(c.device_id, 0) + polls.get(c.device_id, 0)


def _short(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


def _write(engine: Engine, items: list[Checkin], polls: dict[str, int]) -> dict[str, tuple[dict[str, int], bool]]:
    # The instance dict, copied (dataclasses.asdict deep-copies every value: most of a flush's time).
    rows = [{**vars(c), "b_device_id": c.device_id} for c in items]
    # Several server processes flush into one database: a report older than the stored one (it
    # reached another process later) must not overwrite it.
    stmt = (
        update(Device)
        .where(Device.device_id == bindparam("b_device_id"))  # type: ignore[arg-type]
        .where(or_(Device.last_seen.is_(None), Device.last_seen <= bindparam("last_seen")))  # type: ignore[union-attr]
        .values(**{name: bindparam(name) for name in _REPORTED})
    )
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            # Take the write lock before reading: another process's flush must not read the same
            # previous reports in between (PostgreSQL: the row locks of lock_prior).
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        prior = history.lock_prior(conn, [c.device_id for c in items])  # before the rows change
        conn.execute(stmt.execution_options(synchronize_session=False), rows)
        return history.record_checkins(conn, items, prior, polls)


# Every Checkin field but the key is a Device column of the same name.
_REPORTED = [f.name for f in fields(Checkin) if f.name != "device_id"]
