"""Webhooks: signed JSON posts when a rollout halts or finishes and when a channel's manifest is about
to expire.

An event is enqueued as one ``webhook_delivery`` row per subscribed hook, in the transaction that
caused it (a rollout's halt is written by the one process whose compare-and-set won), with a dedupe key
(``rollout.halted:7:2``, ``manifest.expiring:stable:12``) unique per hook, so however many processes
notice an expiring manifest, each hook is owed one post.

Every process sends what is due: it claims a delivery with a compare-and-set on ``claimed_until`` (one
sender at a time; a sender that dies releases it when the claim runs out), posts it, and records the
answer. A 2xx delivers it; anything else, or no answer within ``webhook_timeout``, is retried after
``webhook_backoff`` x 2^(attempt-1) seconds (at most an hour), up to ``webhook_max_attempts``, then it
is ``failed``. Redirects are not followed (the body is signed for the URL the operator gave).

The request: ``POST`` with ``Content-Type: application/json``, ``User-Agent: otaml-webhook/<version>``,
``X-Otaml-Event``, ``X-Otaml-Delivery`` (the event id, the same on every retry: receivers deduplicate on
it) and ``X-Otaml-Signature-256: sha256=<hex HMAC-SHA256 of the exact body, keyed by the hook's
secret>``. The body: ``{"id", "event", "created_at", "data"}``; ``created_at`` is inside the signed body,
so a receiver can refuse old replays.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from otaml import __version__
from otaml.core.errors import FieldError
from otaml.models import Webhook, WebhookDelivery, WebhookEvent

log = logging.getLogger("otaml.webhooks")
SIGNATURE_HEADER = "X-Otaml-Signature-256"
MAX_BACKOFF_S = 3600.0
CLAIM_MARGIN_S = 10.0
BATCH = 20


def new_secret() -> str:
    return secrets.token_hex(32)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_url(url: str) -> str:
    """An http(s) URL with a host, no user info, no fragment, printable ASCII. Raises FieldError."""
    try:
        parsed = httpx.URL(url)
        ok = (parsed.scheme in ("http", "https") and bool(parsed.host) and not parsed.userinfo and not parsed.fragment
              and url.isascii() and url.isprintable() and " " not in url)
    except (httpx.InvalidURL, ValueError, TypeError):
        ok = False
    if not ok:
        raise FieldError(f"url: expected an http(s) URL with a host (no user info, fragment or spaces), got {url[:80]!r}")
    return url


def enqueue(session: Session, event: WebhookEvent, key: str, data: dict[str, Any], now: datetime | None = None) -> int:
    """Owe every hook subscribed to ``event`` one post; an event already owed (same key) is skipped.
    Runs in the caller's transaction. Returns how many deliveries were added."""
    now = now or datetime.now(UTC)
    hooks = [h for h in session.exec(select(Webhook)).all() if event.value in h.events]
    if not hooks:
        return 0
    event_id = f"{event.value}:{key}"[:128]
    body = json.dumps({"id": event_id, "event": event.value, "created_at": now.isoformat(), "data": data},
                      separators=(",", ":"), default=str)
    table = WebhookDelivery.__table__  # type: ignore[attr-defined]
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    rows = [{"webhook_id": h.id, "event": event.value, "dedupe": event_id, "payload": body, "state": "pending",
             "attempts": 0, "next_attempt_at": now, "last_error": "", "created_at": now} for h in hooks]
    result = session.connection().execute(insert(table).on_conflict_do_nothing(index_elements=["webhook_id", "dedupe"]), rows)
    return result.rowcount if result.rowcount and result.rowcount > 0 else 0


def backoff(attempts: int, base: float) -> float:
    return min(base * 2 ** max(attempts - 1, 0), MAX_BACKOFF_S)


def deliver_due(engine: Engine, *, base_backoff: float, max_attempts: int, timeout: float,
                now: datetime | None = None) -> int:
    """Send the deliveries that are due (at most BATCH); returns how many were attempted."""
    now = now or datetime.now(UTC)
    with Session(engine) as session:
        due = session.exec(
            select(WebhookDelivery.id, WebhookDelivery.webhook_id)  # type: ignore[call-overload]
            .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now,
                   or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now))  # type: ignore[union-attr, operator]
            .order_by(WebhookDelivery.next_attempt_at).limit(BATCH)
        ).all()
    attempted = 0
    for delivery_id, _hook_id in due:
        if _claim(engine, delivery_id, now, timeout):
            _send(engine, delivery_id, base_backoff=base_backoff, max_attempts=max_attempts, timeout=timeout)
            attempted += 1
    return attempted


def _claim(engine: Engine, delivery_id: int, now: datetime, timeout: float) -> bool:
    with Session(engine) as session:
        result = session.exec(
            update(WebhookDelivery)  # type: ignore[call-overload]
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.state == "pending",  # type: ignore[arg-type]
                   or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now))  # type: ignore[union-attr, operator]
            .values(claimed_until=now + timedelta(seconds=timeout + CLAIM_MARGIN_S))
        )
        session.commit()
        return result.rowcount == 1


def _send(engine: Engine, delivery_id: int, *, base_backoff: float, max_attempts: int, timeout: float) -> None:
    with Session(engine) as session:  # read, then let the connection go while the post is in flight
        delivery = session.get(WebhookDelivery, delivery_id)
        hook = session.get(Webhook, delivery.webhook_id) if delivery else None
        if delivery is None or hook is None:
            return
        url, secret, body, event, event_id = hook.url, hook.secret, delivery.payload.encode(), delivery.event, delivery.dedupe
    headers = {"Content-Type": "application/json", "User-Agent": f"otaml-webhook/{__version__}",
               "X-Otaml-Event": event, "X-Otaml-Delivery": event_id, SIGNATURE_HEADER: sign(secret, body)}
    status: int | None = None
    error = ""
    try:
        r = httpx.post(url, content=body, headers=headers, timeout=timeout, follow_redirects=False)
        status = r.status_code
        if not 200 <= status < 300:
            error = f"HTTP {status}"
    except httpx.HTTPError as e:
        error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
    with Session(engine) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return
        now = datetime.now(UTC)
        delivery.attempts += 1
        delivery.last_status = status
        delivery.last_error = error[:256]
        delivery.claimed_until = None
        if not error:
            delivery.state, delivery.delivered_at = "delivered", now
        elif delivery.attempts >= max_attempts:
            delivery.state = "failed"
            log.warning("webhook %s gave up on %s after %d attempts: %s", url, event_id, delivery.attempts, error)
        else:
            delivery.next_attempt_at = now + timedelta(seconds=backoff(delivery.attempts, base_backoff))
        session.add(delivery)
        session.commit()
