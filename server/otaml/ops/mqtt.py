"""MQTT bridge: fleet events to the operator's broker (optional: ``OTAML_MQTT_URL``), beside the webhooks.

Plant systems built on the edge-ML recipe read their devices' results from a Mosquitto broker; this
bridge puts the fleet's own events there too, under one documented topic tree (manifests/README.md,
"MQTT"; payloads in manifests/schemas/mqtt.schema.json)::

    PREFIX/devices/DEVICE/state     retained: what the device last reported (version, slot, OTA state, config)
    PREFIX/devices/DEVICE/events    each update event the device posts (download_started .. rolled_back)
    PREFIX/devices/DEVICE/ml        per-check-in ML counter deltas (predictions per class since the last one)
    PREFIX/rollouts/ID              retained: a rollout's state change (started, advanced, halted, done, ...)

Nothing that answers a device waits for the broker: ``offer`` appends to a bounded queue under a lock
and returns; a sender thread publishes while paho's network thread is connected (it reconnects with a
backoff of 1 s doubling to ``OTAML_MQTT_RECONNECT_MAX``). When the queue is full the oldest message is
dropped and counted (``dropped``: /api/info and /metrics), so a broker outage costs MQTT messages and
nothing else. Each server process runs its own bridge and publishes what it handled.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from otaml.core.config import Settings

log = logging.getLogger("otaml.mqtt")
STATE_MEMORY = 100_000  # devices whose last retained state this process remembers (to publish changes only)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def split_url(url: str) -> tuple[str, int, bool]:
    tls = url.startswith("mqtts://")
    rest = url[8 if tls else 7 :]
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail[1:]
    else:
        host, _, port = rest.partition(":")
    return host, int(port) if port else (8883 if tls else 1883), tls


class MqttBridge:
    def __init__(self, settings: Settings) -> None:
        import paho.mqtt.client as paho  # only servers that bridge need the package loaded

        self.prefix = settings.mqtt_prefix
        self.limit = settings.mqtt_queue
        self.qos = settings.mqtt_qos
        self.url = settings.mqtt_url
        self.dropped = 0  # messages pushed out of the full queue (the broker was away or slow)
        self.published = 0
        self._queue: deque[tuple[str, bytes, bool]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._states: OrderedDict[str, int] = OrderedDict()  # device -> hash of its last published state
        self._stop = False
        self._connected = threading.Event()
        host, port, tls = split_url(settings.mqtt_url)
        client_id = settings.mqtt_client_id or f"otaml-server-{threading.get_native_id()}-{int(time.time())}"
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id)
        if settings.mqtt_username:
            self._client.username_pw_set(settings.mqtt_username, settings.mqtt_password or None)
        if tls:
            self._client.tls_set(ca_certs=str(settings.mqtt_ca_file) if settings.mqtt_ca_file else None)
        self._client.reconnect_delay_set(min_delay=1, max_delay=int(settings.mqtt_reconnect_max))
        self._client.max_queued_messages_set(self.limit)  # paho's own buffer is bounded too
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.connect_async(host, port, keepalive=30)
        self._client.loop_start()  # paho's network thread: connects, reconnects with the backoff above
        self._sender = threading.Thread(target=self._run, name="otaml-mqtt", daemon=True)
        self._sender.start()
        log.info("MQTT bridge to %s, topics under %s/", settings.mqtt_url, self.prefix)

    # ---- paho callbacks (its network thread) ----

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        if getattr(reason_code, "is_failure", False):
            log.warning("MQTT broker %s refused the connection: %s", self.url, reason_code)
            return
        log.info("MQTT bridge connected to %s", self.url)
        self._connected.set()
        with self._wake:
            self._wake.notify()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any = None) -> None:
        if self._connected.is_set():
            log.warning("MQTT broker %s away (%s): queueing at most %d messages", self.url, reason_code, self.limit)
        self._connected.clear()

    # ---- the queue ----

    def offer(self, topic: str, payload: Mapping[str, Any], retain: bool = False) -> None:
        """Queue one message; never waits for the broker. Full: the oldest message is dropped."""
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()
        with self._wake:
            if len(self._queue) >= self.limit:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append((topic, body, retain))
            self._wake.notify()

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stop and (not self._queue or not self._connected.is_set()):
                    self._wake.wait(0.5)
                if self._stop:
                    return
                topic, body, retain = self._queue.popleft()
            try:
                info = self._client.publish(topic, body, qos=self.qos, retain=retain)
            except Exception:  # paho refused the message itself: lose it, keep the thread
                log.exception("MQTT publish to %s failed", topic[:120])
                self.dropped += 1
                continue
            if info.rc == 0:
                self.published += 1
            else:  # lost between the check and the send: put it back for the reconnect
                with self._wake:
                    self._queue.appendleft((topic, body, retain))
                    if len(self._queue) > self.limit:
                        self._queue.pop()
                        self.dropped += 1
                self._connected.wait(0.5)

    def close(self, timeout: float = 2.0) -> None:
        """Publish what is queued if the broker is there (at most ``timeout`` seconds), then stop."""
        deadline = time.monotonic() + timeout
        while self.connected and self.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        with self._wake:
            self._stop = True
            self._wake.notify()
        self._sender.join(timeout=1)
        self._client.disconnect()
        self._client.loop_stop()

    # ---- the fleet's events ----

    def device_event(self, device_id: str, *, kind: str, version: str | None, reason: str, detail: str,
                     channel: str | None, at: datetime) -> None:
        self.offer(f"{self.prefix}/devices/{device_id}/events",
                   {"kind": "device_event", "device_id": device_id, "channel": channel, "event": kind,
                    "version": version, "reason": reason, "detail": detail, "at": at.isoformat()})

    def device_checkin(self, checkin: Any, delta: Mapping[str, int], restarted: bool) -> None:
        """The retained state when it changed, and the ML counter delta when there is one."""
        c = checkin
        at = c.last_seen.isoformat()
        state = {"kind": "device_state", "device_id": c.device_id, "channel": c.channel, "version": c.version,
                 "partition": c.partition, "ota_state": c.ota_state, "manifest_version": c.manifest_version,
                 "config_revision": c.config_revision, "model": c.ml_model}
        key = hash(tuple(state.values()))
        if self._states.get(c.device_id) != key:
            self._states[c.device_id] = key
            self._states.move_to_end(c.device_id)
            if len(self._states) > STATE_MEMORY:
                self._states.popitem(last=False)
            self.offer(f"{self.prefix}/devices/{c.device_id}/state", {**state, "at": at}, retain=True)
        if delta:
            self.offer(f"{self.prefix}/devices/{c.device_id}/ml",
                       {"kind": "ml_counters", "device_id": c.device_id, "channel": c.channel, "version": c.version,
                        "model": c.ml_model, "delta": dict(sorted(delta.items())), "restarted": restarted,
                        "latency_us": c.ml_latency_us, "at": at})

    def rollout(self, event: str, rollout: Any, *, state: str | None = None, ring: int | None = None,
                halt_reason: str | None = None) -> None:
        self.offer(f"{self.prefix}/rollouts/{rollout.id}",
                   {"kind": "rollout", "event": event, "rollout_id": rollout.id, "channel": rollout.channel,
                    "version": rollout.version, "state": str(state or rollout.state), "ring": rollout.stage if ring is None else ring,
                    "rings": list(rollout.rings), "halt_reason": halt_reason if halt_reason is not None else (rollout.halt_reason or ""),
                    "at": _now()}, retain=True)


# One bridge per server process (None: not configured). The rollout service and the routes reach it here
# rather than through every call signature between them.
_bridge: MqttBridge | None = None


def start(settings: Settings) -> MqttBridge | None:
    global _bridge
    if settings.mqtt_url and _bridge is None:
        _bridge = MqttBridge(settings)
    return _bridge


def bridge() -> MqttBridge | None:
    return _bridge


def checkins_written(items: list[Any], deltas: Mapping[str, tuple[dict[str, int], bool]]) -> None:
    """CheckinBuffer.on_written: the flushed batch (committed), with each device's ML delta."""
    b = _bridge
    if b is None:
        return
    for c in items:
        delta, restarted = deltas.get(c.device_id, ({}, False))
        b.device_checkin(c, delta, restarted)


def stop() -> None:
    global _bridge
    if _bridge is not None:
        _bridge.close()
        _bridge = None
