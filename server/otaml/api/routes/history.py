"""Fleet history: time series of check-ins, devices, versions, outcomes, ML class rates and latency
(aggregates kept by the check-in flush; fleet/insight.py)."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter
from sqlmodel import SQLModel, select

from otaml.api.deps import AdminDep, ContextDep, SessionDep
from otaml.core.errors import NotFoundError
from otaml.core.types import Channel, DeviceId, ReportedVersion
from otaml.fleet.insight import Range, device_history, fleet_history
from otaml.models import Device

router = APIRouter(prefix="/api/history", tags=["history"])


class SeriesPublic(SQLModel):
    resolution: int  # seconds per point
    starts: list[int]  # bucket starts, epoch seconds, oldest first
    lines: dict[str, list[float | None]]  # one value per start (None: no data in that bucket)


class FleetHistoryPublic(SQLModel):
    range: Range
    checkins: SeriesPublic
    devices: SeriesPublic
    versions: SeriesPublic
    latency: SeriesPublic
    reboots: SeriesPublic
    classes: SeriesPublic
    class_rates: SeriesPublic
    outcomes: SeriesPublic


class DeviceHistoryPublic(SQLModel):
    range: Range
    checkins: SeriesPublic
    class_rates: SeriesPublic
    latency: SeriesPublic
    rssi: SeriesPublic
    heap: SeriesPublic
    reboots: SeriesPublic


@router.get("", summary="Fleet history over a range; narrow it to a channel and a release version")
def get_fleet_history(
    session: SessionDep, ctx: ContextDep, _: AdminDep, range: Range = Range.HOUR,  # noqa: A002
    channel: Channel | None = None, version: ReportedVersion | None = None,
) -> FleetHistoryPublic:
    ctx.checkins.flush(ctx.engine)
    h = fleet_history(session, range, channel=channel, version=version)
    return FleetHistoryPublic(range=range, **{k: SeriesPublic(**asdict(v)) for k, v in vars(h).items()})


@router.get("/devices/{device_id}", summary="One device's hours (per-device history is kept per hour)")
def get_device_history(
    device_id: DeviceId, session: SessionDep, ctx: ContextDep, _: AdminDep, range: Range = Range.DAY,  # noqa: A002
) -> DeviceHistoryPublic:
    ctx.checkins.flush(ctx.engine)
    if session.exec(select(Device.id).where(Device.device_id == device_id)).first() is None:
        raise NotFoundError("Device not found")
    h = device_history(session, device_id, range)
    return DeviceHistoryPublic(range=range, **{k: SeriesPublic(**asdict(v)) for k, v in vars(h).items()})
