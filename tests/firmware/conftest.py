from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.utils.mitm import Mitm
from tests.utils.processes import ROOT, Cli, ServerProcess, free_port
from tests.utils.sim import SimDevice, build_host

# The host build pins the committed test key (firmware/CMakeLists.txt), so publishes must use it.
TEST_KEY = ROOT / "manifests" / "keys" / "test-release.pem"


@pytest.fixture
def mitm_and_server(tmp_path, database_url):
    """The attacker owns the path to the server's public address: OTAML_PUBLIC_URL is the proxy, so
    manifests and binaries alike reach devices through it. The CLI talks to the server directly."""
    port = free_port()
    with Mitm(f"http://127.0.0.1:{port}", tamper=lambda path, up: None) as mitm:
        srv = ServerProcess(tmp_path / "data", port=port, database_url=database_url,
                            env_extra={"OTAML_PUBLIC_URL": mitm.url}).start()
        yield mitm, srv
        srv.stop()


@pytest.fixture(scope="session", autouse=True)
def host_firmware() -> None:
    build_host()


@pytest.fixture
def cli(server, tmp_path: Path) -> Cli:
    return Cli(server, TEST_KEY, tmp_path)


@pytest.fixture
def enroll(cli, server, tmp_path):
    """enroll("dev-1") -> a SimDevice with a fresh flash file, talking to the real server."""

    def _enroll(device_id: str, server_url: str | None = None) -> SimDevice:
        r = cli("enroll", device_id, "--json")
        assert r.returncode == 0, r.stderr
        token = json.loads(r.stdout)["token"]
        return SimDevice(tmp_path / f"{device_id}.flash", server_url or server.url, device_id, token)

    return _enroll


@pytest.fixture
def events(server):
    def _events(device_id: str) -> list[dict]:
        with server.admin() as admin:
            r = admin.get(f"/api/devices/{device_id}/events", params={"limit": 1000})
        assert r.status_code == 200, r.text
        return list(reversed(r.json()["data"]))  # oldest first

    return _events


@pytest.fixture
def device_state(server):
    def _state(device_id: str) -> dict:
        with server.admin() as admin:
            r = admin.get(f"/api/devices/{device_id}")
        assert r.status_code == 200, r.text
        return r.json()

    return _state


def kinds(evts: list[dict]) -> list[str]:
    return [e["kind"] for e in evts]


