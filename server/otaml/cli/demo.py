"""`release demo`: a live fleet on this machine, for a newcomer, paced so it can be watched.

Starts a release server in a fresh demo folder, publishes 1.1, enrolls a small fleet of otaml-sim
devices (the real firmware core built for the host, running the real model through TFLM) and lets it
run on 1.1 for a while, so the dashboard has history. Then two rollouts, one after the other:

1. 1.2 carries the model retrained on a miscalibrated bench (firmware/model/variants): it passes its
   golden inputs, the canaries confirm it, and the ML gate halts the rollout in its first ring because
   the canaries' class rates diverge from the fleet's. The demo waits, then aborts it.
2. 1.3, the fixed build (the shipped model), rolls out ring by ring through the same gate to done.

Signs with the committed *test* keys, which the simulator pins: a demo, never a deployment.

The demo only ever talks to the server it started: it refuses a port in use (or, when no port was
asked for, picks a free one and says so), gives its server a fresh random admin token, and checks that
the server answering on the port accepts that token before it sends anything. A server someone else
runs never sees the test key, a device or a rollout from the demo.
"""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from otaml.cli import publishing
from otaml.cli.client import ReleaseClient
from otaml.core.errors import OtamlError
from otaml.image.synthetic import build_app_image, model_payload
from otaml.manifest import signing

ROOT = Path(__file__).resolve().parents[3]
MARKER = ".otaml-demo"
DEFAULT_PORT = 8000  # scripts/start's: taken if free, else a free one is picked and named


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pick_port(requested: int | None, say: Callable[[str], None]) -> int:
    """The requested port if free (refused if not); without a request, 8000 or any free port."""
    if requested is not None:
        if not 0 < requested < 65536 or not port_free(requested):
            raise DemoError(
                f"port {requested} is in use (a release server started by `scripts/start`?); the demo never "
                f"talks to a server it did not start: pass another --port, or none to pick a free one"
            )
        return requested
    if port_free(DEFAULT_PORT):
        return DEFAULT_PORT
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    say(f"port {DEFAULT_PORT} is in use (another server?); using free port {port} instead")
    return port


class DemoError(OtamlError):
    """The demo cannot run here (not a source checkout, no simulator build, a foreign folder)."""


