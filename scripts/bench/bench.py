#!/usr/bin/env python3
"""otaml benchmarks: each figure beside a baseline measured in the same run, on loopback.

    scripts/bench/run [--quick] [--workers N] [--duration S] [--only http|fleet|checkins|queries]

Figures: manifest polls (200 and 304) and binary downloads (full, ranged) vs nginx serving the same
bytes from the static mirror, driven by the same wrk Lua script (device id, token and check-in headers
on every request; for 304s each server's own ETag in If-None-Match); check-ins persisted per second on
SQLite and PostgreSQL (with and without the fleet history the flush writes); the device list, fleet
history queries and dashboard pages at 100k devices, 1M events and 48 h of history; fleet convergence
of 1,000 emulated devices polling every 10 s (fleet.py), in poll intervals from publish to the last
confirmation. Not a test: nothing is asserted; targets are printed beside the figures.
The server is `release serve` (granian), as in production. scripts/bench/profile_polls.py shows where
a poll's Python time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from otaml.fleet.checkins import Checkin, CheckinBuffer  # noqa: E402
from otaml.image.synthetic import build_app_image  # noqa: E402
from otaml.rollouts.rings import bucket  # noqa: E402
from tests.utils.postgres import PostgresCluster  # noqa: E402
from tests.utils.processes import Cli, ServerProcess, free_port  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fleet import run_fleet  # noqa: E402

TEST_KEY = ROOT / "manifests" / "keys" / "test-release.pem"
# The tests' ServerProcess shortens every interval to keep tests fast; measure the defaults instead.
PRODUCTION_TIMINGS = {"OTAML_CHECKIN_FLUSH_INTERVAL": "1", "OTAML_POLICY_TTL": "2", "OTAML_ROLLOUT_EVAL_INTERVAL": "2",
                      "OTAML_DASHBOARD_REFRESH": "2"}
ROWS: list[tuple[str, str, str, str]] = []  # (figure, value, baseline, ratio/target)


def report(name: str, value: str, baseline: str = "", note: str = "") -> None:
    ROWS.append((name, value, baseline, note))
    print(f"  {name:<46} {value:>22} {baseline:>22} {note}", flush=True)


# ---- wrk ----

def wrk(url: str, *, connections: int, duration: int, script: Path | None = None, headers: dict | None = None) -> dict:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "5s"]
    if script:
        cmd += ["-s", str(script)]
    for k, v in (headers or {}).items():
        cmd += ["-H", f"{k}: {v}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    mb = float(transfer.group(1)) * {"B": 1e-6, "KB": 1e-3, "MB": 1, "GB": 1e3}[transfer.group(2)]

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        return float(m.group(1)) * {"us": 1e-3, "ms": 1, "s": 1e3}[m.group(2)] if m else float("nan")

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": pct("50"), "p99": pct("99"), "mbps": mb,
            "non2xx": int(non2xx.group(1)) if non2xx else 0, "errors": errors.group(1) if errors else ""}


def poll_script(path: Path, target: str, devices: list[tuple[str, str]], extra: dict[str, str]) -> Path:
    """A wrk script cycling through enrolled devices, each poll carrying its check-in headers."""
    rows = ",\n".join(f'{{"{d}","{t}"}}' for d, t in devices)
    extra_lua = "".join(f'h["{k}"] = "{v}"\n    ' for k, v in extra.items())
    path.write_text(f"""
devices = {{ {rows} }}
i = 0
request = function()
    i = i % #devices + 1
    local h = {{}}
    h["X-Otaml-Device-Id"] = devices[i][1]
    h["Authorization"] = "Bearer " .. devices[i][2]
    h["X-Otaml-Version"] = "1.2"
    h["X-Otaml-Partition"] = "ota_1"
    h["X-Otaml-Ota-State"] = "valid"
    h["X-Otaml-Manifest-Version"] = "1"
    {extra_lua}return wrk.format("GET", "{target}", h)
