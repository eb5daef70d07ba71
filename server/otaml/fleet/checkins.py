"""Check-ins are recorded in memory and written in batches.

A poll only replaces the device's entry in a dict (the newest report wins; nothing in between matters
for "reported state"). A background task flushes every ``checkin_flush_interval`` seconds, readers of
device state flush first, and shutdown flushes last, so no check-in that was answered is lost to a
clean stop.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields
from datetime import datetime

from sqlalchemy import bindparam, or_, update
from sqlalchemy.engine import Engine

from otaml.models import Device

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


class CheckinBuffer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending: dict[str, Checkin] = {}

    def record(self, checkin: Checkin) -> None:
        with self._lock:
            self._pending[checkin.device_id] = checkin

    def flush(self, engine: Engine) -> int:
        """Write pending check-ins in one transaction. On failure they are put back (unless a newer
        report for the same device arrived meanwhile) and the error is raised."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, {}
            if not batch:
                return 0
            rows = [{**asdict(c), "b_device_id": c.device_id} for c in batch.values()]
            # Several server processes flush into one database: a report older than the stored one (it
            # reached another process later) must not overwrite it.
            stmt = (
                update(Device)
                .where(Device.device_id == bindparam("b_device_id"))  # type: ignore[arg-type]
                .where(or_(Device.last_seen.is_(None), Device.last_seen <= bindparam("last_seen")))  # type: ignore[union-attr]
                .values(**{name: bindparam(name) for name in _REPORTED})
            )
            try:
                with engine.begin() as conn:
                    conn.execute(stmt.execution_options(synchronize_session=False), rows)
            except Exception:
                with self._lock:
                    for device_id, c in batch.items():
                        self._pending.setdefault(device_id, c)
                raise
            return len(batch)


# Every Checkin field but the key is a Device column of the same name.
_REPORTED = [f.name for f in fields(Checkin) if f.name != "device_id"]
