"""A fleet emulator for the convergence benchmark that is not its own bottleneck.

Each device is a coroutine with one keep-alive connection, speaking just enough HTTP/1.1 over asyncio
streams (no client library: a poll costs the emulator a few microseconds, not a millisecond), and the
fleet is split over several processes. A device polls with its check-in headers and If-None-Match,
downloads a new release's binary over the same connection, checks its SHA-256 and size against the
manifest, posts its update events (download_started .. confirmed) and reports the new version from the
next poll on, like the firmware does.

    run_fleet(url, devices, version=..., new_version=..., interval=..., processes=..., settle=..., publish=..., budget=...)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing as mp
import os
import queue
import random
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

EVENTS = ("download_started", "verified", "installed", "booted", "confirmed")


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects once when the server closed it."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        if body:
            head += f"Content-Length: {len(body)}\r\n"
        data = head.encode("latin-1") + b"\r\n" + body
        for attempt in range(2):
            try:
                if self.writer is None:
                    self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
                self.writer.write(data)
                raw = await self.reader.readuntil(b"\r\n\r\n")  # type: ignore[union-attr]
                lines = raw.decode("latin-1").split("\r\n")
                status = int(lines[0].split(" ", 2)[1])
                h = {}
                for line in lines[1:]:
                    if line:
                        k, _, v = line.partition(":")
                        h[k.strip().lower()] = v.strip()
                n = int(h.get("content-length", "0"))
                content = await self.reader.readexactly(n) if n else b""  # type: ignore[union-attr]
                if h.get("connection", "").lower() == "close":
                    self.close()
                return status, h, content
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _device(host: str, port: int, dev: str, token: str, version: str, interval: float, out: mp.Queue) -> None:
    conn = Connection(host, port)
    auth = {"Authorization": f"Bearer {token}"}
    etag = None
    await asyncio.sleep(random.uniform(0, interval))  # devices boot at different times
    while True:
        headers = {"X-Otaml-Device-Id": dev, **auth, "X-Otaml-Version": version, "X-Otaml-Partition": "ota_0",
                   "X-Otaml-Ota-State": "valid"}
        if etag:
            headers["If-None-Match"] = etag
        try:
            status, h, body = await conn.request("GET", "/firmware.json", headers)
            if status == 200:
                etag = h.get("etag")
                m = json.loads(body)
                if m["semver"] != version:
                    status, _, image = await conn.request("GET", urlsplit(m["file"]).path, {})
                    if status == 200 and len(image) == m["size"] and hashlib.sha256(image).hexdigest() == m["sha256"]:
                        for kind in EVENTS:
                            event = json.dumps({"kind": kind, "version": m["semver"]}).encode()
                            status, _, _ = await conn.request("POST", f"/api/devices/{dev}/events",
                                                              {**auth, "Content-Type": "application/json"}, event)
                            if status != 201:
                                break
                        else:
                            version = m["semver"]
                            out.put((dev, version, time.monotonic()))
                    if version != m["semver"]:
                        etag = None  # not installed: ask again in full next time
        except (OSError, asyncio.IncompleteReadError, ValueError, KeyError):
            pass  # the next poll tries again, as a device would
        await asyncio.sleep(interval * random.uniform(0.9, 1.1))


def _emulate(host: str, port: int, devices: list[tuple[str, str]], version: str, interval: float, stop,  # type: ignore[no-untyped-def]
             out: mp.Queue) -> None:
    async def main() -> None:
        tasks = [asyncio.create_task(_device(host, port, d, t, version, interval, out)) for d, t in devices]
        while not stop.is_set():
            await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


@dataclass
class FleetResult:
    published: float  # time.monotonic() (system-wide on Linux: the same clock in every process)
    confirmed: dict[str, float]  # device -> when it confirmed the published version
    emulator_cpu: float  # CPU seconds the emulator processes used, from start to the last confirmation


def run_fleet(url: str, devices: list[tuple[str, str]], *, version: str, new_version: str, interval: float,
              processes: int, settle: float, publish, budget: float) -> FleetResult:  # type: ignore[no-untyped-def]
    """Start the fleet on ``version``, let it poll for ``settle`` seconds, call ``publish()``, and wait up
    to ``budget`` seconds for every device to confirm ``new_version``; then stop the emulators."""
    u = urlsplit(url)
    ctx = mp.get_context("fork")
    out: mp.Queue = ctx.Queue()
    stop = ctx.Event()
    procs = [ctx.Process(target=_emulate, args=(u.hostname, u.port, devices[i::processes], version, interval, stop, out))
             for i in range(processes)]
    for p in procs:
        p.start()
    confirmed: dict[str, float] = {}
    try:
        time.sleep(settle)
        published = time.monotonic()  # the clock starts with the publish command
        publish()
        while len(confirmed) < len(devices) and (left := published + budget - time.monotonic()) > 0:
            try:
                dev, v, when = out.get(timeout=left)
            except queue.Empty:
                break
            if v == new_version:
                confirmed[dev] = when
        cpu = sum(_cpu_seconds(p.pid) for p in procs)
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join()
    return FleetResult(published, confirmed, cpu)


def _cpu_seconds(pid: int | None) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0
