"""`release demo --mqtt`: the demo's devices publish their predictions and its server bridges the fleet's
events to the broker, and the demo prints the mosquitto_sub command that shows both."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from tests.mqtt.conftest import PASSWORD, USER
from tests.utils.processes import RELEASE, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_demo_streams_predictions_and_fleet_events(tmp_path, broker, subscriber, host_firmware):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTAML_")}
    r = subprocess.run([RELEASE, "demo", "--devices", "2", "--port", str(free_port()), "--data-dir", str(tmp_path / "demo"),
                        "--pace", "3", "--duration", "25", "--mqtt", broker.url, "--mqtt-user", USER, "--mqtt-pass", PASSWORD],
                       capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    line = next(x for x in r.stderr.splitlines() if "MQTT stream: " in x)
    command = shlex.split(line.split("MQTT stream: ", 1)[1])
    assert command[:5] == ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port)]
    assert "otaml/devices/+/inference" in command and "otaml/fleet/#" in command
    assert PASSWORD not in line  # the password is not printed
    predictions = subscriber.json("otaml/devices/demo-00/inference")
    assert len(predictions) > 10 and {p["model"] for p in predictions} >= {"amp_health/1"}
    states = subscriber.json("otaml/fleet/devices/demo-01/state")
    assert states and states[0]["version"] == "1.1"
    # The printed command works once the password goes in: the retained fleet state arrives at once.
    args = [PASSWORD if a == "..." else a for a in command] + ["-C", "2", "-W", "10"]
    sub = subprocess.run(args, capture_output=True, text=True, timeout=20)
    assert sub.returncode == 0, sub.stderr
    assert sum(1 for x in sub.stdout.splitlines() if x.startswith("otaml/fleet/")) == 2, sub.stdout
