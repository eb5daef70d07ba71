"""Devices: enrollment and listing (admin), update events (the device itself)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from otaml.api.deps import AdminDep, AuditDep, ContextDep, DeviceDep, SessionDep
from otaml.core.errors import ConflictError, NotFoundError
from otaml.core.types import INT32_MAX, UINT32_MAX, Channel, DeviceId, DeviceIdPrefix, ReportedVersion, Seconds, Tag
from otaml.fleet import bulk, credentials, stored
from otaml.fleet.bulk import BulkChange, BulkResult
from otaml.fleet.pins import check_pin
from otaml.fleet.protocol import EventKind, ResetReason
from otaml.fleet.revision import bump_config, bump_policy
from otaml.fleet.search import DeviceFilter, search
from otaml.fleet.tokens import hash_token, new_token
from otaml.ops import mqtt
from otaml.fleet.twins import Drift, device_state
from otaml.releases.polling import fleet_policy
from otaml.rollouts import rings
from otaml.models import (
    Device,
    DeviceBatchCreate,
    DeviceBatchEnrolled,
    DeviceCredentials,
    DeviceCredentialsPublic,
    DeviceStatus,
    DeviceTokenPublic,
    DeviceCreate,
    DeviceEnrolled,
    DeviceEvent,
    DeviceEventCreate,
    DeviceEventPublic,
    DeviceEventsPublic,
    DevicePublic,
    DevicesPublic,
    DeviceState,
    DeviceUpdate,
)

router = APIRouter(prefix="/api/devices", tags=["devices"])


def device_action(changes: dict[str, object]) -> str:
    """The audit action of a device change: device.pin, device.unpin, device.hold, device.tag, ..."""
    if "pin_version" in changes:
        return "device.pin" if changes["pin_version"] else "device.unpin"
    if "hold" in changes:
        return "device.hold" if changes["hold"] else "device.release"
    return "device.tag" if "tags" in changes else "device.update"


def describe_changes(changes: dict[str, object]) -> str:
    parts = []
    if "tags" in changes:
        parts.append(f"tags {', '.join(changes['tags']) or '-'}")  # type: ignore[arg-type]
    if "pin_version" in changes:
        parts.append(f"pin {changes['pin_version'] or '-'}")
    if "hold" in changes:
        parts.append(f"hold {'on' if changes['hold'] else 'off'}")
    if changes.get("force_reason"):
        parts.append(f"forced: {changes['force_reason']}")
    return "; ".join(parts)


@router.post("", status_code=201, summary="Enroll a device; its token is shown only in this response")
def enroll_device(device_in: DeviceCreate, session: SessionDep, ctx: ContextDep, audit: AuditDep) -> DeviceEnrolled:
    audit.about("device.enroll", f"device {device_in.device_id}")
    token = new_token()
    device = Device(device_id=device_in.device_id, token_hash=hash_token(token), bucket=rings.bucket(device_in.device_id))
    session.add(device)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ConflictError(f"device {device_in.device_id!r} is already enrolled") from None
    session.refresh(device)
    ctx.tokens.forget(device.device_id)
    return DeviceEnrolled(**DevicePublic.model_validate(device).model_dump(), token=token)


@router.post("/batch", status_code=201, summary="Enroll many devices at once (release provision); tokens shown only here")
def enroll_batch(batch: DeviceBatchCreate, session: SessionDep, ctx: ContextDep, audit: AuditDep) -> DeviceBatchEnrolled:
    first = batch.devices[0].device_id
    audit.about("device.enroll_batch", f"{len(batch.devices)} devices from {first}"[:128],
                "re-issuing tokens of enrolled devices" if batch.rotate else "")
    rows = credentials.enroll_batch(session, [(d.device_id, d.tags) for d in batch.devices], rotate=batch.rotate)
    try:
        session.commit()
    except IntegrityError:  # another enrollment of one of these ids won the race
        session.rollback()
        raise ConflictError("one of these devices was enrolled meanwhile; run again") from None
    for device_id, _token, _rotated in rows:
        ctx.tokens.forget(device_id)
    data = [DeviceTokenPublic(device_id=d, token=t, rotated=r) for d, t, r in rows]
    return DeviceBatchEnrolled(data=data, count=len(data))


def _credentials_public(session: Session, device_id: str) -> DeviceCredentialsPublic:
    cred = credentials.credentials(session, device_id)
    return DeviceCredentialsPublic(device_id=device_id, status=DeviceStatus(cred.status),
                                   token_rotation_pending=cred.pending_token is not None)


def _credentials_changed(session: Session, ctx, device_id: str) -> DeviceCredentialsPublic:  # type: ignore[no-untyped-def]
    """Commit a credential change and make every token cache of this process ask the database again."""
    session.commit()
    ctx.tokens.forget(device_id)
    return _credentials_public(session, device_id)


@router.post("/{device_id}/rotate-token", summary="A new token for the device, handed over on its next authenticated poll")
def rotate_token(device_id: DeviceId, session: SessionDep, ctx: ContextDep, audit: AuditDep) -> DeviceCredentialsPublic:
    audit.about("device.rotate_token", f"device {device_id}")
    credentials.rotate(session, device_id)
    return _credentials_changed(session, ctx, device_id)


@router.post("/{device_id}/revoke", summary="Refuse every request of the device (401) from now on")
def revoke_device(device_id: DeviceId, session: SessionDep, ctx: ContextDep, audit: AuditDep) -> DeviceCredentialsPublic:
    audit.about("device.revoke", f"device {device_id}")
    credentials.set_status(session, device_id, DeviceStatus.REVOKED)
    return _credentials_changed(session, ctx, device_id)


@router.post("/{device_id}/accept", summary="Accept a claimed device waiting for approval")
def accept_device(device_id: DeviceId, session: SessionDep, ctx: ContextDep, audit: AuditDep) -> DeviceCredentialsPublic:
    audit.about("device.accept", f"device {device_id}")
    credentials.set_status(session, device_id, DeviceStatus.ACTIVE)
    return _credentials_changed(session, ctx, device_id)


@router.delete("/{device_id}", status_code=204, summary="Remove a device, its credentials and its history")
def remove_device(device_id: DeviceId, session: SessionDep, ctx: ContextDep, audit: AuditDep) -> None:
    audit.about("device.remove", f"device {device_id}")
    credentials.remove(session, device_id)
    bump_policy(session)  # its pin, hold and rollout membership go with it
    session.commit()
    ctx.tokens.forget(device_id)
    ctx.policy.invalidate()


@router.get("", summary="Devices with their reported state; filters combine")
async def list_devices(
    ctx: ContextDep,
    _: AdminDep,
    q: DeviceIdPrefix | None = Query(None, description="device id prefix"),
    version: ReportedVersion | None = None,
    channel: Channel | None = None,
    tag: Tag | None = None,
    state: EventKind | None = Query(None, description="latest update event, e.g. rolled_back"),
    seen_within: Seconds | None = Query(None, description="seconds"),
    not_seen_within: Seconds | None = Query(None, description="seconds"),
    drift: Drift | None = Query(None, description="reported state differs from desired: any, firmware, config"),
    rssi_below: int | None = Query(None, ge=-128, le=128, description="signal weaker than this many dBm"),
    min_free_heap_below: int | None = Query(None, ge=0, le=UINT32_MAX + 1, description="heap low-water under this many bytes"),
    reset_reason: ResetReason | Literal["crash"] | None = Query(None, description="last reset reason, or crash (panic, watchdogs, brownout)"),
    uptime_below: Seconds | None = Query(None, description="restarted less than this many seconds ago"),
    skip: int = Query(0, ge=0, le=INT32_MAX),
    limit: int = Query(100, ge=1, le=1000),
) -> DevicesPublic:
    policy = await fleet_policy(ctx)
    f = DeviceFilter(q, version, channel, tag, state, seen_within, not_seen_within, drift, rssi_below, min_free_heap_below,
                     reset_reason, uptime_below)

    def _search() -> DevicesPublic:
        ctx.checkins.flush(ctx.engine)  # show what devices said a moment ago, not at the last batch
        with Session(ctx.engine) as session:
            devices, count = search(session, policy, f, skip, limit)
            return DevicesPublic(data=with_status(session, devices), count=count)

    return await run_in_threadpool(_search)


@router.post("/bulk", summary="Tag, untag, pin, unpin, hold or release many devices at once (all or nothing)")
def bulk_change(change: BulkChange, session: SessionDep, ctx: ContextDep, audit: AuditDep) -> BulkResult:
    audit.about(f"device.bulk_{change.action}", f"{len(set(change.device_ids))} devices", bulk.describe(change))
    if change.action == "pin":
        ctx.checkins.flush(ctx.engine)  # judge pins against what the devices said a moment ago
    result = bulk.apply(session, change)
    ctx.policy.invalidate()
    return result


@router.get("/{device_id}", summary="One device's reported state")
def get_device(device_id: DeviceId, session: SessionDep, ctx: ContextDep, _: AdminDep) -> DevicePublic:
    ctx.checkins.flush(ctx.engine)
    device = session.exec(select(Device).where(Device.device_id == device_id)).first()
    if device is None:
        raise NotFoundError("Device not found")
    return with_status(session, [device])[0]


def with_status(session: Session, devices: list[Device]) -> list[DevicePublic]:
    """Public rows with each device's credential status (one query for the page)."""
    ids = [d.device_id for d in devices]
    rows = session.exec(select(DeviceCredentials).where(DeviceCredentials.device_id.in_(ids))).all() if ids else []  # type: ignore[attr-defined]
    status = {r.device_id: r.status for r in rows}
    out = []
    for d in devices:
        public = DevicePublic.model_validate(d)
        public.status = status.get(d.device_id, DeviceStatus.ACTIVE)
        out.append(public)
    return out


