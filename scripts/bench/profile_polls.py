#!/usr/bin/env python3
"""Where a poll's time goes, without an HTTP server: the app `release serve` runs (build_asgi), its
lifespan, a published release and enrolled devices, driven with ASGI calls in one process under
cProfile. The microseconds per poll are the Python work a worker does per request on top of granian.

    .venv/bin/python scripts/bench/profile_polls.py [--polls N] [--top N]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from otaml.image.synthetic import build_app_image  # noqa: E402
from tests.utils.processes import Cli, ServerProcess  # noqa: E402


def prepare(work: Path, n_devices: int) -> tuple[ServerProcess, list[tuple[str, str]]]:
    """A data dir with release 1.2 published and n devices enrolled (through a real server, then stopped)."""
    srv = ServerProcess(work / "data").start()
    try:
        image = work / "a.bin"
        image.write_bytes(build_app_image("1.2"))
        assert Cli(srv, ROOT / "manifests" / "keys" / "test-release.pem", work)("publish", "1.2", str(image)).returncode == 0
        with srv.admin() as admin:
            devices = [(f"p-{i:05d}", admin.post("/api/devices", json={"device_id": f"p-{i:05d}"}).json()["token"])
                       for i in range(n_devices)]
    finally:
        srv.stop()
    return srv, devices


def scope(device: str, token: str, etag: str | None) -> dict:
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"esp32"), (b"x-otaml-device-id", device.encode()),
               (b"authorization", f"Bearer {token}".encode()), (b"x-otaml-version", b"1.2"),
               (b"x-otaml-partition", b"ota_1"), (b"x-otaml-ota-state", b"valid"), (b"x-otaml-manifest-version", b"1")]
    if etag:
        headers.append((b"if-none-match", etag.encode()))
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": "/firmware.json", "raw_path": b"/firmware.json", "query_string": b"",
            "root_path": "", "headers": headers, "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000),
            "extensions": {"http.response.pathsend": {}}, "state": {}}


async def drive(app, devices: list[tuple[str, str]], polls: int, top: int) -> None:  # type: ignore[no-untyped-def]
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    lifespan = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put))
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    for d, t in devices:  # each device's first poll loads its token
        await app(scope(d, t, None), receive, send)
    etag = dict(sent[0]["headers"])[b"etag"].decode()
    for label, tag, want in (("200", None, 200), ("304", etag, 304)):
        scopes = [scope(d, t, tag) for d, t in devices]
        sent.clear()
        t0 = time.perf_counter()
        for i in range(polls):
            await app(scopes[i % len(scopes)], receive, send)
        plain = (time.perf_counter() - t0) / polls * 1e6
        statuses = {m["status"] for m in sent if m["type"] == "http.response.start"}
        assert statuses == {want}, statuses
        profile = cProfile.Profile()
        profile.enable()
        for i in range(polls):
            await app(scopes[i % len(scopes)], receive, send)
        profile.disable()
        print(f"\npoll {label}: {plain:.1f} us of Python per poll ({polls:,} polls, {len(devices):,} devices); "
              f"cProfile, by own time:")
        pstats.Stats(profile).sort_stats("tottime").print_stats(top)
    await inbox.put({"type": "lifespan.shutdown"})
    await outbox.get()
    await lifespan


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--polls", type=int, default=20_000)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--top", type=int, default=20)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="otaml-profile-"))
    srv, devices = prepare(work, args.devices)
    env = srv.env()
    env.update(OTAML_CHECKIN_FLUSH_INTERVAL="1", OTAML_POLICY_TTL="2")
    os.environ.update({k: v for k, v in env.items() if k.startswith("OTAML_")})
    from otaml.api.main import build_asgi

    asyncio.run(drive(build_asgi(), devices, args.polls, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
