"""Real processes for tests: the release server as `release serve` runs it (granian) and the `release` CLI."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.utils import zygote

ROOT = Path(__file__).resolve().parents[2]
RELEASE = str(Path(sys.executable).with_name("release"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    data_dir: Path
    port: int = field(default_factory=free_port)
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    env_extra: dict[str, str] = field(default_factory=dict)
    database_url: str = ""  # empty: SQLite in the data dir
    proc: subprocess.Popen | zygote.ForkedProcess | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTAML_")}
        env.update(
            OTAML_ENVIRONMENT="production",
            OTAML_DATA_DIR=str(self.data_dir),
            OTAML_PORT=str(self.port),
            OTAML_ADMIN_TOKEN=self.admin_token,
            OTAML_CHECKIN_FLUSH_INTERVAL="0.2",
            OTAML_ROLLOUT_EVAL_INTERVAL="0.3",
            OTAML_POLICY_TTL="0.3",
            OTAML_ALLOW_TEST_KEYS="true",  # the simulator pins manifests/keys/test-release.pub.pem
            OTAML_DASHBOARD_REFRESH="1",
            # The key the simulator pins (firmware/CMakeLists.txt: OTAML_CONFIG_PUBKEY).
            OTAML_CONFIG_KEY_PATH=str(ROOT / "manifests" / "keys" / "test-config.pem"),
        )
        if self.database_url:
            env["OTAML_DATABASE_URL"] = self.database_url
        env.update(self.env_extra)
        return env

    def start(self, timeout: float = 90.0) -> ServerProcess:  # a wait, not a sleep: a loaded CI machine imports slowly
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        # Its own process group: the server and its worker processes can be killed together. Forked from
        # a process that has the server imported (tests/utils/zygote.py): the same `release serve`.
        self.proc = zygote.spawn([RELEASE, "serve", "--port", str(self.port), "--log-level", "warning"],
                                 self.env(), self.data_dir.parent, self.log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()  # never leave a half-started server (and its workers) behind
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)  # granian stops its workers gracefully, then exits
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the workers too
            return self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'otaml.db'}"

    def query(self, sql: str) -> list[tuple]:
        """Read the server's database directly (SQLite or PostgreSQL)."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.db_url())
        try:
            with engine.connect() as conn:
                return [tuple(row) for row in conn.execute(text(sql))]
        finally:
            engine.dispose()

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=30)


@dataclass
class Cli:
    """Runs the real `release` console script against a server with a key."""

    server: ServerProcess
    key: Path
    cwd: Path

    def __call__(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        e = {k: v for k, v in os.environ.items() if not k.startswith("OTAML_")}
        e.update(
            OTAML_SERVER=self.server.url,
            OTAML_ADMIN_TOKEN=self.server.admin_token,
            OTAML_SIGNING_KEY=str(self.key),
            COLUMNS="200",
        )
        e.update(env)
        return zygote.run([RELEASE, *args], e, self.cwd, timeout)  # the console script, forked with its imports done
