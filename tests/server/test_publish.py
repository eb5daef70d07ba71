"""`release publish` end to end: the real CLI against the real server (`release serve`, granian)."""

from __future__ import annotations

import base64
import json
import socket

import httpx
import pytest

from otaml.manifest import signing
from otaml.manifest.format import read_manifest
from tests.utils.waiting import wait_for

pytestmark = pytest.mark.e2e


def data_state(server) -> tuple[list[str], int, int]:
    """Every file under the data dir (minus the SQLite journal and the processes' own /metrics counters,
    rewritten every second) and the release/manifest row counts."""
    files = sorted(
        str(p.relative_to(server.data_dir)) for p in server.data_dir.rglob("*")
        if p.is_file() and not p.name.startswith(("otaml.db", ".migrate")) and p.relative_to(server.data_dir).parts[0] != "metrics"
    )
    releases = server.query("select count(*) from release")[0][0]
    manifests = server.query("select count(*) from manifest")[0][0]
    return files, releases, manifests


def refused(result, *fragments: str) -> None:
    assert result.returncode == 2, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("A fatal error occurred: "), result.stderr
    text = lines[0]
    for fragment in fragments:
        assert fragment in text, text


def test_publish_serves_a_verifiable_manifest_and_the_exact_bytes(cli, server, make_image, signing_key_path):
    image = make_image("1.2")
    result = cli("publish", "1.2", str(image))
    assert result.returncode == 0, result.stderr
    assert "published 1.2 to stable" in result.stdout
    assert f"{server.url}/channels/stable/firmware.json" in result.stdout

    r = httpx.get(f"{server.url}/firmware.json", headers=_device(server, cli))
    assert r.status_code == 200
    public = signing.load_private_key(signing_key_path).public_key
    doc = read_manifest(r.content, r.headers["X-Otaml-Signature"], public)
    assert json.loads(r.content)["version"] == 1.2 and isinstance(json.loads(r.content)["version"], float)
    assert doc.semver == "1.2" and doc.channel == "stable" and doc.manifest_version == 1
    assert doc.size == image.stat().st_size
    assert r.headers["X-Otaml-Key-Id"] == signing.key_id(public)

    binary = httpx.get(str(doc.file))
    assert binary.status_code == 200 and binary.content == image.read_bytes()

    sig = httpx.get(f"{server.url}/firmware.json.sig")
    assert sig.text.strip() == r.headers["X-Otaml-Signature"]
    # The static mirror holds the same bytes, ready for nginx or a CDN.
    static = server.data_dir / "static"
    assert (static / "firmware.json").read_bytes() == r.content
    assert (static / "channels" / "stable" / "firmware.json.sig").read_text().strip() == sig.text.strip()
    assert (static / "binaries" / doc.sha256 / image.name).read_bytes() == image.read_bytes()


def _device(server, cli) -> dict[str, str]:
    token = json.loads(cli("enroll", "dev-0001", "--json").stdout)["token"]
    return {"X-Otaml-Device-Id": "dev-0001", "Authorization": f"Bearer {token}"}


def test_refusals_exit_2_with_one_clear_line_and_leave_nothing_behind(cli, server, make_image, tmp_path):
    assert cli("publish", "1.2", str(make_image("1.2"))).returncode == 0
    before = data_state(server)

    not_esp = tmp_path / "notes.txt"
    not_esp.write_text("hello, not firmware\n")
    refused(cli("publish", "1.3", str(not_esp)), "not an ESP image")
    refused(cli("publish", "1.3", str(make_image("1.4"))), "says app version '1.4'", "published as '1.3'")
    refused(cli("publish", "1.1", str(make_image("1.1"))), "version 1.1 is not newer than the current release 1.2")
    refused(cli("publish", "1.2", str(make_image("1.2", name="other.bin", code_size=4096))),
            "already published with other bytes", "immutable")
    refused(cli("publish", "1.2", str(make_image("1.2"))), "already published on channel 'stable'")
    refused(cli("publish", "1.3", str(make_image("1.3", project="someone-else"))), "project 'someone-else'")
    refused(cli("publish", "1.3", str(make_image("1.3", chip="esp32c3"))), "expected an image for esp32", "got one for esp32c3")
    refused(cli("publish", "1.3", str(tmp_path / "missing.bin")), "no such file")
    refused(cli("publish", "v1.3", str(make_image("1.3"))), "expected a version of 1 to 3")

    assert data_state(server) == before


def test_numeric_clients_would_misread_1_10_after_1_9(cli, make_image):
    assert cli("publish", "1.9", str(make_image("1.9"))).returncode == 0
    refused(cli("publish", "1.10", str(make_image("1.10"))), "reads as 1.1", "e.g. 2.0", "--no-legacy-clients")
    ok = cli("publish", "1.10", str(make_image("1.10")), "--no-legacy-clients")
    assert ok.returncode == 0, ok.stderr


