"""Publish and refresh apply the strict rules (manifests/README.md, "Strict JSON") to what they are sent:
a validly signed manifest that breaks one is refused with 422 naming the rule, and nothing is stored.
Refresh caps its body while it streams in (413) before anything is parsed."""

from __future__ import annotations

import base64
import hashlib
import re
import socket

import pytest

from otaml.manifest.format import build_manifest_bytes
from otaml.releases.urls import binary_url

pytestmark = pytest.mark.e2e

MUTATIONS = [
    ("J4", lambda b: b.replace(b'\n}\n', b',\n  "semver": "9.9"\n}\n')),
    ("J4", lambda b: b.replace(b'\n}\n', b',\n  "\\u0073emver": "9.9"\n}\n')),
    ("J3", lambda b: b.replace(b'"stable"', b'"stable\\u0000beta"')),
    ("J2", lambda b: b + b'{"semver": "9.9"}'),
    ("J1", lambda b: b"\xef\xbb\xbf" + b),
    ("J1", lambda b: b.replace(b'\n}\n', b',\n  "x": "\xc0\xaf"\n}\n')),
    ("J5", lambda b: b.replace(b'"size": ', b'"size": 0')),
    ("J6", lambda b: b.replace(b'\n}\n', b',\n  "x": ' + b"[" * 1500 + b"]" * 1500 + b"\n}\n")),
    ("`version`", lambda b: b.replace(b'"version": 1.2', b'"version": 9.9')),
    ("`size`", lambda b: re.sub(rb'"size": (\d+)', rb'"size": \1.0', b)),
]


def _counts(server) -> tuple[int, int]:
    return (server.query("select count(*) from release")[0][0], server.query("select count(*) from manifest")[0][0])


def _refresh_body(server, key, **over) -> bytes:
    with server.admin() as admin:
        info = admin.get("/api/info").json()
        release = admin.get("/api/releases").json()["data"][0]
    fields = dict(semver=release["version"], file_url=release["file_url"], sha256=release["sha256"],
                  size=release["size"], project=release["project"], chip=release["chip"],
                  secure_version=release["secure_version"], channel="stable",
                  manifest_version=info["next_manifest_version"], key_id=key.key_id, expires_in=86400)
    fields.update(over)
    return build_manifest_bytes(**fields)


def test_refresh_refuses_a_signed_manifest_that_breaks_a_rule(cli, server, make_image, signing_key):
    assert cli("publish", "1.2", str(make_image("1.2"))).returncode == 0
    before = _counts(server)
    for rule, mutate in MUTATIONS:  # one server for all: each refusal must leave it as it was
        body = mutate(_refresh_body(server, signing_key))
        with server.admin() as admin:
            r = admin.post("/api/channels/stable/manifests", content=body,
                           headers={"X-Otaml-Signature": signing_key.sign(body)})
        assert r.status_code == 422, (rule, r.text)
        assert r.json()["error"] in ("ManifestError", "StrictJSONError") and rule in r.json()["detail"], r.json()
        assert _counts(server) == before
    # the same manifest without a mutation is taken
    good = _refresh_body(server, signing_key)
    with server.admin() as admin:
        ok = admin.post("/api/channels/stable/manifests", content=good, headers={"X-Otaml-Signature": signing_key.sign(good)})
    assert ok.status_code == 201, ok.text


def test_publish_refuses_a_duplicate_key_manifest_and_stores_nothing(cli, server, make_image, signing_key):
    assert cli("publish", "1.2", str(make_image("1.2"))).returncode == 0
    before = _counts(server)
    image = make_image("1.3").read_bytes()
    sha = hashlib.sha256(image).hexdigest()
    with server.admin() as admin:
        info = admin.get("/api/info").json()
    good = build_manifest_bytes(semver="1.3", file_url=binary_url(server.url, sha, "otaml1_3.bin"), sha256=sha,
                                size=len(image), project="otaml", chip="esp32", secure_version=0, channel="stable",
                                manifest_version=info["next_manifest_version"], key_id=signing_key.key_id,
                                expires_in=86400)
    # What the server would validate reads semver 1.3; a first-wins parser would read 9.9.
    evil = good.replace(b'  "version": 1.3,\n', b'  "version": 1.3,\n  "semver": "9.9",\n')
    for manifest, status in [(evil, 422), (good, 201)]:
        with server.admin() as admin:
            r = admin.post("/api/releases", params={"channel": "stable", "filename": "otaml1_3.bin"}, content=image,
                           headers={"X-Otaml-Manifest": base64.b64encode(manifest).decode(),
                                    "X-Otaml-Signature": signing_key.sign(manifest),
                                    "Content-Type": "application/octet-stream"})
        assert r.status_code == status, r.text
        if status == 422:
            assert "rule J4" in r.json()["detail"] and "'semver'" in r.json()["detail"]
            assert _counts(server) == before
    assert _counts(server) == (before[0] + 1, before[1] + 1)


def _raw_post(server, head: str, body: bytes) -> bytes:
    """Send a request whose body is never finished; return what the server answers meanwhile."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(head.encode() + body)
        return s.recv(65536)


def test_refresh_caps_the_body_while_it_streams(server):
    auth = f"Authorization: Bearer {server.admin_token}\r\nX-Otaml-Signature: AAAA\r\n"
    with server.admin() as admin:
        r = admin.post("/api/channels/stable/manifests", content=b"{" * 5000, headers={"X-Otaml-Signature": "AAAA"})
    assert r.status_code == 413 and r.json()["error"] == "ManifestTooLargeError", r.text
    # A declared length beyond the cap is refused before a byte of the body arrives.
    head = f"POST /api/channels/stable/manifests HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 99999999999\r\n\r\n"
    assert _raw_post(server, head, b"").startswith(b"HTTP/1.1 413")
    # Chunked: answered once 4,097 bytes are in, though the body never ends (nothing waits for the rest).
    head = f"POST /api/channels/stable/manifests HTTP/1.1\r\nHost: x\r\n{auth}Transfer-Encoding: chunked\r\n\r\n"
    chunk = b"[" * 5000
    assert _raw_post(server, head, f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n").startswith(b"HTTP/1.1 413")
    # Without a token the body is never read at all.
    head = "POST /api/channels/stable/manifests HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n"
    assert _raw_post(server, head, b"").startswith(b"HTTP/1.1 401")
