"""Webhooks: signed JSON posts on rollout.halted, rollout.done and manifest.expiring (admin;
ops/webhooks.py documents the request and its signature)."""

from __future__ import annotations

from fastapi import APIRouter, Query
from sqlmodel import Session, func, select

from otaml.api.deps import AdminDep, AuditDep, SessionDep
from otaml.core.errors import NotFoundError
from otaml.core.types import RowId
from otaml.models import (
    Webhook,
    WebhookCreate,
    WebhookCreated,
    WebhookDeliveriesPublic,
    WebhookDelivery,
    WebhookDeliveryPublic,
    WebhookPublic,
    WebhooksPublic,
)
from otaml.ops import webhooks

router = APIRouter(prefix="/api/webhooks", tags=["webhooks"])


def webhook_public(session: Session, hook: Webhook) -> WebhookPublic:
    counts = dict(session.exec(
        select(WebhookDelivery.state, func.count()).where(WebhookDelivery.webhook_id == hook.id).group_by(WebhookDelivery.state)  # type: ignore[call-overload]
    ).all())
    last = session.exec(
        select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id, WebhookDelivery.attempts > 0)
        .order_by(WebhookDelivery.id.desc()).limit(1)  # type: ignore[union-attr]
    ).first()
    last_status = "" if last is None else (
        f"{last.state} ({last.last_status if last.last_status is not None else 'no answer'}"
        f"{': ' + last.last_error if last.last_error else ''})"
    )
    return WebhookPublic(id=hook.id, url=hook.url, events=list(hook.events), created_at=hook.created_at,  # type: ignore[arg-type]
                         delivered=counts.get("delivered", 0), failed=counts.get("failed", 0),
                         pending=counts.get("pending", 0), last_status=last_status)


@router.post("", status_code=201, summary="Add a webhook; its signing secret is shown only in this response")
def add_webhook(spec: WebhookCreate, session: SessionDep, audit: AuditDep) -> WebhookCreated:
    audit.about("webhook.add", spec.url[:128], f"events {', '.join(e.value for e in spec.events)}")
    url = webhooks.check_url(spec.url)
    hook = Webhook(url=url, secret=webhooks.new_secret(), events=[e.value for e in spec.events])
    session.add(hook)
    session.commit()
    session.refresh(hook)
    audit.target = f"webhook {hook.id} {url}"[:128]
    return WebhookCreated(**webhook_public(session, hook).model_dump(), secret=hook.secret)


@router.get("", summary="Webhooks with their delivery counts")
def list_webhooks(session: SessionDep, _: AdminDep) -> WebhooksPublic:
    hooks = session.exec(select(Webhook).order_by(Webhook.id)).all()  # type: ignore[arg-type]
    data = [webhook_public(session, h) for h in hooks]
    return WebhooksPublic(data=data, count=len(data))


@router.delete("/{webhook_id}", status_code=204, summary="Remove a webhook and its deliveries")
def remove_webhook(webhook_id: RowId, session: SessionDep, audit: AuditDep) -> None:
    audit.about("webhook.remove", f"webhook {webhook_id}")
    hook = session.get(Webhook, webhook_id)
    if hook is None:
        raise NotFoundError(f"no webhook {webhook_id}")
    audit.target = f"webhook {webhook_id} {hook.url}"[:128]
    for d in session.exec(select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)).all():
        session.delete(d)
    session.delete(hook)
    session.commit()


@router.get("/deliveries", summary="Recent deliveries, newest first")
def list_deliveries(
    session: SessionDep, _: AdminDep, webhook_id: RowId | None = None, limit: int = Query(50, ge=1, le=500)
) -> WebhookDeliveriesPublic:
    query = select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(limit)  # type: ignore[union-attr]
    if webhook_id is not None:
        query = query.where(WebhookDelivery.webhook_id == webhook_id)
    rows = session.exec(query).all()
    return WebhookDeliveriesPublic(data=[WebhookDeliveryPublic.model_validate(r) for r in rows], count=len(rows))
