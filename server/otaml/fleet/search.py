"""The device table's filters, shared by the API and the dashboard. Every filter is one SQL condition
on indexed or narrow columns, and pages are LIMIT/OFFSET on device_id, so a page costs the same at
100k devices as at 100."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, func, select

from otaml.fleet.protocol import ResetReason
from otaml.fleet.twins import Drift, drift_condition
from otaml.fleet.tags import has_tag
from otaml.models import Device
from otaml.rollouts.policy import FleetPolicy


# Resets that mean the firmware or the hardware is in trouble (not a power cycle or an update's restart).
CRASHES = [r.value for r in (ResetReason.PANIC, ResetReason.INT_WDT, ResetReason.TASK_WDT, ResetReason.WDT,
                             ResetReason.BROWNOUT, ResetReason.CPU_LOCKUP, ResetReason.PWR_GLITCH)]


@dataclass
class DeviceFilter:
    q: str | None = None  # device id prefix
    version: str | None = None
    channel: str | None = None
    tag: str | None = None
    state: str | None = None  # the latest update event: confirmed, rolled_back, rejected, ...
    seen_within: int | None = None  # seconds
    not_seen_within: int | None = None
    drift: Drift | None = None
    # Device health (check-in headers).
    rssi_below: int | None = None  # dBm: weaker signal than this
    min_free_heap_below: int | None = None  # bytes: the heap's low-water mark went under this
    reset_reason: str | None = None  # last reset reason, or "crash": panic, watchdogs, brownout, lockup
    uptime_below: int | None = None  # seconds: restarted recently

    def conditions(self, session: Session, policy: FleetPolicy) -> list:  # type: ignore[type-arg]
        now = datetime.now(UTC)
        conds = []
        if self.q:
            conds.append(Device.device_id.startswith(self.q, autoescape=True))  # type: ignore[attr-defined]
        if self.version:
            conds.append(Device.version == self.version)
        if self.channel:
            conds.append(Device.channel == self.channel)
        if self.tag:
            conds.append(has_tag(self.tag))
        if self.state:
            conds.append(Device.last_event == self.state)
        if self.seen_within is not None:
            conds.append(Device.last_seen >= now - timedelta(seconds=self.seen_within))  # type: ignore[operator]
        if self.not_seen_within is not None:
            cutoff = now - timedelta(seconds=self.not_seen_within)
            conds.append((Device.last_seen.is_(None)) | (Device.last_seen < cutoff))  # type: ignore[union-attr, operator]
        if self.drift:
            conds.append(drift_condition(session, policy, self.drift))
        if self.rssi_below is not None:
            conds.append(Device.rssi < self.rssi_below)  # type: ignore[operator]
        if self.min_free_heap_below is not None:
            conds.append(Device.min_free_heap < self.min_free_heap_below)  # type: ignore[operator]
        if self.reset_reason == "crash":
            conds.append(Device.reset_reason.in_(CRASHES))  # type: ignore[union-attr]
        elif self.reset_reason:
            conds.append(Device.reset_reason == self.reset_reason)
        if self.uptime_below is not None:
            conds.append(Device.uptime_s < self.uptime_below)  # type: ignore[operator]
        return conds


def search(session: Session, policy: FleetPolicy, f: DeviceFilter, skip: int, limit: int) -> tuple[list[Device], int]:
    conds = f.conditions(session, policy)
    count = session.exec(select(func.count()).select_from(Device).where(*conds)).one()
    rows = session.exec(select(Device).where(*conds).order_by(Device.device_id).offset(skip).limit(limit)).all()
    return list(rows), count
