"""Periodic work every server process does, all of it safe to run in several processes at once:
pruning history past its retention (deletes are idempotent) and owing webhooks for manifests that are
about to expire (deduplicated per manifest)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from otaml.core.config import Settings
from otaml.fleet.history import Retention, prune
from otaml.models import Release, WebhookEvent
from otaml.ops import webhooks
from otaml.releases.publishing import current_manifest

EXPIRY_WARNING = timedelta(days=7)  # the dashboard's warning, too


def retention(settings: Settings) -> Retention:
    return Retention(minute_hours=settings.history_minute_retention, hour_days=settings.history_hour_retention,
                     device_days=settings.device_history_retention, audit_days=settings.audit_retention)


def expiring_manifests(session: Session, now: datetime) -> int:
    """Owe a manifest.expiring post for each channel whose current manifest expires within a week."""
    owed = 0
    for channel in session.exec(select(Release.channel).distinct()).all():
        m = current_manifest(session, channel)
        if m is None:
            continue
        expires = m.expires if m.expires.tzinfo else m.expires.replace(tzinfo=UTC)
        if expires - now < EXPIRY_WARNING:
            release = session.get(Release, m.release_id)
            data = {"channel": channel, "version": release.version if release else None, "manifest_version": m.manifest_version,
                    "expires": expires.isoformat(), "expired": expires <= now,
                    "action": f"release refresh --channel {channel}"}
            owed += webhooks.enqueue(session, WebhookEvent.MANIFEST_EXPIRING, f"{channel}:{m.manifest_version}", data, now)
    return owed


def run(engine: Engine, settings: Settings, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    with engine.begin() as conn:
        prune(conn, retention(settings), now)
    with Session(engine) as session:
        expiring_manifests(session, now)
        session.commit()
