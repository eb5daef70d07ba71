"""/metrics in Prometheus' text format (prometheus-client), collected at scrape time.

The poll path only adds 1 to plain ints (``Counters``: the poll layer runs on one event loop, so no
lock); nothing is registered or labelled per request. A scrape reads them, the check-in buffer's totals
and a few GROUP BYs (rollouts by state, devices by version).

Several processes: a scrape reaches one of them. Each process writes its counters to
``DATA_DIR/metrics/<host>-<pid>.json`` every few seconds (``Snapshots``), and a scrape reports every
process's counters that are fresh, each series labelled with its ``process``, so every series stays
monotonic (``sum by () (rate(otaml_polls_total[5m]))`` is the fleet's poll rate). A process that stopped
disappears after ``STALE_S``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from otaml.models import Device, Release, Rollout, RolloutState, WebhookDelivery
from otaml.ops import mqtt

log = logging.getLogger("otaml.metrics")
STALE_S = 120.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Counters:
    polls: int = 0  # poll requests answered (any status)
    not_modified: int = 0  # of which 304


def process_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:64]


class Snapshots:
    """This process's counters on disk, and the other processes' read back."""

    def __init__(self, data_dir: Path):
        self.dir = data_dir / "metrics"
        self.name = process_name()

    def write(self, values: dict[str, int]) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = self.dir / f".{self.name}.tmp"
            tmp.write_text(json.dumps({"at": time.time(), "values": values}))
            tmp.replace(self.dir / f"{self.name}.json")
        except OSError as e:  # a read-only or full data dir costs the other processes' view, nothing else
            log.warning("cannot write the metrics snapshot: %s", e)

    def others(self) -> Iterator[tuple[str, dict[str, int]]]:
        try:
            files = list(self.dir.glob("*.json"))
        except OSError:
            return
        now = time.time()
        for path in files:
            name = path.stem
            if name == self.name:
                continue
            try:
                doc = json.loads(path.read_text())
                fresh = now - float(doc["at"]) < STALE_S
                values = {str(k): int(v) for k, v in doc["values"].items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                continue  # a half-written or foreign file is not a process
            if fresh:
                yield name, values


COUNTERS = {
    "polls": ("otaml_polls", "Manifest polls (device check-ins) answered, any status"),
    "not_modified": ("otaml_polls_not_modified", "Polls answered 304 Not Modified"),
    "checkins_written": ("otaml_checkins_written", "Check-ins stored by the batched flush (newest report per device per flush)"),
    "checkins_dropped": ("otaml_checkins_dropped", "Check-ins the database refused even alone (logged one by one)"),
    "mqtt_published": ("otaml_mqtt_published", "Messages the MQTT bridge handed to its broker"),
    "mqtt_dropped": ("otaml_mqtt_dropped", "Messages the MQTT bridge dropped, oldest first, while its queue was full (broker away or slow)"),
}


class OtamlCollector(Collector):
    def __init__(self, ctx) -> None:  # type: ignore[no-untyped-def]
        self.ctx = ctx

    def own(self) -> dict[str, int]:
        c = self.ctx.counters
        bridge = mqtt.bridge()
        return {"polls": c.polls, "not_modified": c.not_modified, "checkins_written": self.ctx.checkins.written,
                "checkins_dropped": self.ctx.checkins.dropped, "mqtt_published": bridge.published if bridge else 0,
                "mqtt_dropped": bridge.dropped if bridge else 0}

    def collect(self):  # type: ignore[no-untyped-def]
        processes = [(self.ctx.snapshots.name, self.own()), *self.ctx.snapshots.others()]
        for key, (name, text) in COUNTERS.items():
            family = CounterMetricFamily(name, text, labels=["process"])
            for process, values in processes:
                family.add_metric([process], values.get(key, 0))
            yield family
        pending = GaugeMetricFamily("otaml_checkins_pending", "Check-ins waiting for this process's next flush")
        pending.add_metric([], self.ctx.checkins.pending())
        yield pending
        if (bridge := mqtt.bridge()) is not None:
            queued = GaugeMetricFamily("otaml_mqtt_pending", "Messages waiting in this process's MQTT bridge queue")
            queued.add_metric([], bridge.pending())
            yield queued
            up = GaugeMetricFamily("otaml_mqtt_connected", "1 while this process's MQTT bridge is connected to its broker")
            up.add_metric([], int(bridge.connected))
            yield up
        yield from _database(self.ctx.engine)


def _database(engine: Engine):  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        by_state = dict(session.exec(select(Rollout.state, func.count()).group_by(Rollout.state)).all())  # type: ignore[call-overload]
        rollouts = GaugeMetricFamily("otaml_rollouts", "Rollouts by state", labels=["state"])
        for state in RolloutState:
            rollouts.add_metric([state.value], by_state.get(state.value, 0))
        yield rollouts
        # Versions are labelled only if they are releases of the device's channel: a device can report
        # any string, and a label per string would let a fleet blow up the scraper's series.
        published = {(c, v) for c, v in session.exec(select(Release.channel, Release.version)).all()}  # type: ignore[call-overload]
        devices = GaugeMetricFamily("otaml_devices", "Devices by channel and running version (unpublished versions as 'other')",
                                    labels=["channel", "version"])
        counts: dict[tuple[str, str], int] = {}
        for channel, version, n in session.exec(
            select(Device.channel, Device.version, func.count()).group_by(Device.channel, Device.version)  # type: ignore[call-overload]
        ).all():
            key = (channel or "none", version if (channel, version) in published else "other")
            counts[key] = counts.get(key, 0) + n
        for (channel, version), n in sorted(counts.items()):
            devices.add_metric([channel, version], n)
        yield devices
        states = dict(session.exec(select(WebhookDelivery.state, func.count()).group_by(WebhookDelivery.state)).all())  # type: ignore[call-overload]
        deliveries = GaugeMetricFamily("otaml_webhook_deliveries", "Webhook deliveries by state", labels=["state"])
        for state in ("pending", "delivered", "failed"):
            deliveries.add_metric([state], states.get(state, 0))
        yield deliveries


def exposition(ctx) -> bytes:  # type: ignore[no-untyped-def]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OtamlCollector(ctx))
    return generate_latest(registry)


def snapshot(ctx) -> None:  # type: ignore[no-untyped-def]
    ctx.snapshots.write(OtamlCollector(ctx).own())

