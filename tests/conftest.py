from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from otaml.image.synthetic import build_app_image
from otaml.manifest import signing
from tests.utils.postgres import PostgresCluster
from tests.utils.mitm import Mitm
from tests.utils.processes import Cli, ServerProcess, free_port


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--postgres", action="store_true",
                     help="run servers on a throw-away PostgreSQL cluster (a fresh database per test)")


@pytest.fixture(scope="session")
def postgres(request: pytest.FixtureRequest) -> Iterator[PostgresCluster | None]:
    if not request.config.getoption("--postgres"):
        yield None
        return
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def database_url(postgres: PostgresCluster | None) -> str:
    """A fresh database for one test: PostgreSQL with --postgres, else SQLite in the data dir."""
    return postgres.create_database() if postgres else ""


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path / "data", database_url=database_url).start()
    yield srv
    srv.stop()


@pytest.fixture
def mitm_and_server(tmp_path, database_url):
    """A forwarding proxy owns the path to the server's public address (OTAML_PUBLIC_URL is the proxy, so
    manifests and binaries alike reach devices through it): it can tamper with answers and counts what
    it sends (tests/utils/mitm.py). The CLI talks to the server directly."""
    port = free_port()
    with Mitm(f"http://127.0.0.1:{port}", tamper=lambda path, up: None) as mitm:
        srv = ServerProcess(tmp_path / "data", port=port, database_url=database_url,
                            env_extra={"OTAML_PUBLIC_URL": mitm.url}).start()
        yield mitm, srv
        srv.stop()


@pytest.fixture
def proxied_server(mitm_and_server):
    """The server of mitm_and_server: a module whose devices all go through the proxy says
    `server = proxied_server` (its CLI still talks to the server directly)."""
    return mitm_and_server[1]


@pytest.fixture
def mitm(mitm_and_server):
    return mitm_and_server[0]


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


@pytest.fixture
def signing_key_path(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "release.pem"
    signing.write_keypair(signing.generate_key(), path)
    return path


@pytest.fixture
def signing_key(signing_key_path: Path) -> signing.SigningKey:
    return signing.load_private_key(signing_key_path)


@pytest.fixture
def cli(server: ServerProcess, signing_key_path: Path, tmp_path: Path) -> Cli:
    return Cli(server, signing_key_path, tmp_path)


@pytest.fixture
def make_image(tmp_path: Path) -> Callable[..., Path]:
    """make_image("1.2") -> path of a genuine esp32 app image whose app version is 1.2."""

    def _make(version: str, name: str | None = None, **kw) -> Path:
        out = tmp_path / "images" / (name or f"otaml{version.replace('.', '_')}.bin")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(build_app_image(version, **kw))
        return out

    return _make


# --- a real browser for the dashboard: Debian's chromium driven by Playwright. Screenshots are kept
# under build/test-artifacts/dashboard/ (OTAML_TEST_ARTIFACTS overrides) for people to look at. -------

CHROMIUM = os.environ.get("OTAML_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("OTAML_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "build" / "test-artifacts")) / "dashboard"


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"expected chromium at {CHROMIUM} (scripts/setup test installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])  # root in CI containers
        yield b
        b.close()


@pytest.fixture
def page(browser) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(15000)
    yield pg
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


