"""Desired configuration and desired-vs-reported state, at the HTTP level: the signed document rides
on polls until the device reports the revision, layers merge channel < tag < device, and the drift
filter in SQL agrees with the per-device state."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from otaml.manifest import signing
from tests.utils.devices import HttpDevice

pytestmark = pytest.mark.e2e


@pytest.fixture
def devices(server, cli, make_image):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    fleet = [HttpDevice.enroll(server, f"dev-{i:02d}", config_revision=0) for i in range(6)]
    for d in fleet:
        d.poll()
    return fleet


def take_config(device: HttpDevice, public_pem: str) -> dict | None:
    """What the firmware does with a poll's config headers (checked by the C tests against the same
    signatures): verify with the pinned key, check device and revision, apply, report next poll."""
    r = device.poll()
    doc_b64 = r.headers.get("X-Otaml-Config")
    if doc_b64 is None:
        return None
    body = base64.b64decode(doc_b64)
    signing.verify(signing.load_public_key(public_pem), body, r.headers["X-Otaml-Config-Signature"])
    doc = json.loads(body)
    assert doc["device_id"] == device.device_id and doc["revision"] > (device.config_revision or 0)
    device.config_revision, device.applied = doc["revision"], doc["properties"]
    return doc


def test_config_layers_merge_and_reach_devices_signed_until_acknowledged(server, cli, devices):
    with server.admin() as admin:
        public_pem = admin.get("/api/info").json()["config_public_key"]
    assert all(take_config(d, public_pem) is None for d in devices)  # nothing desired yet

    assert cli("config", "set", "channel", "stable", "ml_interval_ms=500", "alert_threshold=90").returncode == 0
    assert cli("device", "tag", "dev-01", "noisy").returncode == 0
    assert cli("config", "set", "tag", "noisy", "alert_threshold=60").returncode == 0
    assert cli("config", "set", "device", "dev-02", "ml_interval_ms=50").returncode == 0

    docs = {d.device_id: take_config(d, public_pem) for d in devices}
    assert docs["dev-00"]["properties"] == {"alert_threshold": 90, "ml_interval_ms": 500}
    assert docs["dev-01"]["properties"] == {"alert_threshold": 60, "ml_interval_ms": 500}
    assert docs["dev-02"]["properties"] == {"alert_threshold": 90, "ml_interval_ms": 50}

    drifting = json.loads(cli("devices", "--drift", "config", "--json").stdout)
    assert drifting["count"] == len(devices)  # applied, but not reported yet
    for d in devices:
        assert d.poll().headers.get("X-Otaml-Config") is None  # reported: no more documents
    assert json.loads(cli("devices", "--drift", "config", "--json").stdout)["count"] == 0
    state = json.loads(cli("device", "state", "dev-01", "--json").stdout)
    assert state["reported_config"] == state["desired_config"] == {"alert_threshold": 60, "ml_interval_ms": 500}
    assert not state["config_differs"]

    # A stale device keeps getting the document; others converge again after one change.
    assert cli("config", "set", "channel", "stable", "ml_interval_ms=1000").returncode == 0
    assert take_config(devices[0], public_pem)["properties"] == {"ml_interval_ms": 1000}
    assert json.loads(cli("devices", "--drift", "config", "--json").stdout)["count"] == len(devices)


def test_config_show_unset_and_key(server, cli, devices):
    assert cli("config", "set", "tag", "noisy", "alert_threshold=60").returncode == 0
    shown = cli("config", "show", "--json")
    assert json.loads(shown.stdout)["layers"][0]["properties"] == {"alert_threshold": 60}
    assert "alert_threshold" in cli("config", "show").stdout
    assert cli("config", "unset", "tag", "noisy").returncode == 0
    assert json.loads(cli("config", "show", "--json").stdout)["layers"] == []
    missing = cli("config", "unset", "tag", "noisy")
    assert missing.returncode == 2 and "no tag config layer 'noisy'" in missing.stderr
    key = cli("config", "key").stdout
    pinned = (Path(__file__).resolve().parents[2] / "firmware" / "main" / "keys" / "config_pub.pem").read_text()
    assert key == pinned  # the test server signs with the key the test firmware pins


def test_bad_config_values_and_reports_are_refused(server, cli, devices):
    bad = cli("config", "set", "channel", "stable", "ml_interval_ms=1")
    assert bad.returncode == 2 and "ml_interval_ms: expected an integer from 10 to 3600000, got 1" in bad.stderr
    unknown = cli("config", "set", "channel", "stable", "brightness=3")
    assert unknown.returncode == 2 and "brightness" in unknown.stderr
    d = devices[0]
    d.applied = {"brightness": 3}
    r = d.poll()
    assert r.status_code == 400 and "X-Otaml-Config-Applied" in r.json()["detail"]


def test_drift_filter_in_sql_agrees_with_each_devices_state(server, cli, devices, make_image):
    assert cli("publish", "1.2", str(make_image("1.2")), "--staged").returncode == 0
    assert cli("rollout", "start", "1.2", "--rings", "100", "--min-reports", "50").returncode == 0
    assert cli("device", "pin", "dev-03", "1.1").returncode == 0
    assert cli("device", "hold", "dev-04").returncode == 0
    devices[5].offered()
    devices[5].update_to("1.2")
    for d in devices:
        d.poll()
    listed = {d["device_id"] for d in json.loads(cli("devices", "--drift", "firmware", "--json").stdout)["data"]}
    per_device = {
        d.device_id for d in devices if json.loads(cli("device", "state", d.device_id, "--json").stdout)["firmware_differs"]
    }
    assert listed == per_device == {"dev-00", "dev-01", "dev-02"}  # offered 1.2, still on 1.1
