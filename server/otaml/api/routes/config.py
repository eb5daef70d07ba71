"""Desired configuration layers (admin): properties per channel, tag or device."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter
from sqlmodel import Session, select

from otaml.api.deps import AdminDep, AuditDep, ContextDep, SessionDep
from otaml.core.errors import FieldError, NotFoundError
from otaml.core.types import CHANNEL, DEVICE_ID, TAG, shown
from otaml.fleet import config
from otaml.fleet.revision import bump_config
from otaml.models import ConfigLayer, ConfigLayerPublic, ConfigScope, Device

_NAMES = {ConfigScope.CHANNEL: CHANNEL, ConfigScope.TAG: TAG, ConfigScope.DEVICE: DEVICE_ID}


def _checked_name(session: Session, scope: ConfigScope, name: str) -> str:
    """A layer's name is a channel, a tag or a device id, by its scope; a device must be enrolled
    (a layer for a device that does not exist would configure nothing, silently)."""
    rule = _NAMES[scope]
    if not rule.ok(name):
        raise FieldError(f"invalid path name: expected {rule.expected} for a {scope} layer, got {shown(name)}")
    if scope == ConfigScope.DEVICE and session.exec(select(Device.id).where(Device.device_id == name)).first() is None:
        raise NotFoundError(f"no device {name!r}: enroll it first (`release enroll {name}`)")
    return name

router = APIRouter(prefix="/api/config", tags=["config"])


@router.get("", summary="Every configuration layer, and the properties a layer may set")
def list_layers(session: SessionDep, _: AdminDep) -> dict[str, object]:
    layers = session.exec(select(ConfigLayer).order_by(ConfigLayer.scope, ConfigLayer.name)).all()
    return {
        "properties": {p.name: ({"type": "string", "rule": p.expected, "help": p.help} if p.rule is not None
                                else {"min": p.low, "max": p.high, "help": p.help}) for p in config.PROPERTIES.values()},
        "layers": [ConfigLayerPublic.model_validate(x, from_attributes=True) for x in layers],
    }


@router.put("/{scope}/{name}", summary="Set a layer's properties (replaces the layer)")
def set_layer(
    scope: ConfigScope, name: str, properties: dict[str, int | str], session: SessionDep, ctx: ContextDep, audit: AuditDep
) -> ConfigLayerPublic:
    audit.about("config.set", f"{scope} {name}"[:128], ", ".join(f"{k}={v}" for k, v in properties.items()))
    name = _checked_name(session, scope, name)
    props = config.validate(properties)
    layer = session.exec(select(ConfigLayer).where(ConfigLayer.scope == scope, ConfigLayer.name == name)).first()
    if layer is None:
        layer = ConfigLayer(scope=scope, name=name, properties=props)
    else:
        layer.properties, layer.updated_at = props, datetime.now(UTC)
    session.add(layer)
    bump_config(session)
    session.commit()
    session.refresh(layer)
    ctx.policy.invalidate()
    return ConfigLayerPublic.model_validate(layer, from_attributes=True)


@router.delete("/{scope}/{name}", status_code=204, summary="Remove a layer")
def delete_layer(scope: ConfigScope, name: str, session: SessionDep, ctx: ContextDep, audit: AuditDep) -> None:
    audit.about("config.unset", f"{scope} {name}"[:128])
    if not _NAMES[scope].ok(name):
        raise NotFoundError(f"no {scope} config layer {shown(name)}")
    layer = session.exec(select(ConfigLayer).where(ConfigLayer.scope == scope, ConfigLayer.name == name)).first()
    if layer is None:
        raise NotFoundError(f"no {scope} config layer {name!r}")
    session.delete(layer)
    bump_config(session)
    session.commit()
    ctx.policy.invalidate()