end
""")
    return path


def fmt(r: dict) -> str:
    return f"{r['rps']:,.0f} req/s p50 {r['p50']:.1f} p99 {r['p99']:.1f} ms"


# ---- nginx ----

class Nginx:
    def __init__(self, root: Path, work: Path):
        self.port = free_port()
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        (work / "nginx.conf").write_text(f"""
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    types {{ application/json json; application/octet-stream bin; }}
    server {{
        listen 127.0.0.1:{self.port} reuseport;
        root {root};
        etag on;
    }}
}}
""")

    def __enter__(self) -> Nginx:
        subprocess.run(["nginx", "-c", str(self.work / "nginx.conf"), "-p", str(self.work)], check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{self.port}/", timeout=0.5)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run(["nginx", "-c", str(self.work / "nginx.conf"), "-p", str(self.work), "-s", "stop"], check=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


# ---- helpers ----

def enroll_many(server: ServerProcess, n: int) -> list[tuple[str, str]]:
    out = []
    with server.admin() as admin:
        for i in range(n):
            r = admin.post("/api/devices", json={"device_id": f"bench-{i:05d}"})
            out.append((f"bench-{i:05d}", r.json()["token"]))
    return out


def server_cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (granian workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()]
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError):
            pass
    return total


# ---- benchmarks ----

def checked(r: dict) -> str:
    """A warning for the report when a run had errors (a fast answer that is wrong is no figure)."""
    bad = []
    if r["non2xx"]:
        bad.append(f"{r['non2xx']:,} non-2xx")
    if r["errors"]:
        bad.append(f"socket errors {r['errors']}")
    return f" [{'; '.join(bad)}]" if bad else ""


def bench_http(server: ServerProcess, work: Path, devices: list, args) -> None:
    """Each figure beside nginx serving the same bytes from the static mirror, with the same wrk Lua
    script (device id, token and check-in headers on every request) or the same headers."""
    print("\nmanifest polls and downloads (wrk, 2 threads) vs nginx serving the static mirror", flush=True)
    with Nginx(server.data_dir / "static", work / "nginx") as ng:
        static_manifest = (server.data_dir / "static" / "firmware.json").read_bytes()
        assert httpx.get(f"{ng.url}/firmware.json").content == static_manifest
        script = poll_script(work / "poll.lua", "/firmware.json", devices, {})
        # Warm-up, not reported: each worker loads a device's token the first time it sees the device (a
        # fleet in its steady state has them all), and nginx's page cache gets the files.
        wrk(f"{server.url}/firmware.json", connections=64, duration=max(3, args.duration // 2), script=script)
        wrk(f"{ng.url}/firmware.json", connections=64, duration=2, script=script)
        for conns in (256, 64):
            ours = wrk(f"{server.url}/firmware.json", connections=conns, duration=args.duration, script=script)
            base = wrk(f"{ng.url}/firmware.json", connections=conns, duration=args.duration, script=script)
            report(f"poll 200, {conns} conns, check-in headers", fmt(ours), fmt(base),
                   f"ratio {ours['rps'] / base['rps']:.2f}" + (" (target >= 0.50, p99 < 50 ms)" if conns == 256 else "")
                   + checked(ours) + checked(base))

        # 304: the same script, each server's own ETag in If-None-Match.
        etag = httpx.get(f"{server.url}/firmware.json", headers={
            "X-Otaml-Device-Id": devices[0][0], "Authorization": f"Bearer {devices[0][1]}"}).headers["ETag"]
        ng_etag = httpx.get(f"{ng.url}/firmware.json").headers["ETag"]
        ours = wrk(f"{server.url}/firmware.json", connections=256, duration=args.duration,
                   script=poll_script(work / "poll304.lua", "/firmware.json", devices, {"If-None-Match": etag.replace('"', '\\"')}))
        base = wrk(f"{ng.url}/firmware.json", connections=256, duration=args.duration,
                   script=poll_script(work / "poll304-nginx.lua", "/firmware.json", devices, {"If-None-Match": ng_etag.replace('"', '\\"')}))
        report("poll 304 (unchanged), 256 conns", fmt(ours), fmt(base), f"ratio {ours['rps'] / base['rps']:.2f} (target >= 0.70)"
               + checked(ours) + checked(base))

        sha, name = server.query("select sha256, filename from release where version = '1.2'")[0]
        path = f"/binaries/{sha}/{name}"
        ours = wrk(server.url + path, connections=32, duration=args.duration)
        base = wrk(ng.url + path, connections=32, duration=args.duration)
        report("binary, full (73 KB), 32 conns", f"{ours['rps']:,.0f} req/s {ours['mbps']:,.0f} MB/s",
               f"{base['rps']:,.0f} req/s {base['mbps']:,.0f} MB/s", f"ratio {ours['rps'] / base['rps']:.2f} (target >= 0.80)"
               + checked(ours) + checked(base))
        rng = {"Range": "bytes=4096-36863"}
        ours = wrk(server.url + path, connections=32, duration=args.duration, headers=rng)
        base = wrk(ng.url + path, connections=32, duration=args.duration, headers=rng)
        report("binary, ranged 32 KB, 32 conns", f"{ours['rps']:,.0f} req/s", f"{base['rps']:,.0f} req/s",
               f"ratio {ours['rps'] / base['rps']:.2f}" + checked(ours) + checked(base))


def bench_checkins(url: str, label: str, n: int, ml: bool = False) -> None:
    from sqlalchemy import create_engine, insert

    from otaml.core.db import init_db
    from otaml.models import Device

    engine = create_engine(url)
    init_db(engine)
    with engine.begin() as conn:
        conn.execute(insert(Device), [{"device_id": f"c-{i}", "token_hash": "x" * 64, "created_at": datetime.now(UTC)}
                                      for i in range(n)])
    buf = CheckinBuffer()
    now = datetime.now(UTC)

    def checkin(i: int, counts: int, uptime: int) -> Checkin:
        extra = dict(ml_model="amp_health/1", ml_counters=json.dumps({"healthy": counts, "unstable": counts // 3,
                                                                      "overdriven": 1, "failsoon": 0}),
                     ml_latency_us=900, rssi=-60, free_heap=150000, min_free_heap=90000, uptime_s=uptime,
                     reset_reason="poweron") if ml else {}
        return Checkin(f"c-{i}", now, "stable", "1.2", "ota_1", "valid", 3, 0, **extra)

    if ml:  # a first report per device, so the measured flush computes deltas against stored counters
        for i in range(n):
            buf.record(checkin(i, 10, 100))
        buf.flush(engine)
        now = datetime.now(UTC)
    for i in range(n):
        buf.record(checkin(i, 20, 160))
    t0 = time.perf_counter()
    written = buf.flush(engine)
    dt = time.perf_counter() - t0
    engine.dispose()
    what = "with ML counters and health" if ml else "bare"
    report(f"check-ins persisted, {label}, {what} ({n:,} in one flush)", f"{written / dt:,.0f} /s", "",
           "target >= 5,000/s on PostgreSQL" if "Postgre" in label else "")


def bench_fleet_queries(pg: PostgresCluster, work: Path, args) -> None:
    """100k devices and 1M events in PostgreSQL, then the operator-facing reads through the API."""
    import psycopg

    url = pg.create_database()
    srv = ServerProcess(work / "fleetdata", database_url=url, env_extra=PRODUCTION_TIMINGS).start()
    try:
        dsn = url.replace("postgresql+psycopg://", "postgresql://")
        n_dev, n_ev = (20_000, 200_000) if args.quick else (100_000, 1_000_000)
        t0 = time.perf_counter()
        with psycopg.connect(dsn) as conn, conn.cursor() as cur:
            with cur.copy("COPY device (device_id, token_hash, created_at, last_seen, channel, version, partition, "
                          "ota_state, bucket, tags, config_revision) FROM STDIN") as cp:
                now = datetime.now(UTC)
                for i in range(n_dev):
                    device_id = f"d-{i:06d}"
                    tags = '["berlin"]' if i % 10 == 0 else "[]"
                    cp.write_row((device_id, "x" * 64, now, now - timedelta(seconds=i % 3600), "stable",
                                  random.choice(["1.1", "1.2", "1.3"]), "ota_0", "valid", bucket(device_id), tags, i % 3))
            with cur.copy("COPY device_event (device_id, kind, version, reason, detail, created_at) FROM STDIN") as cp:
                kinds = ["download_started", "verified", "installed", "booted", "confirmed"] * 11 + ["rolled_back"]
                for i in range(n_ev):
                    cp.write_row((f"d-{i % n_dev:06d}", kinds[i % len(kinds)], "1.3", "ok", "", now))
            cur.execute("ANALYZE")
        print(f"  (loaded {n_dev:,} devices and {n_ev:,} events in {time.perf_counter() - t0:.1f} s)", flush=True)
        # A live rollout of staged 1.3 at its second ring, pins, and a config change nobody applied yet:
        # the "differs from desired" query has every case to evaluate.
        cli = Cli(srv, TEST_KEY, work)
        for v, extra in (("1.2", ()), ("1.3", ("--staged",))):
            image = work / f"fleet-{v}.bin"
            image.write_bytes(build_app_image(v))
            assert cli("publish", v, str(image), *extra).returncode == 0
        assert cli("rollout", "start", "1.3", "--rings", "1,10,100", "--success-pct", "100", "--min-reports", "1000000").returncode == 0
        with srv.admin() as admin:
            admin.put("/api/config/channel/stable", json={"ml_interval_ms": 1000})
            admin.patch("/api/devices/d-000007", json={"pin_version": "1.2"})

        def timed(path: str, params: dict) -> float:
            samples = []
            with srv.admin() as admin:
                admin.get(path, params=params)
                for _ in range(20):
                    t = time.perf_counter()
                    r = admin.get(path, params=params)
                    samples.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200, (path, r.text, srv.log()[-4000:])
            return statistics.median(samples)

        report(f"device list page, {n_dev:,} devices", f"{timed('/api/devices', {'limit': 100}):.1f} ms", "",
               "dashboard target < 300 ms")
        report("device list filtered by version", f"{timed('/api/devices', {'limit': 100, 'version': '1.2'}):.1f} ms", "")
        report(f"one device's history, {n_ev:,} events", f"{timed('/api/devices/d-000042/events', {}):.1f} ms", "")
        report("devices differing from desired (API)", f"{timed('/api/devices', {'limit': 100, 'drift': 'any'}):.1f} ms", "",
               "dashboard target < 300 ms")
        login = httpx.post(f"{srv.url}/dashboard/login", data={"token": srv.admin_token, "next": "/dashboard"})
        cookies = {"otaml_session": login.cookies["otaml_session"]}

        def page(path: str) -> float:
            samples = []
            with httpx.Client(base_url=srv.url, cookies=cookies, timeout=60) as client:
                client.get(path)
                for _ in range(10):
                    t = time.perf_counter()
                    r = client.get(path)
                    samples.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200 and "otaml" in r.text, (r.status_code, r.text[:200])
            return statistics.median(samples)

        for name, path in [("dashboard overview page", "/dashboard"), ("dashboard device table", "/dashboard/devices"),
                           ("dashboard table, drift filter", "/dashboard/devices?drift=any"),
                           ("dashboard device page", "/dashboard/devices/d-000042")]:
            report(name, f"{page(path):.1f} ms", "", "target < 300 ms")
        load_history(dsn, n_dev)
        for name, path, params in [
            ("history API, fleet, 1 h", "/api/history", {"range": "1h"}),
            ("history API, fleet, 24 h", "/api/history", {"range": "24h"}),
            ("history API, fleet, 7 d", "/api/history", {"range": "7d"}),
            ("history API, one release, 7 d", "/api/history", {"range": "7d", "channel": "stable", "version": "1.2"}),
            ("history API, one device, 7 d", "/api/history/devices/d-000042", {"range": "7d"}),
            ("audit log API, newest 100", "/api/audit", {"limit": 100}),
        ]:
            report(name, f"{timed(path, params):.1f} ms", "", "target < 300 ms")
        for name, path in [("overview page with history, 1 h", "/dashboard"), ("overview page, 7 d", "/dashboard?range=7d"),
                           ("releases page", "/dashboard/releases"), ("release page (1.3 under rollout)", "/dashboard/releases/stable/1.3"),
                           ("rollouts page", "/dashboard/rollouts"), ("rollout page", "/dashboard/rollouts/1"),
                           ("device page with its hours, 7 d", "/dashboard/devices/d-000042?range=7d"),
                           ("device table, health filter", "/dashboard/devices?health=crashed"),
                           ("audit page", "/dashboard/audit")]:
            report(name, f"{page(path):.1f} ms", "", "target < 300 ms")
        with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {srv.admin_token}"}, timeout=60) as client:
            client.get("/metrics")
            samples = []
            for _ in range(10):
                t = time.perf_counter()
                assert client.get("/metrics").status_code == 200
                samples.append((time.perf_counter() - t) * 1000)
        report(f"/metrics scrape, {n_dev:,} devices", f"{statistics.median(samples):.1f} ms", "")
    finally:
        srv.stop()


def load_history(dsn: str, n_dev: int) -> None:
    """What a fleet of n_dev devices polling every minute leaves: 48 h of minute buckets and 90 days of
    hour buckets over 3 channels x 4 versions (with 4 classes and the update outcomes), every device's
    last 24 hours (and a week for the devices the pages look at), 50k audit entries."""
    import psycopg

    t0 = time.perf_counter()
    now = int(time.time())
    keys = [(c, v) for c in ("stable", "beta", "lab") for v in ("1.0", "1.1", "1.2", "1.3")]
    labels = ("healthy", "unstable", "overdriven", "failsoon")
    per_key = n_dev // len(keys)
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        for res, points in ((60, 48 * 60), (3600, 90 * 24)):
            last = now - now % res
            with cur.copy("COPY history_bucket (resolution, start, channel, version, checkins, devices, first_seen, reboots, "
                          "latency_sum, latency_n) FROM STDIN") as cp:
                for p in range(points):
                    for c, v in keys:
                        polls = per_key * res // 60
                        cp.write_row((res, last - p * res, c, v, polls, per_key, per_key, 3, polls * 900, polls))
            with cur.copy("COPY history_class (resolution, start, channel, version, label, count) FROM STDIN") as cp:
                for p in range(points):
                    for c, v in keys:
                        for k, label in enumerate(labels):
                            cp.write_row((res, last - p * res, c, v, label, per_key * res // 60 * 10 // (k + 1)))
            with cur.copy("COPY history_outcome (resolution, start, channel, version, kind, reason, count) FROM STDIN") as cp:
                for p in range(0, points, 7):
                    for c, v in keys:
                        for kind, reason in (("confirmed", "ok"), ("rolled_back", "self_test_failed"), ("download_started", "ok")):
                            cp.write_row((res, last - p * res, c, v, kind, reason, 5))
        hour = now - now % 3600
        with cur.copy("COPY device_history (device_id, start, version, checkins, reboots, ml_counts, latency_sum, latency_n, "
                      "rssi_sum, rssi_n, rssi_min, free_heap_min, min_free_heap) FROM STDIN") as cp:
            for i in range(n_dev):
                hours = 168 if i < 1000 else 24
                for h in range(hours):
                    cp.write_row((f"d-{i:06d}", hour - h * 3600, "1.2", 60, 0, '{"healthy":500,"unstable":80,"failsoon":4}',
                                  54000, 60, -3600, 60, -66, 140000, 90000))
        with cur.copy("COPY audit_entry (at, source, client, credential, action, target, detail, outcome) FROM STDIN") as cp:
            for i in range(50_000):
                cp.write_row((datetime.now(UTC) - timedelta(minutes=i), "cli", "10.0.0.5", "admin token 1a2b3c4d",
                              "device.pin", f"device d-{i % n_dev:06d}", "pin 1.2", "ok"))
        cur.execute("ANALYZE")
    print(f"  (loaded 48 h of minute and 90 days of hour history, {n_dev:,} devices' hours and 50k audit entries "
          f"in {time.perf_counter() - t0:.1f} s)", flush=True)


def bench_fleet(server: ServerProcess, devices: list, cli: Cli, image: Path, n: int, interval: float = 10.0) -> None:
    """Publish to n emulated devices polling every ``interval`` seconds (fleet.py: asyncio devices on raw
    keep-alive connections in 2 processes, so the emulator is not what is measured); the figure is publish
    to the last confirmation, in poll intervals."""
    cpu0, t0 = server_cpu_seconds(server.proc.pid), time.monotonic()
    result = run_fleet(server.url, devices[:n], version="1.2", new_version="1.3", interval=interval, processes=2,
                       settle=interval + 2, budget=12 * interval,
                       publish=lambda: cli("publish", "1.3", str(image)))
    done = max(result.confirmed.values(), default=time.monotonic())
    cpu = server_cpu_seconds(server.proc.pid) - cpu0
    spent = [t - result.published for t in result.confirmed.values()]
    took = done - result.published
    p50 = statistics.median(spent) if spent else float("nan")
    report(f"fleet convergence, {n:,} devices polling every {interval:g} s",
           f"{took / interval:.2f} intervals ({took:.1f} s)", "",
           f"{len(result.confirmed):,} confirmed, median {p50:.1f} s; target <= 2 intervals; server CPU "
           f"{cpu / (time.monotonic() - t0) * 100:.0f}% of one core, emulator {result.emulator_cpu / (done - t0) * 100:.0f}%")


class _Skip(Exception):
    pass


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs and smaller tables")
    ap.add_argument("--workers", type=int, default=2, help="server worker processes (default 2: one per core)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("--only", choices=["http", "fleet", "checkins", "queries"], action="append",
                    help="run only these parts (repeat); default: all")
    args = ap.parse_args()
    if args.quick:
        args.duration = min(args.duration, 4)
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and (args.only is None or "http" in args.only):
            print(f"{tool} is missing: run scripts/bench/run (it installs nginx, wrk and PostgreSQL)", file=sys.stderr)
            return 2
    work = Path(tempfile.mkdtemp(prefix="otaml-bench-"))
    work.chmod(0o755)  # nginx workers run as an unprivileged user
    pg = PostgresCluster().start()
    print(f"otaml benchmarks ({os.cpu_count()} cores, {args.workers} server workers, PostgreSQL)\n"
          f"  {'figure':<46} {'otaml':>22} {'baseline':>22} note", flush=True)
    try:
        want = set(args.only or ["http", "fleet", "checkins", "queries"])
        server = None
        try:
            if not want & {"http", "fleet"}:
                raise _Skip
            server = ServerProcess(work / "data", database_url=pg.create_database(),
                                   env_extra={"OTAML_WORKERS": str(args.workers), **PRODUCTION_TIMINGS}).start()
            cli = Cli(server, TEST_KEY, work)
            images = {v: work / f"otaml{v}.bin" for v in ("1.2", "1.3")}
            for v, p in images.items():
                p.write_bytes(build_app_image(v))
            assert cli("publish", "1.2", str(images["1.2"])).returncode == 0
            devices = enroll_many(server, 1000)
            if "http" in want:
                bench_http(server, work, devices, args)
            if "fleet" in want:
                print("\nfleet", flush=True)
                bench_fleet(server, devices, cli, images["1.3"], 1000)
        except _Skip:
            pass
        finally:
            if server is not None:
                server.stop()
        print("\ncheck-in persistence and fleet queries", flush=True)
        if "checkins" in want:
            bench_checkins(f"sqlite:///{work / 'ci.db'}", "SQLite", 50_000)
            bench_checkins(pg.create_database(), "PostgreSQL", 50_000)
            bench_checkins(f"sqlite:///{work / 'ci-ml.db'}", "SQLite", 50_000, ml=True)
            bench_checkins(pg.create_database(), "PostgreSQL", 50_000, ml=True)
        if "queries" in want:
            bench_fleet_queries(pg, work, args)
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
