"""What the CLI reads before it signs, and a health check."""

from __future__ import annotations

from fastapi import APIRouter
from sqlmodel import select

from otaml.api.deps import AdminDep, ContextDep, SessionDep
from otaml.api.routes.channels import list_channel_states
from otaml.models import MqttBridgeInfo, ServerInfo, SigningKey
from otaml.ops import mqtt
from otaml.releases.publishing import next_manifest_version

router = APIRouter(tags=["info"])


@router.get("/api/info", summary="Project, URLs, next manifest_version and trusted keys")
def server_info(session: SessionDep, ctx: ContextDep, _: AdminDep) -> ServerInfo:
    s = ctx.settings
    return ServerInfo(
        project=s.project,
        chip=s.chip,
        base_url=s.base_url,
        next_manifest_version=next_manifest_version(session),
        signing_keys=list(session.exec(select(SigningKey.key_id)).all()),
        channels=list_channel_states(session, s.base_url),
        config_key_id=ctx.config_docs.signer.key_id,
        config_public_key=ctx.config_docs.signer.public_pem,
        checkins_dropped=ctx.checkins.dropped,
        mqtt=_mqtt_info(),
    )


def _mqtt_info() -> MqttBridgeInfo | None:
    bridge = mqtt.bridge()
    if bridge is None:
        return None
    return MqttBridgeInfo(url=bridge.url, prefix=bridge.prefix, connected=bridge.connected, pending=bridge.pending(),
                          published=bridge.published, dropped=bridge.dropped)


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
