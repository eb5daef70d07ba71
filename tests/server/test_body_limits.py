"""Limits before work: every route refuses a body beyond its limit while it streams in, before
authentication and JSON parsing; slow bodies are ended; huge unauthenticated bodies leave the
server's memory where it was (measured: RSS of the server process)."""

from __future__ import annotations

import csv
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from otaml.api.limits import EVENT_LIMIT, MANIFEST_LIMIT
from otaml.core.config import LARGEST_OTA_SLOT, Settings
from tests.utils.processes import ServerProcess

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
MB = 1024 * 1024
RSS_GROWTH_BOUND = 64 * MB  # stated bound: 8 concurrent 200 MB bodies may grow the server by at most this


def test_the_publish_limit_is_the_largest_ota_slot_of_the_partition_table():
    rows = [r for r in csv.reader(line for line in (ROOT / "firmware" / "partitions.csv").read_text().splitlines()
                                  if line.strip() and not line.startswith("#"))]
    slots = [int(r[4].strip(), 0) for r in rows if r[1].strip() == "app"]
    assert slots and max(slots) == LARGEST_OTA_SLOT
    assert Settings(admin_token="x" * 32).max_upload_bytes == LARGEST_OTA_SLOT


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def chunks(total: int, size: int = 256 * 1024):
    block = b"[" * size  # also as deep as JSON gets
    sent = 0
    while sent < total:
        yield block
        sent += size


# Routes that take a body, with the limit each must enforce (no token is sent anywhere).
ROUTES = [
    ("POST", "/api/devices", 64 * 1024),
    ("PATCH", "/api/devices/dev-1", 64 * 1024),
    ("POST", "/api/devices/dev-1/events", EVENT_LIMIT),
    ("POST", "/api/rollouts", 128 * 1024),
    ("PUT", "/api/config/channel/stable", 64 * 1024),
    ("POST", "/api/channels/stable/manifests", MANIFEST_LIMIT),
    ("POST", "/api/releases?channel=stable&filename=a.bin", LARGEST_OTA_SLOT),
    ("POST", "/dashboard/login", 4 * 1024),
]


@pytest.mark.parametrize("method,path,limit", ROUTES, ids=[f"{m} {p.split('?')[0]}" for m, p, _ in ROUTES])
def test_a_declared_length_over_the_limit_is_413_before_authentication(server, method, path, limit):
    r = httpx.request(method, server.url + path, content=b"{" * (limit + 1), timeout=30)
    assert r.status_code == 413, (r.status_code, r.text[:200])
    assert r.json()["error"] == "BodyTooLargeError" and str(limit) in r.json()["detail"]


@pytest.mark.parametrize("method,path,limit", [r for r in ROUTES if r[2] < MB],
                         ids=[f"{m} {p}" for m, p, lim in ROUTES if lim < MB])
def test_a_chunked_body_is_counted_while_it_streams(server, method, path, limit):
    r = httpx.request(method, server.url + path, content=chunks(limit + 1, 1024), timeout=30)
    # JSON and form routes are read here before anything else: 413. Streamed routes read their body
    # after authentication, so without a token they answer 401 without reading it at all.
    assert r.status_code in ((401,) if "manifests" in path else (413,)), (r.status_code, r.text[:200])


def test_json_nesting_and_numbers_are_refused_before_parsing(server):
    with server.admin() as admin:
        r = admin.post("/api/devices", content=b"[" * 5000 + b"]" * 5000, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "nested at most 32" in r.json()["detail"]
        r = admin.put("/api/config/channel/stable", content=b'{"alert_threshold": 1' + b"0" * 5000 + b"}")
        assert r.status_code == 400 and "integers of at most" in r.json()["detail"]


def read_until_closed(s: socket.socket) -> bytes:
    """The whole answer of a server that closes the connection after it (headers and body may arrive
    in separate packets)."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def test_a_slow_body_is_ended(tmp_path):
    srv = ServerProcess(tmp_path / "data", env_extra={"OTAML_BODY_IDLE_TIMEOUT": "1", "OTAML_UPLOAD_TIMEOUT": "3"}).start()
    try:
        # A client that sends part of a body and then nothing, holding the connection open: answered
        # 408 after the idle timeout, not whenever (if ever) it sends again.
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(f"POST /api/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {srv.admin_token}\r\n"
                      f"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{".encode())
            started = time.monotonic()
            answer = read_until_closed(s)  # the 408 comes with Connection: close
            waited = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408") and b"no pause over 1 s" in answer, answer[:300]
        assert waited < 5, waited

        def slowly(pause: float, n: int):
            for _ in range(n):
                yield b"x" * 100
                time.sleep(pause)

        with srv.admin() as admin:  # a trickle that never pauses long still has a total deadline
            trickle = admin.post("/api/releases", params={"channel": "stable", "filename": "a.bin"},
                                 content=slowly(0.5, 10), headers={"X-Otaml-Manifest": "e30=", "X-Otaml-Signature": "x"})
        assert trickle.status_code == 408 and "within 3 s" in trickle.json()["detail"], trickle.text
        assert not list((srv.data_dir / "tmp").iterdir())  # the staging file is gone
    finally:
        srv.stop()


def test_huge_unauthenticated_bodies_leave_memory_bounded(server):
    """8 clients at once each send 200 MB (half with a Content-Length, half chunked) to the routes
    that take bodies, without a token. Without the limits layer the server went from 105 MB to 1.25 GB
    here and stayed there; with it, under 1 MB of growth."""
    pid = server.proc.pid
    for _ in range(20):  # warm up: imports and caches of the first requests are not growth
        httpx.get(server.url + "/healthz")
    before = rss(pid)
    peak = [before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss(pid))
            time.sleep(0.02)

    def send(i: int) -> None:
        method, path, _ = ROUTES[i % len(ROUTES)]
        host, port = "127.0.0.1", server.port
        with socket.create_connection((host, port), timeout=30) as s:
            head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            head += "Content-Length: 209715200\r\n\r\n" if i % 2 else "Transfer-Encoding: chunked\r\n\r\n"
            try:
                s.sendall(head.encode())
                for block in chunks(200 * MB):
                    s.sendall(block if i % 2 else b"%x\r\n%s\r\n" % (len(block), block))
            except OSError:
                pass  # the server answered and closed: what this test wants

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    time.sleep(1)
    after = rss(pid)
    stop.set()
    sampler.join()
    print(f"server RSS: before {before / MB:.1f} MB, peak {peak[0] / MB:.1f} MB, after {after / MB:.1f} MB")
    assert peak[0] - before < RSS_GROWTH_BOUND, f"peak {peak[0] / MB:.0f} MB from {before / MB:.0f} MB"
    assert after - before < RSS_GROWTH_BOUND
    assert httpx.get(server.url + "/healthz").status_code == 200
