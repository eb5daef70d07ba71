"""Binary downloads: Content-Length, strong ETag, Range (206/416), If-None-Match (304)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.utils.processes import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path, database_url):
    """A fleet with 8 MB app slots: images above the 4 MB memory cache can be published."""
    srv = ServerProcess(tmp_path / "data", database_url=database_url,
                        env_extra={"OTAML_MAX_UPLOAD_BYTES": str(8 * 1024 * 1024)}).start()
    yield srv
    srv.stop()


@pytest.fixture(params=[8192, 5_000_000], ids=["cached-in-memory", "streamed-from-disk"])
def binary(request, cli, server, make_image):
    """Both download paths: small blobs are answered from memory; a large one is sent whole by granian from
    its file (pathsend) and its ranges are streamed by the route."""
    image = make_image("1.2", code_size=request.param)
    assert cli("publish", "1.2", str(image)).returncode == 0
    release = json.loads(cli("list", "--json").stdout)[0]
    return release["file_url"], image.read_bytes(), release["sha256"]


def test_full_download_has_length_and_strong_etag(binary):
    url, data, sha = binary
    r = httpx.get(url)
    assert r.status_code == 200 and r.content == data
    assert r.headers["Content-Length"] == str(len(data))
    assert r.headers["ETag"] == f'"{sha}"'
    assert r.headers["Accept-Ranges"] == "bytes"
    head = httpx.head(url)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(len(data)) and head.content == b""


def test_range_resumes_where_a_download_stopped(binary):
    url, data, _ = binary
    r = httpx.get(url, headers={"Range": "bytes=1000-"})
    assert r.status_code == 206 and r.content == data[1000:]
    assert r.headers["Content-Range"] == f"bytes 1000-{len(data) - 1}/{len(data)}"
    r = httpx.get(url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == data[10:20]
    r = httpx.get(url, headers={"Range": "bytes=-16"})
    assert r.status_code == 206 and r.content == data[-16:]


def test_unsatisfiable_range_is_416(binary):
    url, data, _ = binary
    r = httpx.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416
    assert r.headers["Content-Range"] == f"bytes */{len(data)}"


def test_if_none_match_and_if_range(binary):
    url, data, sha = binary
    assert httpx.get(url, headers={"If-None-Match": f'"{sha}"'}).status_code == 304
    assert httpx.get(url, headers={"Range": "bytes=5-", "If-Range": f'"{sha}"'}).status_code == 206
    stale = httpx.get(url, headers={"Range": "bytes=5-", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == data


def test_unknown_binary_is_404(server):
    assert httpx.get(f"{server.url}/binaries/{'0' * 64}/x.bin").status_code == 404
    assert httpx.get(f"{server.url}/binaries/not-a-hash/x.bin").status_code == 404
