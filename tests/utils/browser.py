"""Helpers for the browser tests (the fixtures `browser`, `page` and `artifacts` are in tests/conftest.py)."""

from __future__ import annotations


def login(page, server) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{server.url}/dashboard/login")
    page.fill("input[name=token]", server.admin_token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/dashboard")
