"""Browser tests: Debian's chromium driven by Playwright against the real server. Screenshots are
kept under build/test-artifacts/dashboard/ (OTAML_TEST_ARTIFACTS overrides) for people to look at."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.utils.processes import ROOT

CHROMIUM = os.environ.get("OTAML_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("OTAML_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts")) / "dashboard"


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


def login(page, server) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{server.url}/dashboard/login")
    page.fill("input[name=token]", server.admin_token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/dashboard")
