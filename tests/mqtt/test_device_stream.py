"""Simulated devices (the C firmware on the host, libmosquitto) publish each prediction to a real
Mosquitto, switched on by the signed desired configuration: what arrives is exactly what TFLM computes
for the recorded sample the device read, named by the model card's labels; with the broker stopped the
device goes on polling and updating, and its queue drops the oldest predictions and counts them."""

from __future__ import annotations

import csv
import re

import jsonschema
import numpy as np
import pytest

from otaml.image.synthetic import model_payload
from otaml.ml import tflm
from otaml.ml.card import parse_card
from otaml.ml.package import quantize_input
from tests.mqtt.conftest import SCHEMA
from tests.utils.processes import ROOT
from tests.utils.waiting import wait_for

pytestmark = pytest.mark.e2e
MODEL = ROOT / "firmware" / "model" / "amp_health.tflite"
CARD_RAW = (ROOT / "firmware" / "model" / "amp_health.card.json").read_bytes()
CARD = parse_card(CARD_RAW)
SAMPLES = ROOT / "firmware" / "model" / "samples.csv"


def reference() -> np.ndarray:
    """int8 outputs of the model for every recorded sample, in replay order (TFLM, as on the device)."""
    with SAMPLES.open() as f:
        rows = [[np.float32(float(v)) for v in row[: len(CARD.features)]] for row in list(csv.reader(f))[1:]]
    q = np.stack([quantize_input(CARD, np.array(r, dtype=np.float32)) for r in rows])
    return tflm.invoke_many(MODEL.read_bytes(), CARD.arena_bytes, q)


def image_with_model(make_image, version: str):
    return make_image(version, payload=model_payload(MODEL.read_bytes(), CARD_RAW))


def test_predictions_arrive_as_the_model_computes_them_for_the_recorded_samples(
        sim_cli, enroll, make_image, broker, subscriber, device_state):
    image = image_with_model(make_image, "1.1")
    assert sim_cli("publish", "1.1", str(image)).returncode == 0
    r = sim_cli("config", "set", "channel", "stable", "mqtt_enabled=1", f"mqtt_url={broker.url}", "mqtt_prefix=plant/amp")
    assert r.returncode == 0, r.stderr
    dev = enroll("amp-7")
    dev.flash_image(image)
    dev.run(2, 100, "--ml-interval-ms", "20")  # takes the signed document (it is stored in NVS)
    subscriber.clear()
    log = dev.run(8, 250, "--ml-interval-ms", "20")  # this boot publishes from its first inference
    assert f"publishing predictions to {broker.url}, topic plant/amp/amp-7/inference" in log, log
    got = wait_for(lambda: (m := subscriber.json("plant/amp/amp-7/inference")) and len(m) >= 30 and m, what="predictions")
    assert set(subscriber.topics()) == {"plant/amp/amp-7/inference"}  # nothing else, nowhere else
    for m in got:
        jsonschema.validate(m, SCHEMA)
    # Every inference since boot, once each, in order: no drops while the broker is up.
    seqs = [m["seq"] for m in got]
    assert seqs == list(range(len(got))) and all(m["dropped"] == 0 for m in got)
    ref = reference()
    labels = list(CARD.labels)
    for m in got:
        expected = ref[m["seq"] % len(ref)]  # the sensor port replays samples.csv in order from boot
        assert m["scores"] == [int(v) for v in expected], m
        assert m["class"] == int(np.argmax(expected)) and m["label"] == labels[m["class"]]
        assert m["model"] == f"{CARD.name}/{CARD.model_version}" and m["device_id"] == "amp-7"
    # The check-in counters count the same predictions the stream carried (the first N of them).
    counters = device_state("amp-7")["ml_counters"]
    n = sum(counters.values())
    assert 0 < n <= len(got)
    assert counters == {label: sum(1 for m in got[:n] if m["label"] == label) for label in labels}
    assert len({m["label"] for m in got}) >= 3  # the replay spans the classes


def test_publishing_follows_the_signed_configuration_and_is_off_by_default(
        sim_cli, enroll, make_image, broker, subscriber):
    image = image_with_model(make_image, "1.1")
    assert sim_cli("publish", "1.1", str(image)).returncode == 0
    dev = enroll("amp-off")
    dev.flash_image(image)
    dev.run(3, 200, "--ml-interval-ms", "20")
    assert subscriber.messages == []  # no configuration: nothing published
    # Switched on for this device only, then off again: each document is signed, checked and applied.
    assert sim_cli("config", "set", "device", "amp-off", "mqtt_enabled=1", f"mqtt_url={broker.url}").returncode == 0
    log = dev.run(4, 200, "--ml-interval-ms", "20")
    assert "topic otaml/devices/amp-off/inference" in log  # the build's default prefix
    wait_for(lambda: len(subscriber.json("otaml/devices/amp-off/inference")) > 5, what="predictions")
    assert sim_cli("config", "set", "device", "amp-off", "mqtt_enabled=0", f"mqtt_url={broker.url}").returncode == 0
    dev.run(2, 200, "--ml-interval-ms", "20")  # takes the document in its first poll; publishes on its boot's rest
    before = len(subscriber.messages)
    log = dev.run(3, 200, "--ml-interval-ms", "20")
    assert "publishing predictions" not in log
    assert len(subscriber.messages) == before


def test_a_stopped_broker_costs_predictions_only(sim_cli, enroll, make_image, broker, subscriber, events):
    v1, v2 = image_with_model(make_image, "1.1"), image_with_model(make_image, "1.2")
    assert sim_cli("publish", "1.1", str(v1)).returncode == 0
    assert sim_cli("config", "set", "channel", "stable", "mqtt_enabled=1", f"mqtt_url={broker.url}").returncode == 0
    dev = enroll("amp-away")
    dev.flash_image(v1)
    broker.stop()  # the plant's broker is down for the whole run
    assert sim_cli("publish", "1.2", str(v2)).returncode == 0
    log = dev.run(10, 200, "--ml-interval-ms", "10", "--mqtt-queue", "8")
    # The update went through as without MQTT: downloaded, rebooted, confirmed by the gate.
    assert dev.booted_version() == "1.2"
    assert [e["kind"] for e in events("amp-away")][-1] == "confirmed"
    # The queue stayed at its size: the oldest predictions were dropped and counted.
    assert "predictions dropped so far (queue of 8 full" in log, log
    totals = [tuple(map(int, m)) for m in re.findall(r"published (\d+) predictions, dropped (\d+), failed (\d+)", log)]
    assert totals, log  # the last boot's summary (the update's reboot cut the first boot short, as on a device)
    assert all(published == 0 and dropped > 0 for published, dropped, _ in totals)
