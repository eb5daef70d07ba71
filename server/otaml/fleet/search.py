"""The device table's filters, shared by the API and the dashboard. Every filter is one SQL condition
on indexed or narrow columns, and pages are LIMIT/OFFSET on device_id, so a page costs the same at
100k devices as at 100."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, func, select

from otaml.fleet.twins import Drift, drift_condition
from otaml.fleet.tags import has_tag
from otaml.models import Device
from otaml.rollouts.policy import FleetPolicy


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
        return conds


def search(session: Session, policy: FleetPolicy, f: DeviceFilter, skip: int, limit: int) -> tuple[list[Device], int]:
    conds = f.conditions(session, policy)
    count = session.exec(select(func.count()).select_from(Device).where(*conds)).one()
    rows = session.exec(select(Device).where(*conds).order_by(Device.device_id).offset(skip).limit(limit)).all()
    return list(rows), count
