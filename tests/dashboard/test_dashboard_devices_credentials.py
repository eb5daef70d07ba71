"""The dashboard shows a claimed device waiting for approval and a revoked one, and a logged-in operator
accepts a pending device from the device table (with the form's CSRF token), after which its check-ins
are recorded."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from tests.utils.browser import login
from tests.utils.waiting import wait_for

pytestmark = pytest.mark.e2e


def checkin(server, device_id: str, token: str) -> int:
    return httpx.get(f"{server.url}/firmware.json", headers={"X-Otaml-Device-Id": device_id, "Authorization": f"Bearer {token}"}).status_code


def test_pending_and_revoked_devices_are_shown_and_pending_ones_accepted(server, cli, page, artifacts):
    with server.admin() as admin:
        claim = admin.post("/api/claim-tokens", json={"name": "line", "require_approval": True}).json()["token"]
        gone = admin.post("/api/devices", json={"device_id": "dev-gone"}).json()["token"]
        assert admin.post("/api/devices/dev-gone/revoke").status_code == 200
    token = "p" * 32
    r = httpx.post(f"{server.url}/api/claim", headers={"Authorization": f"Bearer {claim}"},
                   json={"device_id": "dev-new", "token": token})
    assert r.status_code == 202 and r.json()["status"] == "pending"
    assert checkin(server, "dev-new", token) == 403 and checkin(server, "dev-gone", gone) == 401

    login(page, server)
    page.goto(f"{server.url}/dashboard/devices")
    expect(page.get_by_test_id("status-dev-new")).to_have_text("pending")
    expect(page.get_by_test_id("status-dev-gone")).to_have_text("revoked")
    page.goto(f"{server.url}/dashboard/devices/dev-gone")
    expect(page.get_by_test_id("device-status")).to_contain_text("revoked")
    page.goto(f"{server.url}/dashboard/devices")
    page.screenshot(path=str(artifacts / "devices-pending.png"), full_page=True)

    # A forged form without the CSRF token is refused; the button's form is accepted.
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    forged = httpx.post(f"{server.url}/dashboard/devices/dev-new/accept", cookies=cookies, data={"csrf": "nope"})
    assert forged.status_code == 403 and checkin(server, "dev-new", token) == 403
    page.get_by_test_id("accept-dev-new").click()
    expect(page.get_by_test_id("status-dev-new")).to_have_count(0)
    wait_for(lambda: checkin(server, "dev-new", token) == 404, what="the accepted device's check-in")
    with server.admin() as admin:
        assert admin.get("/api/devices/dev-new").json()["status"] == "active"
