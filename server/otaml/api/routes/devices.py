"""Devices: enrollment and listing (admin), update events (the device itself)."""

from __future__ import annotations

from fastapi import APIRouter, Query
from sqlalchemy.exc import IntegrityError
from sqlmodel import func, select

from otaml.api.deps import AdminDep, ContextDep, DeviceDep, SessionDep
from otaml.core.errors import ConflictError, NotFoundError
from otaml.fleet.tokens import hash_token, new_token
from otaml.models import (
    Device,
    DeviceCreate,
    DeviceEnrolled,
    DeviceEvent,
    DeviceEventCreate,
    DeviceEventPublic,
    DeviceEventsPublic,
    DevicePublic,
    DevicesPublic,
)

router = APIRouter(prefix="/api/devices", tags=["devices"])


@router.post("", status_code=201, summary="Enroll a device; its token is shown only in this response")
def enroll_device(device_in: DeviceCreate, session: SessionDep, ctx: ContextDep, _: AdminDep) -> DeviceEnrolled:
    token = new_token()
    device = Device(device_id=device_in.device_id, token_hash=hash_token(token))
    session.add(device)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ConflictError(f"device {device_in.device_id!r} is already enrolled") from None
    session.refresh(device)
    ctx.tokens.remember(device.device_id, device.token_hash)
    return DeviceEnrolled(**DevicePublic.model_validate(device).model_dump(), token=token)


@router.get("", summary="Devices with their reported state")
def list_devices(
    session: SessionDep,
    ctx: ContextDep,
    _: AdminDep,
    version: str | None = None,
    channel: str | None = None,
    skip: int = Query(0, ge=0),
    limit: int = Query(100, ge=1, le=1000),
) -> DevicesPublic:
    ctx.checkins.flush(ctx.engine)  # show what devices said a moment ago, not at the last batch
    query = select(Device)
    count_query = select(func.count()).select_from(Device)
    if version is not None:
        query, count_query = query.where(Device.version == version), count_query.where(Device.version == version)
    if channel is not None:
        query, count_query = query.where(Device.channel == channel), count_query.where(Device.channel == channel)
    count = session.exec(count_query).one()
    devices = session.exec(query.order_by(Device.device_id).offset(skip).limit(limit)).all()
    return DevicesPublic(data=[DevicePublic.model_validate(d) for d in devices], count=count)


@router.get("/{device_id}", summary="One device's reported state")
def get_device(device_id: str, session: SessionDep, ctx: ContextDep, _: AdminDep) -> DevicePublic:
    ctx.checkins.flush(ctx.engine)
    device = session.exec(select(Device).where(Device.device_id == device_id)).first()
    if device is None:
        raise NotFoundError("Device not found")
    return DevicePublic.model_validate(device)


@router.get("/{device_id}/events", summary="A device's update history, newest first")
def list_device_events(
    device_id: str, session: SessionDep, _: AdminDep, limit: int = Query(100, ge=1, le=1000)
) -> DeviceEventsPublic:
    if session.exec(select(Device.id).where(Device.device_id == device_id)).first() is None:
        raise NotFoundError("Device not found")
    events = session.exec(
        select(DeviceEvent).where(DeviceEvent.device_id == device_id).order_by(DeviceEvent.id.desc()).limit(limit)  # type: ignore[union-attr]
    ).all()
    data = [DeviceEventPublic.model_validate(e, from_attributes=True) for e in events]
    return DeviceEventsPublic(data=data, count=len(data))


@router.post("/{device_id}/events", status_code=201, summary="Report an update event (device token)")
def post_device_event(event_in: DeviceEventCreate, device_id: DeviceDep, session: SessionDep) -> DeviceEventPublic:
    event = DeviceEvent.model_validate(event_in, update={"device_id": device_id})
    session.add(event)
    device = session.exec(select(Device).where(Device.device_id == device_id)).one()
    device.last_event, device.last_reason = event.kind, event.reason
    session.add(device)
    session.commit()
    session.refresh(event)
    return DeviceEventPublic.model_validate(event, from_attributes=True)
