"""Helpers for the browser tests (the fixtures `browser`, `page` and `artifacts` are in tests/conftest.py)."""

from __future__ import annotations


def login(page, server) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{server.url}/dashboard/login")
    page.fill("input[name=token]", server.admin_token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/dashboard")


def element_screenshot(locator, path: str, attempts: int = 5) -> None:  # type: ignore[no-untyped-def]
    """A screenshot of one element on a page that re-renders itself (htmx swaps the live region every
    refresh): if the element is swapped out mid-shot, take it again from the fresh one."""
    from playwright.sync_api import Error

    for attempt in range(attempts):
        try:
            locator.screenshot(path=path)
            return
        except Error as e:
            if "not attached" not in str(e) or attempt == attempts - 1:
                raise