def _device(session: Session, device_id: str) -> Device:
    device = session.exec(select(Device).where(Device.device_id == device_id)).first()
    if device is None:
        raise NotFoundError(f"no device {device_id[:64]!r}")
    return device


@router.patch("/{device_id}", summary="Set a device's tags, pin or hold")
def update_device(device_id: DeviceId, update: DeviceUpdate, session: SessionDep, ctx: ContextDep, audit: AuditDep) -> DevicePublic:
    changes = update.model_dump(exclude_unset=True)
    audit.about(device_action(changes), f"device {device_id}", describe_changes(changes))
    device = _device(session, device_id)
    if update.pin_version:
        ctx.checkins.flush(ctx.engine)  # judge the pin against what the device said a moment ago
        session.refresh(device)
        check_pin(session, device, update.pin_version, update.force_reason)
    if "tags" in changes:
        device.tags = stored.dump_tags(changes["tags"])
        bump_config(session)  # tag layers may now apply differently
    if "pin_version" in changes:
        device.pin_version = changes["pin_version"] or None
    if "hold" in changes:
        device.hold = bool(changes["hold"])
    session.add(device)
    bump_policy(session)
    session.commit()
    session.refresh(device)
    ctx.policy.invalidate()
    return DevicePublic.model_validate(device)