@dataclass
class Demo:
    data_dir: Path
    port: int
    devices: int
    say: Callable[[str], None]
    procs: list[subprocess.Popen] = field(default_factory=list)
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))  # this demo server's admin token
    mqtt_url: str | None = None  # a broker for predictions and fleet events (release demo --mqtt)
    mqtt_user: str | None = None
    mqtt_pass: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _fresh_dir(self) -> None:
        if self.data_dir.exists():
            if not (self.data_dir / MARKER).exists():
                raise DemoError(f"expected an empty folder or an earlier demo's at {self.data_dir}, found other files; pass --data-dir")
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(parents=True)
        (self.data_dir / MARKER).write_text("created by `release demo`; deleted by the next one\n")

    def _simulator(self) -> Path:
        sim = ROOT / "build" / "host" / "otaml-sim-plain"
        build = ROOT / "scripts" / "build-host"
        if not build.exists():
            raise DemoError(f"the demo runs the firmware simulator from a source checkout; {build} is missing")
        self.say("building the firmware simulator (scripts/build-host; about a minute the first time)")
        r = subprocess.run([str(build)], capture_output=True, text=True)
        if r.returncode != 0 or not sim.exists():
            raise DemoError(f"scripts/build-host failed: {(r.stderr or r.stdout).strip()[-400:]}")
        return sim

    def _serve(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTAML_")}
        env.update(
            OTAML_DATA_DIR=str(self.data_dir / "server"), OTAML_PORT=str(self.port), OTAML_ADMIN_TOKEN=self.token,
            OTAML_POLL_INTERVAL="5", OTAML_DASHBOARD_PUBLIC="true",
            OTAML_CONFIG_KEY_PATH=str(ROOT / "manifests" / "keys" / "test-config.pem"),
        )
        if self.mqtt_url:
            env.update(OTAML_MQTT_URL=self.mqtt_url, OTAML_MQTT_USERNAME=self.mqtt_user or "",
                       OTAML_MQTT_PASSWORD=self.mqtt_pass or "")
        log = open(self.data_dir / "server.log", "ab")  # noqa: SIM115 - owned by the process
        self.procs.append(subprocess.Popen(
            [sys.executable, "-m", "otaml.cli.main", "serve", "--port", str(self.port), "--log-level", "warning"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        ))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.procs[0].poll() is not None:
                raise DemoError(f"the server exited; see {self.data_dir / 'server.log'}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self.verify_own_server()
            except httpx.TransportError:
                time.sleep(0.2)
        raise DemoError(f"the server did not answer on port {self.port} within 30 s (port taken? pass --port)")

    def _mqtt_credentials(self) -> list[str]:
        out = []
        if self.mqtt_url and self.mqtt_user:
            out += ["--mqtt-user", self.mqtt_user]
        if self.mqtt_url and self.mqtt_pass:
            out += ["--mqtt-pass", self.mqtt_pass]
        return out

    def mosquitto_sub(self) -> str:
        """The command that shows the demo's stream: predictions and the fleet's events."""
        from otaml.ops.mqtt import split_url

        host, port, tls = split_url(self.mqtt_url or "")
        auth = f" -u {shlex.quote(self.mqtt_user)}" if self.mqtt_user else ""
        auth += " -P '...'" if self.mqtt_pass else ""
        return (f"mosquitto_sub -h {host} -p {port}{' --capath /etc/ssl/certs' if tls else ''}{auth} -v "
                f"-t 'otaml/devices/+/inference' -t 'otaml/fleet/#'")

    def verify_own_server(self) -> None:
        """The server on the port is the one this demo started: it is alive and accepts this demo's
        random token. Otherwise (another server took the port first) nothing is sent to it."""
        alive = bool(self.procs) and self.procs[0].poll() is None
        try:
            accepted = httpx.get(f"{self.url}/api/info", headers={"Authorization": f"Bearer {self.token}"}, timeout=5).status_code == 200
        except httpx.TransportError:
            accepted = False
        if not (alive and accepted):
            raise DemoError(
                f"the server answering on port {self.port} is not the one this demo started; nothing was sent "
                f"to it (pass another --port)"
            )

    def _images(self) -> dict[str, Path]:
        shipped, miscalibrated = ROOT / "firmware" / "model", ROOT / "firmware" / "model" / "variants" / "plate_reads_20pct_high"
        try:
            import tflite_micro  # noqa: F401 - the simulator's TFLM worker needs it
        except ImportError:
            raise DemoError("the demo's devices run their model through TFLM: pip install 'otaml[ml]'") from None

        def payload(folder: Path) -> bytes:
            return model_payload((folder / "amp_health.tflite").read_bytes(), (folder / "amp_health.card.json").read_bytes())

        out = {}
        for version, folder in (("1.1", shipped), ("1.2", miscalibrated), ("1.3", shipped)):
            path = self.data_dir / "images" / f"otaml{version.replace('.', '_')}.bin"
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(build_app_image(version, payload=payload(folder)))
            out[version] = path
        return out

    def _watch(self, client: ReleaseClient, rollout_id: int, until: tuple[str, ...], deadline: float | None) -> dict:
        """The rollout once it is in one of ``until`` (or when the deadline passes); the server must live."""
        while True:
            state = client.rollout(rollout_id)
            if state["state"] in until or (deadline is not None and time.monotonic() >= deadline):
                return state
            if self.procs[0].poll() is not None:
                raise DemoError(f"the server stopped; see {self.data_dir / 'server.log'}")
            time.sleep(1)

    def _pause(self, seconds: float, deadline: float | None) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end and (deadline is None or time.monotonic() < deadline):
            if self.procs[0].poll() is not None:
                raise DemoError(f"the server stopped; see {self.data_dir / 'server.log'}")
            time.sleep(0.5)

    def run(self, duration: float | None, until_done: bool = False, pace: float = 20.0) -> str:
        if not port_free(self.port):
            raise DemoError(f"port {self.port} is in use; the demo never talks to a server it did not start (pass another --port)")
        self._fresh_dir()
        sim = self._simulator()
        self.say(f"starting the release server at {self.url} (data in {self.data_dir})")
        self._serve()
        key = signing.load_private_key(ROOT / "manifests" / "keys" / "test-release.pem")
        images = self._images()
        started = time.monotonic()
        deadline = started + duration if duration is not None else None
        gate = {"rings": [25, 50, 100], "success_pct": 100, "soak_seconds": int(pace), "ml_max_divergence": 0.05,
                "ml_max_latency_regression": 200, "ml_min_samples": 200, "ml_window": 600}
        with ReleaseClient(self.url, self.token) as client:
            publishing.publish(client, key, version="1.1", path=images["1.1"], channel="stable")
            self.say(f"published 1.1; flashing and starting {self.devices} simulated devices")
            for i in range(self.devices):
                device_id = f"demo-{i:02d}"
                token = client.enroll(device_id)["token"]
                if i % 3 == 0:
                    client.update_device(device_id, tags=["berlin" if i % 2 else "munich"])
                flash = self.data_dir / "devices" / f"{device_id}.flash"
                flash.parent.mkdir(exist_ok=True)
                subprocess.run([str(sim), "--flash", str(flash), "flash", str(images["1.1"])], check=True, capture_output=True)
                log = open(flash.with_suffix(".log"), "ab")  # noqa: SIM115 - owned by the process
                self.procs.append(subprocess.Popen(
                    [str(sim), "--flash", str(flash), "run", "--server", self.url, "--device-id", device_id,
                     "--token", token, "--interval-ms", "3000", "--ml-interval-ms", "100", "--rssi", str(-48 - 3 * i),
                     *self._mqtt_credentials()],
                    stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OTAML_SIM_PYTHON": sys.executable},
                ))
            config: dict[str, int | str] = {"ml_interval_ms": 100, "alert_threshold": 80}
            if self.mqtt_url:
                config.update(mqtt_enabled=1, mqtt_url=self.mqtt_url, mqtt_prefix="otaml/devices")
            client.set_config("channel", "stable", config)
            if self.mqtt_url:
                self.say(f"MQTT stream: {self.mosquitto_sub()}")
            self.say(f"dashboard: {self.url}/dashboard  (log in with {self.token!r} to pause, resume or abort)")
            self.say(f"the fleet runs 1.1; in {pace:g} s 1.2 rolls out: its model was retrained on a bench whose "
                     f"plate-voltage divider read 20 % high")
            self._pause(pace, deadline)

            publishing.publish(client, key, version="1.2", path=images["1.2"], channel="stable", staged=True)
            bad = client.start_rollout({"channel": "stable", "version": "1.2", **gate})
            self.say(f"rollout {bad['id']} of 1.2 started: rings 25% -> 50% -> 100%, ML gate divergence <= 0.05")
            bad = self._watch(client, bad["id"], ("halted", "done", "aborted"), deadline)
            if bad["state"] == "halted":
                self.say(f"rollout {bad['id']} halted: {bad['halt_reason']}")
                self.say(f"it is aborted in {pace:g} s and 1.3, with the shipped model, rolls out instead")
                self._pause(pace, deadline)
                client.rollout_action(bad["id"], "abort")
            good_state: dict = {}
            if deadline is None or time.monotonic() < deadline:
                publishing.publish(client, key, version="1.3", path=images["1.3"], channel="stable", staged=True)
                good = client.start_rollout({"channel": "stable", "version": "1.3", **gate})
                self.say(f"rollout {good['id']} of 1.3 started")
                until = ("done", "halted", "aborted") if until_done else ("__never__",)
                good_state = self._watch(client, good["id"], until, deadline)
            devices = client.devices(limit=1000)["data"]
            bad = client.rollout(bad["id"])
            good_state = client.rollout(good_state["id"]) if good_state else {}
        versions: dict[str, int] = {}
        for d in devices:
            versions[d["version"] or "none"] = versions.get(d["version"] or "none", 0) + 1
        shown = ", ".join(f"{v}: {n}" for v, n in sorted(versions.items()))
        summary = f"{len(devices)} devices ({shown}); rollout {bad['id']} of 1.2 {bad['state']} at ring {bad['stage']}"
        if good_state:
            summary += f"; rollout {good_state['id']} of 1.3 {good_state['state']} at ring {good_state['stage']}, {good_state['confirmed']} confirmed"
        return summary

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
