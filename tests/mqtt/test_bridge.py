"""The server's MQTT bridge against a real Mosquitto: device update events, the retained device state,
ML counter deltas from check-ins and a rollout that halts, each on its documented topic and valid by
manifests/mqtt.schema.json; with the broker stopped, polls, check-ins and updates go on at their pace,
the bridge's queue stays at its bound and counts what it dropped, and it reconnects when the broker is back."""

from __future__ import annotations

import json
import time

import jsonschema
import pytest

from tests.mqtt.conftest import SCHEMA, Subscriber
from tests.utils.devices import HttpDevice, ring_bucket
from tests.utils.processes import Cli, ServerProcess
from tests.utils.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def bridged(tmp_path, database_url, bridge_env):
    """A server whose bridge publishes to the test broker (small queue, so the bound shows)."""
    srv = ServerProcess(tmp_path / "data", database_url=database_url,
                        env_extra={**bridge_env, "OTAML_MQTT_QUEUE": "50", "OTAML_MQTT_PREFIX": "site-3/otaml"}).start()
    yield srv
    srv.stop()


@pytest.fixture
def cli(bridged, signing_key_path, tmp_path) -> Cli:
    return Cli(bridged, signing_key_path, tmp_path)


def info(server) -> dict:
    with server.admin() as admin:
        return admin.get("/api/info").json()["mqtt"]


def valid(messages: list[dict]) -> list[dict]:
    for m in messages:
        jsonschema.validate(m, SCHEMA)
    return messages


def test_device_events_state_and_ml_deltas_arrive_on_their_topics(bridged, cli, make_image, subscriber):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    assert cli("publish", "1.2", str(make_image("1.2"))).returncode == 0
    dev = HttpDevice.enroll(bridged, "amp-1", version="1.1", extra={"X-Otaml-Ml-Counters": "healthy=5,unstable=1"})
    assert dev.poll().status_code == 200
    dev.update_to("1.2")
    dev.extra = {"X-Otaml-Ml-Counters": "healthy=9,unstable=1,failsoon=2"}
    assert dev.poll().status_code == 200

    events = wait_for(lambda: (e := subscriber.json("site-3/otaml/devices/amp-1/events")) and len(e) == 5 and e,
                      what="five update events")
    assert [e["event"] for e in valid(events)] == ["download_started", "verified", "installed", "booted", "confirmed"]
    assert all(e["version"] == "1.2" and e["channel"] == "stable" and e["device_id"] == "amp-1" for e in events), events

    ml = wait_for(lambda: (m := subscriber.json("site-3/otaml/devices/amp-1/ml")) and len(m) == 2 and m, what="two deltas")
    valid(ml)
    assert ml[0]["delta"] == {"healthy": 5, "unstable": 1}  # a first report: everything counted so far
    # The second check-in runs another version: a restart, so its counters are the delta.
    assert ml[1]["delta"] == {"healthy": 9, "unstable": 1, "failsoon": 2} and ml[1]["restarted"] is True

    states = valid(subscriber.json("site-3/otaml/devices/amp-1/state"))
    assert [s["version"] for s in states] == ["1.1", "1.2"]  # published when it changed, not every poll
    # Retained: a subscriber that comes later gets the device's last state at once.
    late = Subscriber(subscriber.broker, "site-3/otaml/devices/+/state")
    try:
        got = wait_for(lambda: late.messages, what="the retained state")
        assert json.loads(got[-1][1])["version"] == "1.2" and got[-1][2] is True
    finally:
        late.close()
    bridge = info(bridged)
    assert bridge["connected"] and bridge["dropped"] == 0 and bridge["published"] >= 9


