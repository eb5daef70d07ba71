"""A real Mosquitto for the MQTT tests: Debian's broker on 127.0.0.1, a random free port, a password
file, started by the test and stopped after it (also mid-test: ``broker.stop()`` / ``broker.start()``
on the same port), and a subscriber that records what arrives."""

from __future__ import annotations

import getpass
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from tests.utils.processes import ROOT, Cli, free_port
from tests.utils.sim import SimDevice, build_host

TEST_KEY = ROOT / "manifests" / "keys" / "test-release.pem"
SCHEMA = json.loads((ROOT / "manifests" / "mqtt.schema.json").read_text())
USER, PASSWORD = "otaml", "broker-secret-for-tests"

if shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None:  # scripts/setup installs it
    pytest.skip("Debian's mosquitto is not installed (apt-get install mosquitto mosquitto-clients)",
                allow_module_level=True)


@dataclass
class Broker:
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> Broker:
        passwords = self.workdir / "passwords"
        if not passwords.exists():
            subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), USER, PASSWORD], check=True,
                           capture_output=True)
            passwords.chmod(0o600)
        conf = self.workdir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\n"
                        "persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n"
                        # started as root it would switch to the mosquitto user, who cannot read the test's files
                        f"user {getpass.getuser()}\n")
        log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.workdir / 'mosquitto.log').read_text()}")
            probe = paho.Client(paho.CallbackAPIVersion.VERSION2)
            probe.username_pw_set(USER, PASSWORD)
            try:
                probe.connect("127.0.0.1", self.port, 5)
                probe.disconnect()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Subscriber:
    """Everything published under `topic` (a filter), as (topic, payload bytes, retained) in arrival order."""

    def __init__(self, broker: Broker, topic: str = "#") -> None:
        self.broker = broker
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        self.client.username_pw_set(USER, PASSWORD)
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port, 30)
        self.client.loop_start()
        assert self._ready.wait(10), "subscription not acknowledged"

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def json(self, prefix: str = "", suffix: str = "") -> list[dict]:
        with self._lock:
            return [json.loads(p) for t, p, _ in self.messages if t.startswith(prefix) and t.endswith(suffix)]

    def topics(self) -> list[str]:
        with self._lock:
            return [t for t, _, _ in self.messages]

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path).start()
    yield b
    b.stop()


@pytest.fixture
def subscriber(broker: Broker) -> Iterator[Subscriber]:
    s = Subscriber(broker)
    yield s
    s.close()


@pytest.fixture
def bridge_env(broker: Broker) -> dict[str, str]:
    return {"OTAML_MQTT_URL": broker.url, "OTAML_MQTT_USERNAME": USER, "OTAML_MQTT_PASSWORD": PASSWORD,
            "OTAML_MQTT_RECONNECT_MAX": "1"}


@pytest.fixture
def host_firmware() -> None:
    build_host()


@pytest.fixture
def sim_cli(server, tmp_path: Path) -> Cli:
    """The CLI with the key the host simulator pins (firmware/CMakeLists.txt)."""
    return Cli(server, TEST_KEY, tmp_path)


@pytest.fixture
def enroll(sim_cli, server, tmp_path, host_firmware):
    """enroll("dev-1") -> a SimDevice (the C firmware on the host) with its broker credentials."""

    def _enroll(device_id: str) -> SimDevice:
        r = sim_cli("enroll", device_id, "--json")
        assert r.returncode == 0, r.stderr
        dev = SimDevice(tmp_path / f"{device_id}.flash", server.url, device_id, json.loads(r.stdout)["token"])
        dev.extra = ["--mqtt-user", USER, "--mqtt-pass", PASSWORD]
        return dev

    return _enroll
