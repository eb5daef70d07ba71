"""One change to many devices at once (the device table's bulk actions; POST /api/devices/bulk).

All or nothing: every device is checked first (it exists; a pin is one it can follow, as fleet/pins.py
judges it), and only then is anything written, in one transaction with one fleet-revision bump. A
refusal names the devices it is about.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, model_validator
from sqlmodel import Session, SQLModel, select

from otaml.core.errors import ConflictError, NotFoundError, PinError
from otaml.core.types import Detail, DeviceId, Tag, VersionText
from otaml.fleet import stored
from otaml.fleet.pins import check_pin
from otaml.fleet.revision import bump_config, bump_policy
from otaml.models import MAX_TAGS, TAGS_COLUMN, Device

BulkAction = Literal["tag", "untag", "pin", "unpin", "hold", "release"]
MAX_BULK = 1000


class BulkChange(SQLModel):
    model_config = ConfigDict(extra="forbid")
    device_ids: list[DeviceId] = Field(min_length=1, max_length=MAX_BULK)
    action: BulkAction
    tag: Tag | None = None  # tag, untag
    version: VersionText | None = None  # pin
    force_reason: Detail | None = None  # pin anyway (logged)

    @model_validator(mode="after")
    def _needs(self) -> BulkChange:
        if self.action in ("tag", "untag") and self.tag is None:
            raise ValueError(f"expected a tag for {self.action}, got none")
        if self.action == "pin" and self.version is None:
            raise ValueError("expected a version to pin, got none")
        return self


class BulkResult(SQLModel):
    action: str
    changed: int
    devices: list[str]


def describe(change: BulkChange) -> str:
    what = {"tag": f"tag {change.tag}", "untag": f"untag {change.tag}", "pin": f"pin {change.version}"}.get(change.action, change.action)
    ids = ", ".join(change.device_ids[:5]) + (f" and {len(change.device_ids) - 5} more" if len(change.device_ids) > 5 else "")
    return f"{what}: {ids}"


def apply(session: Session, change: BulkChange) -> BulkResult:
    """Raises NotFoundError (an unknown device), PinError (devices that could not follow the pin)."""
    ids = sorted(set(change.device_ids))
    devices = {d.device_id: d for d in session.exec(select(Device).where(Device.device_id.in_(ids))).all()}  # type: ignore[attr-defined]
    missing = [i for i in ids if i not in devices]
    if missing:
        raise NotFoundError(f"no device {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if change.action == "pin":
        problems = []
        for device_id in ids:
            try:
                check_pin(session, devices[device_id], change.version or "", change.force_reason)
            except PinError as e:
                problems.append(str(e).split(": ", 1)[-1].split("; pass --force")[0])
        if problems:
            raise PinError(f"cannot pin {len(problems)} of {len(ids)} devices to {change.version}: {problems[0]}"
                           f"{f' (and {len(problems) - 1} more)' if len(problems) > 1 else ''}; nothing was changed; "
                           f"give a force reason to pin them anyway")
    for device_id in ids:
        d = devices[device_id]
        tags = stored.tags(d.tags)
        if change.action == "tag" and change.tag not in tags:
            tags = sorted({*tags, change.tag or ""})
            if len(tags) > MAX_TAGS or len(stored.dump_tags(tags)) > TAGS_COLUMN:
                raise ConflictError(f"device {device_id} cannot take another tag: it has {len(tags) - 1} "
                                    f"(at most {MAX_TAGS}); nothing was changed")
            d.tags = stored.dump_tags(tags)
        elif change.action == "untag":
            d.tags = stored.dump_tags([t for t in tags if t != change.tag])
        elif change.action == "pin":
            d.pin_version = change.version
        elif change.action == "unpin":
            d.pin_version = None
        elif change.action == "hold":
            d.hold, d.pin_version = True, None
        elif change.action == "release":
            d.hold = False
        session.add(d)
    if change.action in ("tag", "untag"):
        bump_config(session)
    bump_policy(session)
    session.commit()
    return BulkResult(action=change.action, changed=len(ids), devices=ids)