def test_a_halted_rollout_is_published_with_its_reason(bridged, cli, make_image, subscriber):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    assert cli("publish", "1.2", str(make_image("1.2")), "--staged").returncode == 0
    fleet = [HttpDevice.enroll(bridged, f"dev-{i:04d}") for i in range(40)]
    assert all(d.offered() == "1.1" for d in fleet)  # checked in: the rollout's rings are drawn from them
    r = cli("rollout", "start", "1.2", "--json", "--rings", "10,50,100", "--max-failure-pct", "20", "--min-reports", "3",
            "--success-pct", "10")
    assert r.returncode == 0, r.stderr
    rollout_id = json.loads(r.stdout)["id"]
    ring0 = [d for d in fleet if ring_bucket(d.device_id) < 1000]
    for d in ring0[:3]:
        assert d.offered() == "1.2"
        d.fail("1.2")
    topic = f"site-3/otaml/rollouts/{rollout_id}"
    msgs = wait_for(lambda: (m := subscriber.json(topic)) and m[-1]["event"] == "halted" and m, what="the halt on MQTT")
    valid(msgs)
    assert msgs[0]["event"] == "started" and msgs[0]["version"] == "1.2" and msgs[0]["rings"] == [10, 50, 100]
    halted = msgs[-1]
    assert halted["state"] == "halted" and halted["ring"] == 0
    assert "3 of 3 reports failed" in halted["halt_reason"] and "self_test_failed" in halted["halt_reason"]
    rolled_back = [e for e in subscriber.json("site-3/otaml/devices/") if e.get("event") == "rolled_back"]
    assert {e["device_id"] for e in rolled_back} == {d.device_id for d in ring0[:3]}
    assert all(e["reason"] == "self_test_failed" for e in rolled_back)
    # The operator's answer is published too.
    assert cli("rollout", "abort", str(rollout_id)).returncode == 0
    wait_for(lambda: subscriber.json(topic)[-1]["event"] == "aborted", what="the abort on MQTT")


def test_a_stopped_broker_slows_nothing_and_the_queue_stays_bounded(bridged, cli, make_image, broker, subscriber):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    assert cli("publish", "1.2", str(make_image("1.2"))).returncode == 0
    devices = [HttpDevice.enroll(bridged, f"plant-{i}", version="1.1") for i in range(8)]

    def round_trip() -> float:
        t0 = time.monotonic()
        for d in devices:
            assert d.poll().status_code == 200
        return time.monotonic() - t0

    up = min(round_trip() for _ in range(3))
    subscriber.close()
    broker.stop()
    wait_for(lambda: not info(bridged)["connected"], what="the bridge to notice")
    down = []
    for i, d in enumerate(devices):  # updates, check-ins and events go on, each one an MQTT message lost
        d.update_to("1.2")
        d.extra = {"X-Otaml-Ml-Counters": f"healthy={i + 1}"}
        down.append(round_trip())
    assert max(down) < max(1.0, 20 * up), (up, down)  # no poll waited for the broker
    with bridged.admin() as admin:
        states = {s["device_id"]: s for s in admin.get("/api/devices", params={"limit": 100}).json()["data"]}
    assert all(states[d.device_id]["version"] == "1.2" for d in devices)  # the fleet's record is complete
    bridge = wait_for(lambda: (b := info(bridged))["dropped"] > 0 and b, what="drops")
    assert bridge["pending"] <= 50 and not bridge["connected"]
    with bridged.admin() as admin:
        metrics = admin.get("/metrics").text
    assert 'otaml_mqtt_dropped_total{process=' in metrics and "otaml_mqtt_pending" in metrics

    broker.start()  # same port: the bridge reconnects by itself (backoff capped at 1 s here)
    late = Subscriber(broker, "site-3/otaml/#")
    try:
        wait_for(lambda: info(bridged)["connected"], timeout=20, what="the reconnect")
        devices[0].report("download_started", "1.3")
        wait_for(lambda: any(m.get("event") == "download_started" and m["version"] == "1.3"
                             for m in late.json("site-3/otaml/devices/plant-0/events")), what="a message after the outage")
        # What was still queued went out after the reconnect: the newest messages, not the oldest.
        events = late.json("site-3/otaml/devices/")
        assert len(events) <= 50 + 1
    finally:
        late.close()
