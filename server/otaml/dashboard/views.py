"""What each dashboard page shows, gathered with a handful of aggregate queries so a page costs the
same at 100k devices as at 100 (tables are paginated; charts are GROUP BY)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import desc
from sqlmodel import Session, col, func, select

from otaml.dashboard import timecharts
from otaml.dashboard.charts import Bar, bar_chart
from otaml.fleet import stored
from otaml.fleet.attempts import Attempt, group
from otaml.fleet.insight import FleetHistory, Range, Series, device_history, fleet_history
from otaml.fleet.search import DeviceFilter, search
from otaml.fleet.twins import Drift, device_state, drift_condition
from otaml.models import (
    ACTIVE_ROLLOUT_STATES,
    Device,
    DeviceCredentials,
    DeviceEvent,
    DeviceState,
    DeviceStatus,
    Manifest,
    Release,
    Rollout,
    RolloutPublic,
)
from otaml.releases.publishing import current_manifest
from otaml.rollouts import service
from otaml.rollouts.policy import FleetPolicy

PAGE_SIZE = 50
TOP_VERSIONS = 8
EXPIRY_WARNING = timedelta(days=7)


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


@dataclass
class ChannelRow:
    name: str
    version: str
    manifest_version: int
    expires: datetime
    expires_soon: bool


@dataclass
class Overview:
    devices: int
    online: int
    never_seen: int
    firmware_drift: int
    config_drift: int
    version_chart: str
    versions: list[tuple[str, int]]
    rollouts: list[RolloutPublic]
    channels: list[ChannelRow]
    recent: list[Attempt]  # the latest update attempts, one row each
    online_window_s: int
    range: Range = Range.HOUR
    charts: dict[str, str] = field(default_factory=dict)


def history_charts(h: FleetHistory, *, versions: bool = True) -> dict[str, str]:
    """The history charts of the overview and the release page."""
    charts = {
        "checkins": timecharts.time_chart(h.checkins, title="Polls", testid="chart-polls"),
        "devices": timecharts.time_chart(h.devices, title="Devices checking in", testid="chart-online"),
        "outcomes": timecharts.time_chart(h.outcomes, title="Update events", testid="chart-outcomes"),
        "class_rates": timecharts.time_chart(h.class_rates, title="Predictions per class", stacked=True, percent=True,
                                             testid="chart-classes"),
        "latency": timecharts.time_chart(h.latency, title="Mean inference latency", unit=" us", testid="chart-latency"),
    }
    if versions:
        charts["versions"] = timecharts.time_chart(h.versions, title="Devices per version", stacked=True, testid="chart-versions")
    return charts


RECENT_EVENTS = 400  # grouped into attempts; the overview shows the newest RECENT_ATTEMPTS
RECENT_ATTEMPTS = 12


def overview(session: Session, policy: FleetPolicy, poll_interval: int, r: Range = Range.HOUR) -> Overview:
    now = datetime.now(UTC)
    window = 3 * poll_interval
    total = session.exec(select(func.count()).select_from(Device)).one()
    online = session.exec(select(func.count()).select_from(Device).where(Device.last_seen >= now - timedelta(seconds=window))).one()  # type: ignore[operator]
    never = session.exec(select(func.count()).select_from(Device).where(Device.last_seen.is_(None))).one()  # type: ignore[union-attr]
    fw = session.exec(select(func.count()).select_from(Device).where(drift_condition(session, policy, Drift.FIRMWARE))).one()
    cfg = session.exec(select(func.count()).select_from(Device).where(drift_condition(session, policy, Drift.CONFIG))).one()

    counts = session.exec(
        select(Device.version, func.count().label("n")).group_by(Device.version).order_by(desc("n"))  # type: ignore[call-overload]
    ).all()
    versions = [(v or "never reported", n) for v, n in counts]
    shown = versions[:TOP_VERSIONS]
    rest = sum(n for _, n in versions[TOP_VERSIONS:])
    bars = [Bar(v, n) for v, n in shown] + ([Bar("other", rest, "#9ca3af")] if rest else [])

    recent_rollouts = session.exec(select(Rollout).order_by(Rollout.id.desc()).limit(6)).all()  # type: ignore[union-attr]
    active_first = sorted(recent_rollouts, key=lambda r: (r.state not in ACTIVE_ROLLOUT_STATES, -(r.id or 0)))

    channels = []
    for name in session.exec(select(Release.channel).distinct()).all():
        m: Manifest | None = current_manifest(session, name)
        if m is None:
            continue
        release = session.get(Release, m.release_id)
        expires = _utc(m.expires)
        channels.append(ChannelRow(name, release.version if release else "?", m.manifest_version, expires, expires - now < EXPIRY_WARNING))

    recent = session.exec(select(DeviceEvent).order_by(DeviceEvent.id.desc()).limit(RECENT_EVENTS)).all()  # type: ignore[union-attr]

    return Overview(
        devices=total, online=online, never_seen=never, firmware_drift=fw, config_drift=cfg,
        version_chart=bar_chart(bars, title="Devices per running version"), versions=versions,
        rollouts=[service.public(session, ro) for ro in active_first], channels=sorted(channels, key=lambda c: c.name),
        recent=group(recent)[:RECENT_ATTEMPTS], online_window_s=window, range=r,
        charts=history_charts(fleet_history(session, r)),
    )


@dataclass
class DevicePage:
    rows: list[Device]
    count: int
    page: int
    pages: int
    filters: DeviceFilter
    versions: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    status: dict[str, str] = field(default_factory=dict)  # device id -> pending / revoked (active ones absent)


def _statuses(session: Session, ids: list[str]) -> dict[str, str]:
    if not ids:
        return {}
    rows = session.exec(select(DeviceCredentials).where(col(DeviceCredentials.device_id).in_(ids))).all()
    return {r.device_id: r.status for r in rows if r.status != DeviceStatus.ACTIVE}


def device_table(session: Session, policy: FleetPolicy, f: DeviceFilter, page: int) -> DevicePage:
    rows, count = search(session, policy, f, (page - 1) * PAGE_SIZE, PAGE_SIZE)
    pages = max(1, -(-count // PAGE_SIZE))
    versions = [v for v in session.exec(select(Device.version).distinct().order_by(Device.version)).all() if v]
    channels = [c for c in session.exec(select(Device.channel).distinct().order_by(Device.channel)).all() if c]
    return DevicePage(rows, count, page, pages, f, versions, channels, _statuses(session, [d.device_id for d in rows]))


@dataclass
class DeviceDetail:
    device: Device
    tags: list[str]
    state: DeviceState
    events: list[DeviceEvent]
    counters_chart: str
    counters: dict[str, int]
    attempts: list[Attempt] = field(default_factory=list)
    range: Range = Range.DAY
    charts: dict[str, str] = field(default_factory=dict)
    status: str = DeviceStatus.ACTIVE


def device_detail(session: Session, policy: FleetPolicy, device: Device, r: Range = Range.DAY) -> DeviceDetail:
    events = session.exec(
        select(DeviceEvent).where(DeviceEvent.device_id == device.device_id).order_by(DeviceEvent.id.desc()).limit(200)  # type: ignore[union-attr]
    ).all()
    counters = stored.counts(device.ml_counters, "ml_counters") or {}
    chart = bar_chart([Bar(k, v) for k, v in counters.items()], title="Predictions per class since boot")
    h = device_history(session, device.device_id, r)
    charts = {
        "class_rates": timecharts.time_chart(h.class_rates, title="Predictions per class (per hour)", stacked=True, percent=True,
                                             testid="device-chart-classes"),
        "latency": timecharts.time_chart(h.latency, title="Mean inference latency", unit=" us", testid="device-chart-latency"),
        "rssi": _rssi_chart(h.rssi),
        "heap": timecharts.time_chart(h.heap, title="Heap (bytes)", testid="device-chart-heap"),
        "checkins": timecharts.time_chart(h.checkins, title="Check-ins per hour", testid="device-chart-checkins"),
    }
    return DeviceDetail(device, stored.tags(device.tags), device_state(policy, device), list(events[:50]), chart, counters,
                        group(events), r, charts,
                        _statuses(session, [device.device_id]).get(device.device_id, DeviceStatus.ACTIVE))


def _rssi_chart(series: Series) -> str:
    """RSSI is negative (dBm); drawn as signal above the floor of -100 dBm so a stronger signal is higher."""
    shifted = Series(series.resolution, series.starts,
                     {"signal above -100 dBm": [None if v is None else max(v + 100, 0) for v in series.lines["rssi"]]})
    return timecharts.time_chart(shifted, title="Wi-Fi signal (dB above -100 dBm)", unit=" dB", testid="device-chart-rssi")
