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


# --- one error funnel: every failure is one line and exit 2, whatever the input ---------------------


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("OTAML_")}
    e.update(env)
    return subprocess.run([RELEASE, *args], env=e, capture_output=True, text=True, timeout=60)


def assert_one_line(r: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("A fatal error occurred: "), r.stderr
    assert "Traceback" not in r.stderr and "Usage:" not in r.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("url", ["::::", "ftp://example.com", "http://", "not a url", "http://[::1", "//127.0.0.1:8000"])
def test_a_malformed_server_url_is_one_line(url):
    assert_one_line(run_cli("list", OTAML_SERVER=url), "expected a release server URL")
    assert_one_line(run_cli("devices", "--server", url), "expected a release server URL")


def test_bad_arguments_are_one_line_without_the_usage_block(tmp_path):
    assert_one_line(run_cli("publish", "1.2", str(tmp_path)), "is a directory")
    image = tmp_path / "x.bin"
    image.write_bytes(b"x")
    for bad in ["99999999999999999999d", "0d", "3651d", "1²d", "5y", "-1d"]:
        assert_one_line(run_cli("publish", "1.2", str(image), "--expires-in", bad), "--expires-in", "3650d")
    assert_one_line(run_cli("config", "set", "channel", "stable", "alert_threshold=²"), "NAME=INTEGER")
    assert_one_line(run_cli("device", "pin"), "Missing argument")
    assert_one_line(run_cli("devices", "--server", "http://127.0.0.1:9"), "cannot reach the release server")


def test_the_demo_refuses_a_port_in_use_and_leaves_that_server_alone(server, tmp_path):
    from otaml.cli.demo import Demo, DemoError

    r = run_cli("demo", "--port", str(server.port), "--data-dir", str(tmp_path / "demo"), "--duration", "1")
    assert_one_line(r, f"port {server.port} is in use")
    # Even if the port check were passed (a server started in between), the demo verifies that the
    # server answering is its own before it sends anything: a foreign server refuses its random token.
    demo = Demo(data_dir=tmp_path / "demo2", port=server.port, devices=1, say=lambda _: None)
    with pytest.raises(DemoError, match="not the one this demo started"):
        demo.verify_own_server()
    assert server.query("select count(*) from signing_key") == [(0,)]
    assert server.query("select count(*) from device") == [(0,)]
    assert server.query("select count(*) from release") == [(0,)]
    assert not (tmp_path / "demo").exists()
