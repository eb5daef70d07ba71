from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.firmware.conftest import TEST_KEY, kinds  # noqa: F401 - shared with the C device suite
from tests.utils.mpy import MpyDevice, check_runtime
from tests.utils.processes import Cli
from tests.utils.sim import build_host


@pytest.fixture(scope="session", autouse=True)
def micropython_runtime() -> None:
    check_runtime()
    build_host()  # otaml-sim flashes and reads the same flash files


@pytest.fixture
def cli(server, tmp_path: Path) -> Cli:
    return Cli(server, TEST_KEY, tmp_path)


@pytest.fixture
def server(proxied_server):
    """Every device of this module reaches the server through the proxy."""
    return proxied_server


@pytest.fixture
def enroll(cli, mitm, tmp_path):
    """enroll("mpy-1") -> a MicroPython host device with a fresh flash file, talking to the real server
    through the proxy."""

    def _enroll(device_id: str) -> MpyDevice:
        r = cli("enroll", device_id, "--json")
        assert r.returncode == 0, r.stderr
        return MpyDevice(tmp_path / f"{device_id}.flash", mitm.url, device_id, json.loads(r.stdout)["token"])

    return _enroll
