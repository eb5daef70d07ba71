"""What the releases, release, rollouts, audit and webhooks pages show: aggregates over releases (devices
on each, outcomes by reason from the outcome buckets) and paginated lists, so a page costs the same at
100k devices as at 100."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlmodel import Session, func, select

from otaml.api.routes.webhooks import webhook_public
from otaml.core.db import sum_int
from otaml.dashboard.views import history_charts
from otaml.fleet.history import HOUR
from otaml.fleet.insight import FleetHistory, Range, fleet_history
from otaml.models import (
    ACTIVE_ROLLOUT_STATES,
    AuditEntry,
    Device,
    HistoryOutcome,
    Manifest,
    Release,
    Rollout,
    RolloutPublic,
    Webhook,
    WebhookDelivery,
    WebhookPublic,
)
from otaml.ops.housekeeping import EXPIRY_WARNING
from otaml.releases.publishing import current_manifest
from otaml.rollouts import service

PAGE = 30
FAILED_KINDS = ("rolled_back", "rejected")


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@dataclass
class ReleaseRow:
    release: Release
    baseline: bool  # the channel's current (non-staged) release
    manifest_version: int | None
    expires: datetime | None
    expires_soon: bool
    devices: int
    outcomes: dict[str, int]  # "kind (reason)" -> count
    confirmed: int
    failed: int
    rollout: Rollout | None  # its unfinished rollout, if any

    @property
    def failure_rate(self) -> float | None:
        done = self.confirmed + self.failed
        return self.failed / done if done else None

    @property
    def can_start(self) -> bool:
        return self.release.staged and self.rollout is None


@dataclass
class ReleasesPage:
    rows: list[ReleaseRow]
    page: int
    pages: int
    channel: str | None
    channels: list[str] = field(default_factory=list)


def _outcomes(session: Session, keys: list[tuple[str, str]]) -> dict[tuple[str, str], dict[str, int]]:
    """Outcome counts by (channel, version) from the hour buckets (kept history_hour_retention days)."""
    if not keys:
        return {}
    o = HistoryOutcome
    versions = sorted({v for _, v in keys})
    rows = session.exec(  # type: ignore[call-overload]
        select(o.channel, o.version, o.kind, o.reason, sum_int(o.count))
        .where(o.resolution == HOUR, o.version.in_(versions), o.kind.in_(["confirmed", *FAILED_KINDS]))  # type: ignore[attr-defined]
        .group_by(o.channel, o.version, o.kind, o.reason)
    ).all()
    out: dict[tuple[str, str], dict[str, int]] = {}
    for channel, version, kind, reason, n in rows:
        label = kind if kind == "confirmed" else f"{kind} ({reason})"
        out.setdefault((channel, version), {})[label] = int(n or 0)
    return out


def _row(session: Session, r: Release, baseline_ids: set[int], devices: dict[tuple[str, str], int],
         outcomes: dict[tuple[str, str], dict[str, int]], active: dict[int, Rollout], now: datetime) -> ReleaseRow:
    m = session.exec(
        select(Manifest).where(Manifest.release_id == r.id).order_by(Manifest.manifest_version.desc()).limit(1)  # type: ignore[union-attr]
    ).first()
    expires = _utc(m.expires) if m else None
    oc = outcomes.get((r.channel, r.version), {})
    failed = sum(n for k, n in oc.items() if k.startswith(FAILED_KINDS) and "server_unreachable" not in k)
    return ReleaseRow(
        release=r, baseline=r.id in baseline_ids, manifest_version=m.manifest_version if m else None, expires=expires,
        expires_soon=expires is not None and expires - now < EXPIRY_WARNING, devices=devices.get((r.channel, r.version), 0),
        outcomes=dict(sorted(oc.items(), key=lambda kv: -kv[1])), confirmed=oc.get("confirmed", 0), failed=failed,
        rollout=active.get(r.id or 0),
    )


def releases(session: Session, page: int, channel: str | None = None) -> ReleasesPage:
    now = datetime.now(UTC)
    query = select(Release)
    count_q = select(func.count()).select_from(Release)
    if channel:
        query, count_q = query.where(Release.channel == channel), count_q.where(Release.channel == channel)
    total = session.exec(count_q).one()
    chosen = session.exec(query.order_by(Release.id.desc()).offset((page - 1) * PAGE).limit(PAGE)).all()  # type: ignore[union-attr]
    channels = sorted(session.exec(select(Release.channel).distinct()).all())
    baseline_ids = set()
    for c in channels:
        m = current_manifest(session, c)
        if m is not None:
            baseline_ids.add(m.release_id)
    keys = [(r.channel, r.version) for r in chosen]
    devices = {}
    if keys:
        for c, v, n in session.exec(  # type: ignore[call-overload]
            select(Device.channel, Device.version, func.count())
            .where(Device.version.in_(sorted({v for _, v in keys})))  # type: ignore[union-attr]
            .group_by(Device.channel, Device.version)
        ).all():
            devices[(c, v)] = n
    active = {ro.release_id: ro for ro in session.exec(
        select(Rollout).where(Rollout.state.in_(ACTIVE_ROLLOUT_STATES))).all()}  # type: ignore[attr-defined]
    outcomes = _outcomes(session, keys)
    rows = [_row(session, r, baseline_ids, devices, outcomes, active, now) for r in chosen]
    return ReleasesPage(rows, page, max(1, -(-total // PAGE)), channel, channels)


@dataclass
class ReleaseDetail:
    row: ReleaseRow
    rollouts: list[RolloutPublic]
    history: FleetHistory
    range: Range
    charts: dict[str, str]


def release_detail(session: Session, release: Release, r: Range) -> ReleaseDetail:
    now = datetime.now(UTC)
    baseline = current_manifest(session, release.channel)
    devices = session.exec(
        select(func.count()).select_from(Device).where(Device.channel == release.channel, Device.version == release.version)
    ).one()
    active = {ro.release_id: ro for ro in session.exec(
        select(Rollout).where(Rollout.state.in_(ACTIVE_ROLLOUT_STATES))).all()}  # type: ignore[attr-defined]
    outcomes = _outcomes(session, [(release.channel, release.version)])
    row = _row(session, release, {baseline.release_id} if baseline else set(), {(release.channel, release.version): devices},
               outcomes, active, now)
    rollouts = session.exec(select(Rollout).where(Rollout.release_id == release.id).order_by(Rollout.id.desc())).all()  # type: ignore[union-attr]
    h = fleet_history(session, r, channel=release.channel, version=release.version)
    return ReleaseDetail(row, [service.public(session, ro) for ro in rollouts], h, r, history_charts(h, versions=False))


@dataclass
class RolloutsPage:
    rows: list[RolloutPublic]
    page: int
    pages: int


def rollouts(session: Session, page: int) -> RolloutsPage:
    total = session.exec(select(func.count()).select_from(Rollout)).one()
    rows = session.exec(select(Rollout).order_by(Rollout.id.desc()).offset((page - 1) * PAGE).limit(PAGE)).all()  # type: ignore[union-attr]
    return RolloutsPage([service.public(session, r) for r in rows], page, max(1, -(-total // PAGE)))


@dataclass
class AuditPage:
    rows: list[AuditEntry]
    page: int
    pages: int
    count: int
    outcome: str


def audit(session: Session, page: int, outcome: str = "") -> AuditPage:
    conds = [AuditEntry.outcome == outcome] if outcome else []
    total = session.exec(select(func.count()).select_from(AuditEntry).where(*conds)).one()
    rows = session.exec(
        select(AuditEntry).where(*conds).order_by(AuditEntry.id.desc()).offset((page - 1) * 50).limit(50)  # type: ignore[union-attr]
    ).all()
    return AuditPage(list(rows), page, max(1, -(-total // 50)), total, outcome)


@dataclass
class WebhooksPage:
    hooks: list[WebhookPublic]
    deliveries: list[WebhookDelivery]
    urls: dict[int, str]


def webhooks(session: Session) -> WebhooksPage:
    hooks = session.exec(select(Webhook).order_by(Webhook.id)).all()  # type: ignore[arg-type]
    deliveries = session.exec(select(WebhookDelivery).order_by(WebhookDelivery.id.desc()).limit(50)).all()  # type: ignore[union-attr]
    return WebhooksPage([webhook_public(session, h) for h in hooks], list(deliveries), {h.id: h.url for h in hooks})  # type: ignore[misc]
