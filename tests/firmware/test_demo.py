"""`release demo`: the newcomer's one command brings up a live fleet where a build whose model sees the
field differently halts in its first ring on the ML gate, and the fixed build then rolls out to done."""

from __future__ import annotations

import time

import pytest

from tests.utils.processes import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_demo_halts_the_divergent_build_and_rolls_out_the_fix(cli, tmp_path):
    # It runs until the second rollout finishes; --duration is only the deadline (--pace 3 keeps it short).
    started = time.monotonic()
    r = cli("demo", "--devices", "4", "--port", str(free_port()), "--data-dir", str(tmp_path / "demo"), "--until-done",
            "--pace", "3", "--duration", "300", timeout=360)
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    assert elapsed < 300, f"the demo ran into its deadline ({elapsed:.0f} s) instead of finishing its rollouts"
    assert "dashboard: http://127.0.0.1:" in r.stderr
    assert "halted: ML gate: class rates diverge from 1.1" in r.stderr, r.stderr
    assert "demo: 4 devices (1.3: 4); rollout 1 of 1.2 aborted at ring 0; rollout 2 of 1.3 done at ring 2, 4 confirmed" in r.stdout, \
        r.stdout + r.stderr


def test_demo_refuses_a_folder_it_did_not_make(cli, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "otaml.db").write_text("not the demo's")
    r = cli("demo", "--data-dir", str(precious), "--duration", "1")
    assert r.returncode == 2 and "found other files" in r.stderr
    assert (precious / "otaml.db").read_text() == "not the demo's"