def test_secure_version_may_not_go_down(cli, make_image):
    assert cli("publish", "1.2", str(make_image("1.2", secure_version=3))).returncode == 0
    refused(cli("publish", "1.3", str(make_image("1.3", secure_version=2))), "secure_version 2 is lower", "3")
    assert cli("publish", "1.3", str(make_image("1.3", secure_version=3))).returncode == 0
    # The whole uint32_t range of esp_app_desc_t.secure_version is stored (a 64-bit column, also on PostgreSQL).
    top = cli("publish", "1.4", str(make_image("1.4", secure_version=2**32 - 1)))
    assert top.returncode == 0, top.stderr
    assert json.loads(cli("list", "--json").stdout)[0]["secure_version"] == 2**32 - 1


def test_same_bytes_can_be_promoted_to_another_channel(cli, make_image, server):
    image = make_image("1.2")
    assert cli("publish", "1.2", str(image), "--channel", "beta").returncode == 0
    assert cli("publish", "1.2", str(image)).returncode == 0
    listed = json.loads(cli("list", "--json").stdout)
    assert sorted((r["channel"], r["version"], r["current"]) for r in listed) == [("beta", "1.2", True), ("stable", "1.2", True)]
    # Both manifests point at one stored blob.
    assert len({r["sha256"] for r in listed}) == 1
    assert len([p for p in (server.data_dir / "blobs").rglob("*") if p.is_file()]) == 1


def test_a_second_key_is_refused_once_one_is_registered(cli, make_image, tmp_path):
    assert cli("publish", "1.2", str(make_image("1.2"))).returncode == 0
    other = tmp_path / "other.pem"
    signing.write_keypair(signing.generate_key(), other)
    refused(cli("publish", "1.3", str(make_image("1.3")), OTAML_SIGNING_KEY=str(other)), "does not trust")


def test_missing_key_and_wrong_token_and_unreachable_server(cli, make_image, tmp_path):
    image = make_image("1.2")
    refused(cli("publish", "1.2", str(image), OTAML_SIGNING_KEY=str(tmp_path / "nope.pem")), "run `release keygen` first")
    refused(cli("publish", "1.2", str(image), OTAML_ADMIN_TOKEN="wrong-token-wrong-token"), "admin token rejected")
    refused(cli("list", OTAML_SERVER="http://127.0.0.1:9"), "cannot reach the release server")


def test_refresh_resigns_with_next_manifest_version_and_new_expiry(cli, server, make_image, signing_key):
    assert cli("publish", "1.2", str(make_image("1.2")), "--expires-in", "1d").returncode == 0
    first = httpx.get(f"{server.url}/firmware.json.sig")
    result = cli("refresh", "--expires-in", "60d")
    assert result.returncode == 0, result.stderr
    assert "manifest_version 2" in result.stdout
    static = server.data_dir / "static" / "firmware.json"
    doc = read_manifest(static.read_bytes(), (static.parent / "firmware.json.sig").read_text().strip(), signing_key.public_key)
    assert doc.manifest_version == 2 and doc.semver == "1.2"
    assert doc.expires - doc.issued_at == 60 * 86400
    assert httpx.get(f"{server.url}/firmware.json.sig").text != first.text
    refused(cli("refresh", "--channel", "beta"), "no release published on channel 'beta'")


def test_keygen_writes_0600_and_refuses_to_overwrite(cli, tmp_path):
    key = tmp_path / "k" / "release.pem"
    result = cli("keygen", "--key", str(key))
    assert result.returncode == 0, result.stderr
    assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "k" / "release.pub.pem").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    before = key.read_bytes()
    refused(cli("keygen", "--key", str(key)), "devices pin its public key", "--force")
    assert key.read_bytes() == before
    assert cli("keygen", "--key", str(key), "--force").returncode == 0
    assert key.read_bytes() != before


def test_cancelled_upload_leaves_no_file(server, make_image):
    """A client that goes away mid-upload (Ctrl-C) must not leave a staged file or a row."""
    image = make_image("1.2", code_size=512 * 1024).read_bytes()
    head = (
        f"POST /api/releases?channel=stable&filename=x.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {server.admin_token}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {len(image)}\r\nX-Otaml-Manifest: {base64.b64encode(b'{}').decode()}\r\n"
        f"X-Otaml-Signature: AAAA\r\n\r\n"
    ).encode()
    staging = server.data_dir / "tmp"
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(head + image[: len(image) // 2])
        wait_for(lambda: any(staging.iterdir()), timeout=5, what="the upload to be staged")
    wait_for(lambda: not any(staging.iterdir()), timeout=5, what="the half upload to be removed")
    assert not (server.data_dir / "blobs").exists()
    assert data_state(server)[1:] == (0, 0)

