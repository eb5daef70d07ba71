"""The audit log: every admin action through the API and the CLI is recorded (what, on what, when,
from where, with which credential), refused attempts too, and denied credentials at a bounded rate.
A mutating route this file does not exercise fails the test (dashboard actions: tests/dashboard)."""

from __future__ import annotations

import hashlib
import json

import httpx

from otaml.api.main import create_app
from otaml.core.config import Settings
from tests.utils.devices import HttpDevice


def entries(server, **params) -> list[dict]:  # type: ignore[no-untyped-def]
    with server.admin() as admin:
        r = admin.get("/api/audit", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def mutating_admin_routes() -> set[tuple[str, str]]:
    spec = create_app(Settings(admin_token="x" * 32)).openapi()
    device_routes = {("POST", "/api/devices/{device_id}/events")}  # the device's own token, not an admin action
    return {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops if m in ("post", "put", "patch", "delete")} - device_routes


def test_every_admin_action_is_recorded_with_who_and_where(server, cli, make_image):
    fingerprint = hashlib.sha256(server.admin_token.encode()).hexdigest()[:8]
    exercised: dict[tuple[str, str], str] = {}

    def did(route: tuple[str, str], action: str) -> None:
        exercised[route] = action

    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    did(("POST", "/api/releases"), "release.publish")
    assert cli("refresh").returncode == 0
    did(("POST", "/api/channels/{channel}/manifests"), "manifest.refresh")
    assert cli("publish", "1.2", str(make_image("1.2")), "--staged").returncode == 0
    assert cli("enroll", "aud-1").returncode == 0
    did(("POST", "/api/devices"), "device.enroll")
    HttpDevice.enroll(server, "aud-2").poll()
    assert cli("device", "tag", "aud-1", "berlin").returncode == 0
    did(("PATCH", "/api/devices/{device_id}"), "device.tag")
    with server.admin() as admin:
        r = admin.post("/api/devices/bulk", json={"device_ids": ["aud-1", "aud-2"], "action": "hold"})
        assert r.status_code == 200, r.text
        did(("POST", "/api/devices/bulk"), "device.bulk_hold")
        r = admin.post("/api/devices/bulk", json={"device_ids": ["aud-1", "aud-2"], "action": "release"})
    assert cli("rollout", "start", "1.2").returncode == 0
    did(("POST", "/api/rollouts"), "rollout.start")
    assert cli("rollout", "pause").returncode == 0
    did(("POST", "/api/rollouts/{rollout_id}/{action}"), "rollout.pause")
    assert cli("config", "set", "channel", "stable", "alert_threshold=80").returncode == 0
    did(("PUT", "/api/config/{scope}/{name}"), "config.set")
    assert cli("config", "unset", "channel", "stable").returncode == 0
    did(("DELETE", "/api/config/{scope}/{name}"), "config.unset")
    hook = json.loads(cli("webhook", "add", "http://127.0.0.1:9/hook", "--json").stdout)
    did(("POST", "/api/webhooks"), "webhook.add")
    assert cli("webhook", "remove", str(hook["id"])).returncode == 0
    did(("DELETE", "/api/webhooks/{webhook_id}"), "webhook.remove")

    assert set(exercised) == mutating_admin_routes(), "a mutating admin route without an audit check"
    log = entries(server)
    for route, action in exercised.items():
        matching = [e for e in log if e["action"] == action and e["outcome"] == "ok"]
        source = "api" if action.startswith("device.bulk") else "cli"  # the CLI says what it is
        matching = [e for e in matching if e["source"] == source]
        assert matching, f"{route}: no {action} entry from the {source}"
        e = matching[0]
        assert e["client"] == "127.0.0.1" and e["credential"] == f"admin token {fingerprint}"
    publish = next(e for e in log if e["action"] == "release.publish" and "1.2" in e["target"])
    assert publish["target"] == "release 1.2 on stable" and "staged" in publish["detail"] and "sha256" in publish["detail"]
    pin_free = next(e for e in log if e["action"] == "rollout.start")
    assert pin_free["target"].startswith("rollout 1: 1.2 on stable") and "rings 1,10,50,100" in pin_free["detail"]
    assert not any(server.admin_token in json.dumps(e) for e in log)  # a fingerprint, never the token


def test_a_refused_action_is_recorded_with_the_servers_sentence(server, cli, make_image):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    r = cli("rollout", "start", "1.1")
    assert r.returncode == 2
    refused = entries(server, action="rollout.start", outcome="refused")
    assert len(refused) == 1 and "already the baseline" in refused[0]["detail"]
    assert refused[0]["target"] == "release 1.1 on stable"
    assert cli("device", "pin", "nobody", "1.1").returncode == 2
    assert entries(server, action="device.pin", outcome="refused")[0]["detail"] == "no device 'nobody'"


def test_wrong_tokens_are_denied_and_logged_at_a_bounded_rate(server):
    for i in range(45):
        r = httpx.post(f"{server.url}/api/rollouts/1/pause", headers={"Authorization": f"Bearer guess-{i}",
                                                                       "X-Forwarded-For": "203.0.113.9"})
        assert r.status_code == 401
    denied = entries(server, outcome="denied")
    assert len(denied) == 30  # at most 30 a minute per process; the rest are counted, not written
    # The peer is 127.0.0.1, a proxy uvicorn trusts by default: the address it forwarded for is the client.
    assert denied[0]["client"] == "203.0.113.9" and denied[0]["credential"] == "none or a wrong token"
    assert denied[0]["target"] == "POST /api/rollouts/1/pause" and denied[0]["detail"] == "admin token rejected"
    assert httpx.get(f"{server.url}/api/audit").status_code == 401
    with server.admin() as admin:
        assert admin.get("/api/audit", params={"outcome": "maybe"}).status_code == 422
        assert admin.get("/api/audit", params={"action": "x" * 49}).status_code == 422
