"""The fleet-insight pages in a real browser (Debian's chromium): history charts, releases, a release,
rollouts, a rollout, a device's health and update attempts, bulk device actions, the audit log and
webhook deliveries. Every page is screenshotted at desktop width and at 390 px, where it must not
scroll sideways and ring bars must stay visible. Actions need the login and the form's CSRF token and
land in the audit log as dashboard actions."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.utils.browser import login
from tests.utils.devices import HttpDevice
from tests.utils.waiting import wait_for

pytestmark = pytest.mark.e2e
LABELS = ["healthy", "unstable", "overdriven", "failsoon"]


def api(server, path: str, **params):  # type: ignore[no-untyped-def]
    with server.admin() as admin:
        r = admin.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def health(i: int, counts: list[int], uptime: int) -> dict[str, str]:
    return {"X-Otaml-Model": "amp_health/1", "X-Otaml-Ml-Counters": ",".join(f"{k}={v}" for k, v in zip(LABELS, counts)),
            "X-Otaml-Ml-Latency-Us": str(900 + 10 * i), "X-Otaml-Rssi": str(-50 - i), "X-Otaml-Free-Heap": str(150000 - 1000 * i),
            "X-Otaml-Min-Free-Heap": str(90000 - 3000 * i), "X-Otaml-Uptime-S": str(uptime),
            "X-Otaml-Reset-Reason": "panic" if i % 7 == 3 else "poweron"}


@pytest.fixture
def fleet(server, cli, make_image):
    """24 devices on stable (1.1, 1.2 staged and untouched) and beta (a healthy rollout of 1.2 under
    way, one device downloading it); history from three rounds of check-ins."""
    for channel in ("stable", "beta"):
        assert cli("publish", "1.1", str(make_image("1.1")), "--channel", channel).returncode == 0
        assert cli("publish", "1.2", str(make_image("1.2")), "--channel", channel, "--staged").returncode == 0
    devices = [HttpDevice.enroll(server, f"node-{i:02d}", channel="stable" if i < 16 else "beta") for i in range(24)]
    for round_ in range(3):
        for i, d in enumerate(devices):
            d.extra = health(i, [10 * (round_ + 1) + i, 3 * round_, round_, i % 3], 600 + 60 * round_)
            d.poll()
        wait_for(lambda: sum(api(server, "/api/history")["checkins"]["lines"]["polls"]) == 24 * (round_ + 1), what="a flush")
    started = cli("rollout", "start", "1.2", "--channel", "beta", "--rings", "50,100", "--json")
    beta = json.loads(started.stdout)["id"]
    offered = [d for d in devices[16:] if d.offered() == "1.2"]
    for d in offered[:-1]:
        d.update_to("1.2")
        d.extra = health(7, [5, 1, 0, 0], 20)
        d.poll()
    offered[-1].report("download_started", "1.2")
    offered[-1].report("download_progress", "1.2", detail="50% (36904 of 73808 bytes)")
    return {"devices": devices, "beta": beta, "downloading": offered[-1].device_id}


PAGES = [("overview", "/dashboard"), ("overview-24h", "/dashboard?range=24h"), ("releases", "/dashboard/releases"),
         ("release", "/dashboard/releases/beta/1.2"), ("rollouts", "/dashboard/rollouts"), ("devices", "/dashboard/devices"),
         ("devices-health", "/dashboard/devices?health=crashed"), ("device", "/dashboard/devices/node-03"),
         ("audit", "/dashboard/audit"), ("webhooks", "/dashboard/webhooks")]


def test_every_page_at_desktop_and_at_390_px(server, page, fleet, artifacts):
    login(page, server)
    pages = [*PAGES, ("rollout", f"/dashboard/rollouts/{fleet['beta']}")]
    for width in (1360, 390):
        page.set_viewport_size({"width": width, "height": 900})
        for name, path in pages:
            page.goto(server.url + path)
            assert page.locator("main h1").count() == 1, name
            scroll = page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= width, f"{name} is {scroll} px wide at {width} px"
            page.screenshot(path=str(artifacts / f"insight-{name}-{'desktop' if width > 400 else '390'}.png"), full_page=True)
        page.goto(f"{server.url}/dashboard")
        bar = page.locator(f"[data-testid=rollout-{fleet['beta']}] [data-ring='0'] .bar").bounding_box()
        assert bar and bar["width"] >= 40 and bar["x"] + bar["width"] <= width, bar  # visible, inside the page
        twin = page.goto(f"{server.url}/dashboard/devices/node-03")
        card = page.locator("[data-testid=twin]").locator("xpath=ancestor::div[contains(@class,'card')][1]").bounding_box()
        table = page.locator("[data-testid=twin]").bounding_box()
        assert twin and card and table and table["x"] + table["width"] <= card["x"] + card["width"] + 0.5  # no spill


def test_history_charts_draw_what_the_api_reports(server, page, fleet):
    login(page, server)
    h = api(server, "/api/history")
    online = page.locator("[data-testid=chart-online] g.line[data-name=online]")
    drawn = [float(v) if v else 0.0 for v in online.get_attribute("data-values").split(",")]
    assert drawn == [v or 0 for v in h["devices"]["lines"]["online"]] and sum(drawn) >= 24
    classes = {g.get_attribute("data-name") for g in page.locator("[data-testid=chart-classes] g.line").all()}
    assert classes == {k for k, v in h["class_rates"]["lines"].items() if any(v)}
    versions = {g.get_attribute("data-name") for g in page.locator("[data-testid=chart-versions] g.line").all()}
    assert versions == {"1.1", "1.2"}
    page.click("[data-testid=ranges] a[data-range='7d']")
    page.wait_for_url(re.compile(r".*range=7d$"))
    assert page.locator("[data-testid=chart-online] g.line").count() == 1  # the hour buckets have the same check-ins
    page.goto(f"{server.url}/dashboard/releases/beta/1.2")
    rel = api(server, "/api/history", channel="beta", version="1.2")
    latency = page.locator("[data-testid=chart-latency] g.line[data-name='1.2']").get_attribute("data-values")
    assert [float(v) for v in latency.split(",") if v] == [v for v in rel["latency"]["lines"]["1.2"] if v is not None]


def test_releases_page_and_starting_pausing_aborting_from_the_pages(server, page, fleet, artifacts):
    login(page, server)
    page.goto(f"{server.url}/dashboard/releases")
    row = page.locator("[data-release='stable/1.1']")
    assert row.get_attribute("data-devices") == "16"
    page.click("a[href='/dashboard/releases/stable/1.2']")
    page.wait_for_url(f"{server.url}/dashboard/releases/stable/1.2")
    form = page.locator("[data-testid=start-rollout]")
    form.locator("input[name=rings]").fill("25,100")
    form.locator("input[name=ml_max_divergence]").fill("0.05")
    page.click("[data-testid=start-rollout-submit]")
    page.wait_for_selector("[data-testid=message]")
    assert re.fullmatch(r"rollout \d+ of 1\.2 started", page.locator("[data-testid=message]").inner_text())
    stable = api(server, "/api/rollouts", channel="stable")["data"][0]
    assert (stable["rings"], stable["ml_max_divergence"], stable["state"]) == ([25, 100], 0.05, "running")
    card = page.locator(f"[data-testid=rollout-{stable['id']}]")
    assert card.locator("[data-testid=ml-gate]").count() == 1
    page.screenshot(path=str(artifacts / "insight-release-started.png"), full_page=True)

    page.click(f"[data-testid=pause-{stable['id']}]")
    page.wait_for_selector(f"[data-testid=rollout-{stable['id']}][data-state=paused]")
    page.goto(f"{server.url}/dashboard/rollouts/{stable['id']}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(f"[data-testid=abort-{stable['id']}]")
    page.wait_for_selector(f"[data-testid=rollout-{stable['id']}][data-state=aborted]")
    assert page.url == f"{server.url}/dashboard/rollouts/{stable['id']}"  # the page the operator was on
    page.goto(f"{server.url}/dashboard/rollouts")
    states = {r.get_attribute("data-rollout"): r.get_attribute("data-state") for r in page.locator("tr[data-rollout]").all()}
    assert states == {str(stable["id"]): "aborted", str(fleet["beta"]): "running"}

    # Without the form's CSRF token the session cookie alone does nothing (and is logged as denied).
    cookie = next(c for c in page.context.cookies() if c["name"] == "otaml_session")
    forged = httpx.post(f"{server.url}/dashboard/releases/beta/1.2/rollout", cookies={"otaml_session": cookie["value"]},
                        data={"rings": "100"})
    assert forged.status_code == 403
    page.goto(f"{server.url}/dashboard/audit")
    rows = page.locator("[data-testid=audit] tr[data-source=dashboard]")
    actions = [(r.get_attribute("data-action"), r.get_attribute("data-outcome")) for r in rows.all()]
    assert actions[:5] == [("dashboard.auth", "denied"), ("rollout.abort", "ok"), ("rollout.pause", "ok"),
                           ("rollout.start", "ok"), ("dashboard.login", "ok")]


def test_bulk_tag_pin_and_hold_from_the_device_table(server, page, fleet, artifacts):
    login(page, server)
    page.goto(f"{server.url}/dashboard/devices?channel=stable")
    chosen = ["node-01", "node-02", "node-05"]
    for device_id in chosen:
        page.check(f"input[name=device][value='{device_id}']")
    page.select_option("select[name=action]", "tag")
    page.fill("input[name=value]", "lab")
    page.click("[data-testid=bulk-apply]")
    page.wait_for_selector("[data-testid=message]")
    assert page.locator("[data-testid=message]").inner_text() == "tag: 3 devices changed"
    assert {d["device_id"] for d in api(server, "/api/devices", tag="lab")["data"]} == set(chosen)

    for device_id in chosen[:2]:
        page.check(f"input[name=device][value='{device_id}']")
    page.select_option("select[name=action]", "pin")
    page.fill("input[name=value]", "1.2")
    page.click("[data-testid=bulk-apply]")
    page.wait_for_selector("[data-testid=message]")
    assert page.locator("[data-testid=message]").inner_text() == "pin: 2 devices changed"
    assert [api(server, f"/api/devices/{d}")["pin_version"] for d in chosen] == ["1.2", "1.2", None]

    # A pin the devices could not follow changes nothing, for any of them.
    page.check("input[name=device][value='node-05']")
    page.check("input[name=device][value='node-06']")
    page.select_option("select[name=action]", "pin")
    page.fill("input[name=value]", "0.9")
    page.click("[data-testid=bulk-apply]")
    page.wait_for_selector("[data-testid=message]")
    assert page.locator("[data-testid=message]").inner_text().startswith("nothing changed: cannot pin 2 of 2 devices to 0.9")
    assert api(server, "/api/devices/node-05")["pin_version"] is None

    page.click("[data-testid=check-all]")
    page.select_option("select[name=action]", "hold")
    page.click("[data-testid=bulk-apply]")
    page.wait_for_selector("[data-testid=message]")
    assert api(server, "/api/devices", channel="stable")["count"] == 16
    assert all(d["hold"] for d in api(server, "/api/devices", channel="stable")["data"])
    page.set_viewport_size({"width": 390, "height": 900})
    page.screenshot(path=str(artifacts / "insight-devices-bulk-390.png"), full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    entries = api(server, "/api/audit", action="device.bulk")["data"]
    assert [(e["action"], e["outcome"], e["source"]) for e in entries] == [
        ("device.bulk_hold", "ok", "dashboard"), ("device.bulk_pin", "refused", "dashboard"),
        ("device.bulk_pin", "ok", "dashboard"), ("device.bulk_tag", "ok", "dashboard")]


def test_device_page_shows_health_history_and_one_row_per_update_attempt(server, page, fleet, artifacts):
    login(page, server)
    page.goto(f"{server.url}/dashboard/devices/node-03")
    assert page.locator("[data-testid=health-rssi]").inner_text() == "-53 dBm"
    assert page.locator("[data-testid=health-reset]").inner_text() == "panic"
    assert page.locator("[data-testid=health-min-heap]").inner_text() == "81,000 bytes"
    drawn = {g.get_attribute("data-name") for g in page.locator("[data-testid=device-chart-classes] g.line").all()}
    assert drawn == {"healthy", "unstable", "overdriven"}  # node-03 never predicted failsoon
    page.goto(f"{server.url}/dashboard/devices?health=crashed")
    crashed = {d["device_id"] for d in api(server, "/api/devices", reset_reason="crash")["data"]}
    assert {r.get_attribute("data-device") for r in page.locator("tr[data-device]").all()} == crashed
    assert {"node-03", "node-10"} <= crashed

    updated = next(d for d in fleet["devices"][16:] if d.version == "1.2")
    page.goto(f"{server.url}/dashboard/devices/{updated.device_id}")
    attempts = page.locator("[data-testid=device-attempts] tr[data-version]")
    expect(attempts).to_have_count(1)  # five events, one attempt
    assert attempts.first.get_attribute("data-outcome") == "confirmed"
    page.goto(f"{server.url}/dashboard")
    row = page.locator(f"[data-testid=recent-attempts] tr[data-device='{fleet['downloading']}']")
    assert row.get_attribute("data-outcome") == "in_flight" and "downloading 50%" in row.inner_text()
    page.screenshot(path=str(artifacts / "insight-overview-attempts.png"), full_page=True)


def test_webhooks_page_shows_delivery_status(server, page, fleet, cli, artifacts):
    assert cli("webhook", "add", "http://127.0.0.1:9/nobody-listens", "--event", "rollout.halted").returncode == 0
    started = cli("rollout", "start", "1.2", "--channel", "stable", "--rings", "100", "--success-pct", "10", "--json")
    rollout_id = json.loads(started.stdout)["id"]
    for d in fleet["devices"][:3]:
        assert d.offered() == "1.2"
        d.fail("1.2")
    wait_for(lambda: api(server, f"/api/rollouts/{rollout_id}")["state"] == "halted", what="the halt")
    wait_for(lambda: (d := api(server, "/api/webhooks/deliveries")["data"]) and d[0]["attempts"] >= 1, what="a first attempt")
    login(page, server)
    page.goto(f"{server.url}/dashboard/webhooks")
    hook = page.locator("[data-testid=webhooks] tr[data-hook]")
    assert hook.get_attribute("data-pending") == "1" and "pending (no answer: ConnectError" in hook.inner_text()
    row = page.locator("[data-testid=deliveries] tr[data-delivery]")
    assert row.get_attribute("data-state") == "pending" and row.get_attribute("data-event") == "rollout.halted"
    page.screenshot(path=str(artifacts / "insight-webhooks-pending.png"), full_page=True)