@router.get("/{device_id}/state", summary="Desired next to reported state (firmware and configuration)")
async def device_twin(device_id: DeviceId, ctx: ContextDep, _: AdminDep) -> DeviceState:
    policy = await fleet_policy(ctx)

    def _state() -> DeviceState:
        ctx.checkins.flush(ctx.engine)
        with Session(ctx.engine) as session:
            return device_state(policy, _device(session, device_id))

    return await run_in_threadpool(_state)


@router.get("/{device_id}/events", summary="A device's update history, newest first")
def list_device_events(
    device_id: DeviceId, session: SessionDep, _: AdminDep, limit: int = Query(100, ge=1, le=1000)
) -> DeviceEventsPublic:
    if session.exec(select(Device.id).where(Device.device_id == device_id)).first() is None:
        raise NotFoundError("Device not found")
    events = session.exec(
        select(DeviceEvent).where(DeviceEvent.device_id == device_id).order_by(DeviceEvent.id.desc()).limit(limit)  # type: ignore[union-attr]
    ).all()
    data = [DeviceEventPublic.model_validate(e, from_attributes=True) for e in events]
    return DeviceEventsPublic(data=data, count=len(data))


@router.post("/{device_id}/events", status_code=201, summary="Report an update event (device token)")
def post_device_event(
    event_in: DeviceEventCreate, device_id: DeviceDep, session: SessionDep, ctx: ContextDep
) -> DeviceEventPublic:
    event = DeviceEvent(**event_in.model_dump(), device_id=device_id)
    session.add(event)
    device = session.exec(select(Device).where(Device.device_id == device_id)).one()
    device.last_event, device.last_reason = event.kind, event.reason
    session.add(device)
    outcome = (ctx.checkins.channel_of(device_id, device.channel), event.version, event.kind, event.reason, event.created_at)
    rolled_back = event.kind == EventKind.ROLLED_BACK
    if rolled_back:
        bump_policy(session)  # every process stops offering this version to this device
    session.flush()  # the event's id
    answer = DeviceEventPublic.model_validate(event, from_attributes=True)
    # The commit hands the connection back to the pool now. Reading the event after it (a refresh) would
    # take one again and hold it until the request's session is closed, which needs a free worker
    # thread: a fleet posting events at once then held every connection while every thread waited for
    # one (30 s stalls, the pool's timeout).
    session.commit()
    # Counted in memory and written to the history by the check-in flush: every event of a fleet would
    # otherwise upsert the same few bucket rows in its own transaction, one after the other.
    ctx.checkins.record_outcome(*outcome)
    if rolled_back:
        ctx.policy.invalidate()
    if (bridge := mqtt.bridge()) is not None:  # a queue append: never waits for the broker
        bridge.device_event(device_id, kind=answer.kind, version=answer.version, reason=answer.reason, detail=answer.detail,
                            channel=outcome[0], at=answer.created_at)
    return answer
