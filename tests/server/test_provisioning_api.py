"""The server's side of provisioning against the real server: batch enrollment is all or nothing, claim
tokens expire, run out, can be revoked and are rate-limited, every refusal is a typed 4xx; release keys
are trusted only when told, the repository's test keys are refused outside development, and retiring
the last key is refused. Hostile bodies never cause a 5xx or partial state."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otaml.manifest import keyset, signing
from tests.utils.processes import ROOT, Cli, ServerProcess

KEYS = ROOT / "manifests" / "keys"


def claim(server, token: str, device_id: str, device_token: str = "t" * 32) -> httpx.Response:
    return httpx.post(f"{server.url}/api/claim", headers={"Authorization": f"Bearer {token}"},
                      json={"device_id": device_id, "token": device_token})


def new_claim_token(server, **spec) -> dict:
    with server.admin() as admin:
        r = admin.post("/api/claim-tokens", json={"name": "line", **spec})
    assert r.status_code == 201, r.text
    return r.json()


def test_batch_enrollment_is_all_or_nothing(server):
    with server.admin() as admin:
        assert admin.post("/api/devices", json={"device_id": "dev-2"}).status_code == 201
        r = admin.post("/api/devices/batch", json={"devices": [{"device_id": "dev-1"}, {"device_id": "dev-2"}]})
        assert r.status_code == 409 and "dev-2" in r.json()["detail"]
        assert admin.get("/api/devices/dev-1").status_code == 404  # nothing of the batch stored
        r = admin.post("/api/devices/batch", json={"devices": [{"device_id": "dev-1"}, {"device_id": "dev-1"}]})
        assert r.status_code == 422 and "twice" in r.text
        r = admin.post("/api/devices/batch", json={"devices": [{"device_id": "dev-1", "tags": ["a"]}, {"device_id": "dev-2"}],
                                                   "rotate": True})
        assert r.status_code == 201, r.text
        assert [(d["device_id"], d["rotated"]) for d in r.json()["data"]] == [("dev-1", False), ("dev-2", True)]
        assert admin.get("/api/devices/dev-1").json()["tags"] == ["a"]


def test_claim_tokens_expire_run_out_and_can_be_revoked(server):
    c = new_claim_token(server, max_uses=1)
    assert claim(server, c["token"], "c-1").status_code == 201
    r = claim(server, c["token"], "c-2")
    assert r.status_code == 401 and "used up" in r.json()["detail"]
    assert claim(server, "x" * 32, "c-3").status_code == 401
    assert httpx.post(f"{server.url}/api/claim", json={"device_id": "c-4", "token": "t" * 32}).status_code == 401
    c2 = new_claim_token(server, name="line-2", expires_in=60)
    with server.admin() as admin:
        assert admin.post(f"/api/claim-tokens/{c2['id']}/revoke").status_code == 200
        listed = admin.get("/api/claim-tokens").json()["data"]
    assert claim(server, c2["token"], "c-5").status_code == 401
    assert {(x["name"], x["uses"], x["revoked"]) for x in listed} == {("line", 1, False), ("line-2", 0, True)}
    assert all("token" not in x for x in listed)  # shown only once
    # An expired token: the row's expiry moved into the past.
    c3 = new_claim_token(server, name="line-3")
    from sqlalchemy import create_engine, text

    engine = create_engine(server.db_url())
    with engine.begin() as conn:
        conn.execute(text("UPDATE claim_token SET expires_at = :t WHERE id = :i"), {"t": "2020-01-01 00:00:00", "i": c3["id"]})
    engine.dispose()
    r = claim(server, c3["token"], "c-6")
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    with server.admin() as admin:
        assert admin.get("/api/devices/c-6").status_code == 404


def test_claims_are_rate_limited_per_client(tmp_path, database_url):
    srv = ServerProcess(tmp_path / "d", database_url=database_url, env_extra={"OTAML_CLAIM_RATE_PER_MINUTE": "3"}).start()
    try:
        statuses = [claim(srv, "x" * 32, f"r-{i}").status_code for i in range(5)]
        assert statuses == [401, 401, 401, 429, 429]
        r = claim(srv, "x" * 32, "r-9")
        assert "claims a minute" in r.json()["detail"] and r.json()["error"] == "RateLimitError"
    finally:
        srv.stop()


_CLAIM_TOKENS: dict[str, str] = {}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(
    st.dictionaries(st.sampled_from(["device_id", "token", "x"]), st.one_of(st.text(max_size=80), st.integers(), st.none())),
    st.text(max_size=200),
))
def test_hostile_claim_bodies_get_a_4xx_and_store_nothing(server, body):
    if server.url not in _CLAIM_TOKENS:  # one claim token per server, made by the first example
        _CLAIM_TOKENS[server.url] = new_claim_token(server, max_uses=1000, name="fuzz")["token"]
    c = _CLAIM_TOKENS[server.url]
    content = json.dumps(body) if isinstance(body, dict) else body
    r = httpx.post(f"{server.url}/api/claim", headers={"Authorization": f"Bearer {c}", "Content-Type": "application/json"},
                   content=content.encode("utf-8", "surrogatepass"))
    assert r.status_code < 500, r.text
    if r.status_code in (201, 202):
        assert isinstance(body, dict) and len(body["token"]) >= 16


def trust(server, pem: str) -> httpx.Response:
    with server.admin() as admin:
        return admin.post("/api/keys", json={"public_pem": pem})


def test_release_keys_are_trusted_when_told_and_test_keys_refused_outside_development(tmp_path, database_url):
    srv = ServerProcess(tmp_path / "d", database_url=database_url, env_extra={"OTAML_ALLOW_TEST_KEYS": "false"}).start()
    try:
        r = trust(srv, (KEYS / "test-release.pub.pem").read_text())
        assert r.status_code == 403 and "test keys" in r.json()["detail"]
        a, b = signing.generate_key(), signing.generate_key()
        assert trust(srv, signing.public_pem(a.public_key)).status_code == 201
        assert trust(srv, signing.public_pem(b.public_key)).status_code == 201
        assert trust(srv, "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n").status_code in (400, 422)
        with srv.admin() as admin:
            assert admin.post(f"/api/keys/{a.key_id}/retire").status_code == 200
            r = admin.post(f"/api/keys/{b.key_id}/retire")
            assert r.status_code == 409 and "another trusted key" in r.json()["detail"]
            assert admin.post("/api/keys/XYZ/retire").status_code == 422
            assert admin.post(f"/api/keys/{'0' * 16}/retire").status_code == 404
            keys = admin.get("/api/keys").json()["data"]
        assert {(k["key_id"], k["retired_at"] is not None) for k in keys} == {(a.key_id, True), (b.key_id, False)}
        # A key set with a test key is refused here too, whoever signed it.
        doc = keyset.build(1, "otaml", [signing.load_public_key((KEYS / "test-other.pub.pem").read_text())])
        with srv.admin() as admin:
            r = admin.post("/api/keysets", json={"document": base64.b64encode(doc).decode(), "signature": b.sign(doc)})
        assert r.status_code == 403
        # The CLI publishing with a test key is refused in production, in one line.
        out = Cli(srv, KEYS / "test-release.pem", tmp_path)("key", "trust", str(KEYS / "test-release.pub.pem"))
        assert out.returncode == 2 and out.stderr.startswith("A fatal error occurred:") and "test keys" in out.stderr
    finally:
        srv.stop()


def test_key_set_uploads_are_checked_like_devices_check_them(server, cli):
    release = signing.load_private_key(KEYS / "test-release.pem")
    assert trust(server, signing.public_pem(release.public_key)).status_code == 201
    good = keyset.build(1, "otaml", [release.public_key])

    def post(doc: str, sig: str) -> httpx.Response:
        with server.admin() as admin:
            return admin.post("/api/keysets", json={"document": doc, "signature": sig})

    assert post("not base64!", release.sign(good)).status_code == 422
    assert post(base64.b64encode(b'{"keyset_version":1}').decode(), release.sign(b"x")).status_code == 422
    other = keyset.build(1, "someone-else", [release.public_key])
    assert post(base64.b64encode(other).decode(), release.sign(other)).status_code == 422
    assert post(base64.b64encode(good).decode(), "A" * 200).status_code == 422
    r = post(base64.b64encode(good).decode(), release.sign(good))
    assert r.status_code == 201 and r.json()["keyset_version"] == 1 and r.json()["signer"] == release.key_id
    assert post(base64.b64encode(good).decode(), release.sign(good)).status_code == 409  # a replay of set 1
    # Served beside the manifest: the API and the static mirror have the same files.
    assert httpx.get(f"{server.url}/keyset.json").content == good
    assert httpx.get(f"{server.url}/keysets/1.json.sig").text.strip() == release.sign(good)
    assert (server.data_dir / "static" / "keyset.json").read_bytes() == good
    assert httpx.get(f"{server.url}/keysets/7.json").status_code == 404
    # A check-in that says it holds no key set gets set 1; one that holds it gets nothing; a malformed one is a 400.
    with server.admin() as admin:
        token = admin.post("/api/devices", json={"device_id": "k-1"}).json()["token"]
    h = {"X-Otaml-Device-Id": "k-1", "Authorization": f"Bearer {token}"}
    r = httpx.get(f"{server.url}/firmware.json", headers={**h, "X-Otaml-Keyset-Version": "0"})
    assert base64.b64decode(r.headers["x-otaml-keyset"]) == good and r.headers["x-otaml-keyset-signature"] == release.sign(good)
    r = httpx.get(f"{server.url}/firmware.json", headers={**h, "X-Otaml-Keyset-Version": "1"})
    assert "x-otaml-keyset" not in r.headers
    r = httpx.get(f"{server.url}/firmware.json", headers={**h, "X-Otaml-Keyset-Version": "１".encode()})
    assert r.status_code == 400 and "X-Otaml-Keyset-Version" in r.json()["detail"]


@pytest.mark.parametrize("action", ["rotate-token", "revoke", "accept"])
def test_credential_actions_on_unknown_devices_are_404_and_need_the_admin(server, action):
    with server.admin() as admin:
        assert admin.post(f"/api/devices/nobody/{action}").status_code == 404
        assert admin.post(f"/api/devices/bad%20id/{action}").status_code == 422
    assert httpx.post(f"{server.url}/api/devices/nobody/{action}").status_code == 401
    assert httpx.delete(f"{server.url}/api/devices/nobody").status_code == 401
