"""The libFuzzer harnesses of firmware/fuzz (ASan + UBSan): the committed corpus replays cleanly and a
short bounded fuzz run of each harness finds no crash (scripts/fuzz; longer runs: scripts/fuzz 600)."""

from __future__ import annotations

import os
import re
import subprocess

from tests.utils.processes import ROOT

SECONDS = int(os.environ.get("OTAML_FUZZ_SECONDS", "10"))


def test_fuzzers_replay_the_corpus_and_find_no_crash():
    r = subprocess.run([str(ROOT / "scripts" / "fuzz"), str(SECONDS)], capture_output=True, text=True,
                       timeout=600 + 4 * SECONDS)
    assert r.returncode == 0, r.stdout + r.stderr
    for harness in ("manifest", "config", "keyset"):
        m = re.search(rf"^fuzz_{harness}: \d+s, (\d+) runs, (\d+) exec/s, cov (\d+), ft (\d+), .* crashes 0$",
                      r.stdout, re.MULTILINE)
        assert m, r.stdout
        runs, _eps, cov, _ft = map(int, m.groups())
        assert runs > 1000 and cov > 200, r.stdout  # it really ran, through the parser
