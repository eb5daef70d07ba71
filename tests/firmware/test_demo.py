"""`release demo`: the newcomer's one command brings up a live fleet that finishes a rollout."""

from __future__ import annotations

import time

import pytest

from tests.utils.processes import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_demo_runs_a_fleet_through_a_rollout(cli, tmp_path):
    # It runs until the rollout finishes; --duration is only the deadline (about 35 s on a quiet machine).
    started = time.monotonic()
    r = cli("demo", "--devices", "3", "--port", str(free_port()), "--data-dir", str(tmp_path / "demo"), "--until-done",
            "--duration", "200", timeout=260)
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    assert elapsed < 200, f"the demo ran into its deadline ({elapsed:.0f} s) instead of finishing its rollout"
    assert "dashboard: http://127.0.0.1:" in r.stderr
    assert "demo: 3 devices (1.2: 3); rollout 1 done" in r.stdout, r.stdout


def test_demo_refuses_a_folder_it_did_not_make(cli, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "otaml.db").write_text("not the demo's")
    r = cli("demo", "--data-dir", str(precious), "--duration", "1")
    assert r.returncode == 2 and "found other files" in r.stderr
    assert (precious / "otaml.db").read_text() == "not the demo's"
