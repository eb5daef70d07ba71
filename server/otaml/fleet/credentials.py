"""Device credentials over their life: batch enrollment (release provision), claiming with a fleet claim
token, approval, rotation, revocation and removal (manifests/README.md, "Device tokens").

Functions take the caller's session and leave the commit to it, except where a conditional update must
win a race (claiming the last use of a claim token)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from otaml.core.errors import AuthError, ConflictError, NotFoundError
from otaml.fleet import stored
from otaml.fleet.revision import bump_config
from otaml.fleet.tokens import bump_credentials, hash_token, new_token, tokens_equal
from otaml.models import (
    ClaimToken,
    ClaimTokenCreate,
    Device,
    DeviceCredentials,
    DeviceEvent,
    DeviceHistory,
    DeviceStatus,
    utcnow,
)
from otaml.rollouts import rings


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def credentials(session: Session, device_id: str) -> DeviceCredentials:
    """The device's credentials row (created as active for a device enrolled before it existed)."""
    row = session.get(DeviceCredentials, device_id)
    return row or DeviceCredentials(device_id=device_id)


def _device(session: Session, device_id: str) -> Device:
    device = session.exec(select(Device).where(Device.device_id == device_id)).first()
    if device is None:
        raise NotFoundError(f"no device {device_id[:64]!r}")
    return device


def enroll_batch(session: Session, specs: list[tuple[str, list[str]]], *, rotate: bool) -> list[tuple[str, str, bool]]:
    """Enroll every (id, tags), or none: (device id, token, rotated). Already-enrolled ids are refused,
    naming them, unless ``rotate``: then they get a new token at once (their old one stops working; the
    provisioning run writes the new one into their NVS image) and keep their tags. A revoked device
    stays revoked."""
    device_ids = [d for d, _ in specs]
    tagged = {d: t for d, t in specs}
    existing = {d.device_id: d for d in session.exec(select(Device).where(col(Device.device_id).in_(device_ids))).all()}
    if existing and not rotate:
        names = sorted(existing)
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise ConflictError(
            f"expected ids that are not enrolled yet, got {len(names)} already enrolled ({shown}); "
            f"pass --rotate-tokens to give them new tokens"
        )
    out: list[tuple[str, str, bool]] = []
    for device_id in device_ids:
        token = new_token()
        device = existing.get(device_id)
        if device is None:
            device = Device(device_id=device_id, token_hash=hash_token(token), bucket=rings.bucket(device_id))
            if tagged[device_id]:
                device.tags = stored.dump_tags(sorted(set(tagged[device_id])))
        else:
            device.token_hash = hash_token(token)
            cred = session.get(DeviceCredentials, device_id)
            if cred is not None and cred.pending_token:
                cred.pending_token = None
                session.add(cred)
        session.add(device)
        out.append((device_id, token, device_id in existing))
    if existing:
        bump_credentials(session)
    if any(tagged.values()):
        bump_config(session)  # tag layers of configuration may now apply to these devices
    return out


def rotate(session: Session, device_id: str) -> str:
    """A new token for the device, handed over on its next authenticated poll; the old one works until
    the device has used the new one. Rotating again replaces a token not yet handed over."""
    _device(session, device_id)
    cred = credentials(session, device_id)
    if cred.status != DeviceStatus.ACTIVE:
        raise ConflictError(f"expected an active device, got {device_id!r} {cred.status} (accept it first)")
    cred.pending_token = new_token()
    cred.updated_at = utcnow()
    session.add(cred)
    bump_credentials(session)
    return cred.pending_token


def set_status(session: Session, device_id: str, status: DeviceStatus) -> DeviceCredentials:
    """Accept (pending -> active) or revoke (any -> revoked). Accepting a revoked device is refused:
    re-enroll it with new credentials instead (`release provision --rotate-tokens`)."""
    _device(session, device_id)
    cred = credentials(session, device_id)
    if status == DeviceStatus.ACTIVE and cred.status != DeviceStatus.PENDING:
        raise ConflictError(f"expected a device pending approval, got {device_id!r} {cred.status}")
    cred.status = status
    if status == DeviceStatus.REVOKED:
        cred.pending_token = None
    cred.updated_at = utcnow()
    session.add(cred)
    bump_credentials(session)
    return cred


def remove(session: Session, device_id: str) -> None:
    """Forget the device: its row, credentials and history. Its token stops working."""
    device = _device(session, device_id)
    session.delete(device)
    session.exec(delete(DeviceCredentials).where(col(DeviceCredentials.device_id) == device_id))  # type: ignore[call-overload]
    session.exec(delete(DeviceEvent).where(col(DeviceEvent.device_id) == device_id))  # type: ignore[call-overload]
    session.exec(delete(DeviceHistory).where(col(DeviceHistory.device_id) == device_id))  # type: ignore[call-overload]
    bump_credentials(session)


# ---- claiming ----


def create_claim_token(session: Session, spec: ClaimTokenCreate) -> tuple[ClaimToken, str]:
    token = new_token()
    row = ClaimToken(
        name=spec.name, token_hash=hash_token(token), expires_at=utcnow() + timedelta(seconds=spec.expires_in),
        max_uses=spec.max_uses, tags=sorted(set(spec.tags)), require_approval=spec.require_approval,
    )
    session.add(row)
    return row, token


def claim(session: Session, claim_token: str | None, device_id: str, device_token: str) -> DeviceStatus:
    """Register ``device_token`` (chosen by the device) for ``device_id`` with a fleet claim token.

    Idempotent for the device that claimed: the same id and token are answered with its status again
    (a device that lost the answer asks again). Refused: an unknown, revoked, expired or used-up claim
    token (AuthError), an id enrolled by anyone else (ConflictError). Commits.
    """
    if claim_token is None:
        raise AuthError("expected `Authorization: Bearer <claim token>`, got no bearer token")
    row = session.exec(select(ClaimToken).where(ClaimToken.token_hash == hash_token(claim_token))).first()
    if row is None or row.revoked:
        raise AuthError("claim token unknown or revoked")
    device = session.exec(select(Device).where(Device.device_id == device_id)).first()
    if device is not None:
        cred = credentials(session, device_id)
        if cred.claimed_with == row.id and tokens_equal(device.token_hash, hash_token(device_token)):
            return DeviceStatus(cred.status)
        raise ConflictError(f"device {device_id!r} is already enrolled; it cannot be claimed")
    if _aware(row.expires_at) <= utcnow():
        raise AuthError(f"claim token {row.name!r} expired at {_aware(row.expires_at).isoformat()}")
    # The use counts only if no other claim took the last one meanwhile.
    taken = session.exec(
        update(ClaimToken)  # type: ignore[call-overload]
        .where(ClaimToken.id == row.id, ClaimToken.uses < ClaimToken.max_uses)  # type: ignore[arg-type]
        .values(uses=ClaimToken.uses + 1)
    )
    if taken.rowcount != 1:
        session.rollback()
        raise AuthError(f"claim token {row.name!r} is used up ({row.max_uses} devices)")
    status = DeviceStatus.PENDING if row.require_approval else DeviceStatus.ACTIVE
    device = Device(device_id=device_id, token_hash=hash_token(device_token), bucket=rings.bucket(device_id))
    if row.tags:
        device.tags = stored.dump_tags(list(row.tags))
    session.add(device)
    session.add(DeviceCredentials(device_id=device_id, status=status, claimed_with=row.id))
    bump_credentials(session)
    if row.tags:
        bump_config(session)
    session.commit()
    return status
