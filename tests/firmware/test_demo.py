"""`release demo`: the newcomer's one command brings up a live fleet that finishes a rollout."""

from __future__ import annotations

import pytest

from tests.utils.processes import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_demo_runs_a_fleet_through_a_rollout(cli, tmp_path):
    r = cli("demo", "--devices", "3", "--port", str(free_port()), "--data-dir", str(tmp_path / "demo"), "--duration", "45",
            timeout=240)
    assert r.returncode == 0, r.stderr
    assert "dashboard: http://127.0.0.1:" in r.stderr
    assert "demo: 3 devices (1.2: 3); rollout 1 done" in r.stdout, r.stdout


def test_demo_refuses_a_folder_it_did_not_make(cli, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "otaml.db").write_text("not the demo's")
    r = cli("demo", "--data-dir", str(precious), "--duration", "1")
    assert r.returncode == 2 and "found other files" in r.stderr
    assert (precious / "otaml.db").read_text() == "not the demo's"
