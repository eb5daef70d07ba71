"""Settings refuse insecure defaults outside development; every CLI command is exercised by a test."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from otaml.cli.main import cli as release_cli
from otaml.core.config import Settings
from tests.utils.processes import RELEASE

ROOT = Path(__file__).resolve().parents[2]


def test_production_refuses_the_default_admin_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTAML_")}
    env.update(OTAML_ENVIRONMENT="production", OTAML_DATA_DIR=str(tmp_path / "d"))
    r = subprocess.run([RELEASE, "serve", "--port", "1"], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "OTAML_ADMIN_TOKEN is the default" in r.stderr and "refused outside development" in r.stderr
    assert "Traceback" not in r.stderr


def test_development_warns_but_runs_on_defaults(monkeypatch):
    for k in list(os.environ):
        if k.startswith("OTAML_"):
            monkeypatch.delenv(k)
    with pytest.warns(UserWarning, match="OTAML_ADMIN_TOKEN"):
        s = Settings()
    assert s.environment == "development" and s.base_url == "http://127.0.0.1:8000"


def test_settings_refuse_unknown_chip():
    with pytest.raises(ValueError, match="OTAML_CHIP: expected one of"):
        Settings(chip="esp8266", admin_token="x" * 32)


def test_every_cli_command_has_a_test():
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    for name in release_cli.commands:
        assert re.search(rf'cli\("{name}"|\[RELEASE, "{name}"', tests), f"no test runs `release {name}`"
