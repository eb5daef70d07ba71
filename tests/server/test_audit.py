"""The audit log: every admin action through the API and the CLI is recorded (what, on what, when,
from where, with which credential), refused attempts too, and denied credentials at a bounded rate.
A mutating route this file does not exercise fails the test (dashboard actions: tests/dashboard)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import httpx

from otaml.api.main import create_app
from otaml.core.config import Settings
from otaml.manifest import keyset, signing
from tests.utils.devices import HttpDevice

KEYS = Path(__file__).resolve().parents[2] / "manifests" / "keys"


def entries(server, **params) -> list[dict]:  # type: ignore[no-untyped-def]
    with server.admin() as admin:
        r = admin.get("/api/audit", params={"limit": 1000, **params})
    assert r.status_code == 200, r.text
    return r.json()["data"]


def mutating_admin_routes() -> set[tuple[str, str]]:
    spec = create_app(Settings(admin_token="x" * 32)).openapi()
    device_routes = {("POST", "/api/devices/{device_id}/events"),  # the device's own token, not an admin action
                     ("POST", "/api/claim")}  # a fleet claim token: a device enrolling itself
    return {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops if m in ("post", "put", "patch", "delete")} - device_routes


def test_every_admin_action_is_recorded_with_who_and_where(server, cli, make_image, signing_key_path):
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

    # Provisioning and keys (the CLI for the device's credentials and claim tokens, the API for keys).
    assert cli("device", "rotate-token", "aud-1").returncode == 0
    did(("POST", "/api/devices/{device_id}/rotate-token"), "device.rotate_token")
    assert cli("device", "revoke", "aud-2").returncode == 0
    did(("POST", "/api/devices/{device_id}/revoke"), "device.revoke")
    claim = json.loads(cli("claim", "create", "line-3", "--json").stdout)
    did(("POST", "/api/claim-tokens"), "claim_token.create")
    r = httpx.post(f"{server.url}/api/claim", headers={"Authorization": f"Bearer {claim['token']}"},
                   json={"device_id": "aud-3", "token": "t" * 32})
    assert r.status_code == 201, r.text
    assert cli("claim", "revoke", str(claim["id"])).returncode == 0
    did(("POST", "/api/claim-tokens/{claim_id}/revoke"), "claim_token.revoke")
    assert cli("provision", "--count", "2", "--prefix", "aud-b", "--out", str(server.data_dir.parent / "nvs")).returncode == 0
    did(("POST", "/api/devices/batch"), "device.enroll_batch")
    with server.admin() as admin:
        r = admin.post("/api/claim-tokens", json={"name": "approve", "require_approval": True})
        r = httpx.post(f"{server.url}/api/claim", headers={"Authorization": f"Bearer {r.json()['token']}"},
                       json={"device_id": "aud-4", "token": "u" * 32})
        assert r.status_code == 202, r.text
    assert cli("device", "accept", "aud-4").returncode == 0
    did(("POST", "/api/devices/{device_id}/accept"), "device.accept")
    assert cli("device", "remove", "aud-4", "--yes").returncode == 0
    did(("DELETE", "/api/devices/{device_id}"), "device.remove")
    release = signing.load_private_key(signing_key_path)  # the key the channels' manifests are signed with
    other = signing.load_private_key(KEYS / "test-other.pem")
    with server.admin() as admin:
        for k in (release, other):
            assert admin.post("/api/keys", json={"public_pem": signing.public_pem(k.public_key)}).status_code == 201
        did(("POST", "/api/keys"), "key.trust")
        doc = keyset.build(1, "otaml", [release.public_key, other.public_key])
        r = admin.post("/api/keysets", json={"document": base64.b64encode(doc).decode(), "signature": release.sign(doc)})
        assert r.status_code == 201, r.text
        did(("POST", "/api/keysets"), "keyset.add")
        assert admin.post(f"/api/keys/{other.key_id}/retire").status_code == 200
        did(("POST", "/api/keys/{key_id}/retire"), "key.retire")

    assert set(exercised) == mutating_admin_routes(), "a mutating admin route without an audit check"
    log = entries(server)
    for route, action in exercised.items():
        matching = [e for e in log if e["action"] == action and e["outcome"] == "ok"]
        source = "api" if action.startswith(("device.bulk", "key")) else "cli"  # the CLI says what it is
        matching = [e for e in matching if e["source"] == source]
        assert matching, f"{route}: no {action} entry from the {source}"
        e = matching[0]
        assert e["client"] == "127.0.0.1" and e["credential"] == f"admin token {fingerprint}"
    publish = next(e for e in log if e["action"] == "release.publish" and "1.2" in e["target"])
    assert publish["target"] == "release 1.2 on stable" and "staged" in publish["detail"] and "sha256" in publish["detail"]
    pin_free = next(e for e in log if e["action"] == "rollout.start")
    assert pin_free["target"].startswith("rollout 1: 1.2 on stable") and "rings 1,10,50,100" in pin_free["detail"]
    assert not any(server.admin_token in json.dumps(e) for e in log)  # a fingerprint, never the token

    # The CLI reads the same log, filtered: newest first, only what was asked for.
    r = cli("audit", "--action", "rollout", "--json")
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)["data"]
    assert [e["action"] for e in shown] == ["rollout.pause", "rollout.start"]
    r = cli("audit", "--action", "device.revoke")
    assert r.returncode == 0 and "aud-2" in r.stdout and "device.revoke" in r.stdout, r.stdout


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
    # The peer is 127.0.0.1, a proxy trusted by default (OTAML_FORWARDED_ALLOW_IPS): the address it forwarded for is the client.
    assert denied[0]["client"] == "203.0.113.9" and denied[0]["credential"] == "none or a wrong token"
    assert denied[0]["target"] == "POST /api/rollouts/1/pause" and denied[0]["detail"] == "admin token rejected"
    assert httpx.get(f"{server.url}/api/audit").status_code == 401
    with server.admin() as admin:
        assert admin.get("/api/audit", params={"outcome": "maybe"}).status_code == 422
        assert admin.get("/api/audit", params={"action": "x" * 49}).status_code == 422
