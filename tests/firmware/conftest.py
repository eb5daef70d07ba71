from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.utils.processes import ROOT, Cli
from tests.utils.sim import SimDevice, build_host

# The host build pins the committed test key (firmware/CMakeLists.txt), so publishes must use it.
TEST_KEY = ROOT / "manifests" / "keys" / "test-release.pem"


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


def kinds(evts: list[dict]) -> list[str]:
    return [e["kind"] for e in evts]


