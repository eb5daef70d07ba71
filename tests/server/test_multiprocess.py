"""Several server processes on one database (PostgreSQL with --postgres; SQLite's file otherwise)
stay consistent: check-ins from all of them are kept, newest wins; publishing is serialized; every
process serves a new manifest within its cache lifetime."""

from __future__ import annotations

import base64
import hashlib
import json
import signal
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest

from otaml.image.synthetic import build_app_image
from otaml.manifest.format import build_manifest_bytes
from otaml.manifest import signing
from otaml.releases.urls import binary_url
from tests.utils.processes import Cli, ServerProcess
from tests.utils.waiting import wait_for

pytestmark = pytest.mark.e2e


def start_two(tmp_path, database_url, **a_env: str) -> tuple[ServerProcess, ServerProcess]:
    """Two processes sharing one database and one data dir (as N workers behind a load balancer)."""
    a = ServerProcess(tmp_path / "data", database_url=database_url, env_extra=a_env).start()
    b = ServerProcess(tmp_path / "data", database_url=database_url, admin_token=a.admin_token,
                      env_extra={"OTAML_PUBLIC_URL": a.url}).start()
    return a, b


@pytest.fixture
def two_servers(tmp_path, database_url):
    """A holds its check-ins for a minute, B writes them at once."""
    a, b = start_two(tmp_path, database_url, OTAML_CHECKIN_FLUSH_INTERVAL="60")
    yield a, b
    a.stop()
    b.stop()


def test_a_stale_checkin_never_overwrites_a_newer_one(two_servers, tmp_path, signing_key_path):
    a, b = two_servers
    token = json.loads(Cli(a, signing_key_path, tmp_path)("enroll", "dev-1", "--json").stdout)["token"]
    headers = {"X-Otaml-Device-Id": "dev-1", "Authorization": f"Bearer {token}"}
    httpx.get(f"{a.url}/firmware.json", headers={**headers, "X-Otaml-Version": "1.1"})  # A holds it 60 s
    httpx.get(f"{b.url}/firmware.json", headers={**headers, "X-Otaml-Version": "1.2"})  # B flushes at once
    wait_for(lambda: a.query("select version from device where device_id='dev-1'") == [("1.2",)],
             what="B's flush of the newer report")
    a.stop(signal.SIGTERM)  # A flushes its older report last
    assert b.query("select version from device where device_id='dev-1'") == [("1.2",)]


def test_checkins_through_both_processes_are_all_kept(two_servers, tmp_path, signing_key_path):
    a, b = two_servers
    cli = Cli(a, signing_key_path, tmp_path)
    devices = {}
    for i in range(20):
        devices[f"dev-{i}"] = json.loads(cli("enroll", f"dev-{i}", "--json").stdout)["token"]
    for i, (device, token) in enumerate(devices.items()):
        srv = a if i % 2 else b
        httpx.get(f"{srv.url}/firmware.json",
                  headers={"X-Otaml-Device-Id": device, "Authorization": f"Bearer {token}", "X-Otaml-Version": "1.1"})
    a.stop(signal.SIGTERM)  # A flushes its half on the way out
    wait_for(lambda: b.query("select count(*) from device where version = '1.1'") == [(20,)],
             what="every check-in from both processes in the database")


def test_concurrent_publishes_with_the_same_manifest_version_are_serialized(two_servers, signing_key):
    a, b = two_servers
    info = httpx.get(f"{a.url}/api/info", headers={"Authorization": f"Bearer {a.admin_token}"}).json()

    def request(version: str) -> tuple[dict, bytes]:
        data = build_app_image(version)
        sha = hashlib.sha256(data).hexdigest()
        manifest = build_manifest_bytes(
            semver=version, file_url=binary_url(info["base_url"], sha, f"v{version}.bin"), sha256=sha, size=len(data),
            project="otaml", chip="esp32", secure_version=0, channel="stable",
            manifest_version=info["next_manifest_version"], key_id=signing_key.key_id, expires_in=86400)
        headers = {"Authorization": f"Bearer {a.admin_token}", "Content-Type": "application/octet-stream",
                   "X-Otaml-Manifest": base64.b64encode(manifest).decode(), "X-Otaml-Signature": signing_key.sign(manifest),
                   "X-Otaml-Public-Key": base64.b64encode(signing.public_pem(signing_key.public_key).encode()).decode()}
        return headers, data

    results = {}

    def publish(srv, version):
        headers, data = request(version)
        results[version] = httpx.post(f"{srv.url}/api/releases", params={"channel": "stable", "filename": f"v{version}.bin"},
                                      headers=headers, content=data, timeout=60)

    threads = [threading.Thread(target=publish, args=(a, "1.2")), threading.Thread(target=publish, args=(b, "1.3"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status_code for r in results.values())
    assert codes == [201, 409], {v: (r.status_code, r.text) for v, r in results.items()}
    loser = next(r for r in results.values() if r.status_code == 409)
    assert "sign again" in loser.json()["detail"]
    assert a.query("select count(*) from manifest") == [(1,)]
    assert a.query("select count(*) from release") == [(1,)]


def test_every_process_serves_a_new_publish_within_its_cache_lifetime(two_servers, tmp_path, signing_key_path, make_image):
    """Staleness is measured from the manifest's commit (its created_at in the database, same clock) to
    the first poll B answers with it, while a poller keeps B busy, over several changes: B's snapshot
    is at a random age when each change lands, so one lucky trial cannot hide a longer lifetime."""
    a, b = two_servers
    ttl = float(b.env()["OTAML_POLICY_TTL"])
    cli = Cli(a, signing_key_path, tmp_path)
    token = json.loads(cli("enroll", "dev-9", "--json").stdout)["token"]
    headers = {"X-Otaml-Device-Id": "dev-9", "Authorization": f"Bearer {token}"}
    assert httpx.get(f"{b.url}/firmware.json", headers=headers).status_code == 404  # B caches "nothing"

    first_seen: dict[str, float] = {}
    stop = threading.Event()

    def poll_b() -> None:
        with httpx.Client(headers=headers) as client:
            while not stop.is_set():
                r = client.get(f"{b.url}/firmware.json")
                if r.status_code == 200:
                    first_seen.setdefault(r.headers["etag"], time.time())
                time.sleep(0.02)

    poller = threading.Thread(target=poll_b, daemon=True)
    poller.start()
    stale = []
    try:
        for i in range(5):
            r = cli("publish", "1.2", str(make_image("1.2"))) if i == 0 else cli("refresh")
            assert r.returncode == 0, r.stderr
            etag = httpx.get(f"{a.url}/firmware.json", headers=headers).headers["etag"]  # A changed it: no lag
            (committed,) = a.query("select max(created_at) from manifest")[0]
            committed_at = (committed if isinstance(committed, datetime) else datetime.fromisoformat(committed))
            seen = wait_for(lambda: first_seen.get(etag), timeout=10, interval=0.02, what=f"B to serve change {i}")
            stale.append(seen - committed_at.replace(tzinfo=committed_at.tzinfo or UTC).timestamp())
    finally:
        stop.set()
        poller.join(timeout=5)
    # One lifetime for B's snapshot to age, then one background reload; the margin covers that reload,
    # the poller's step and a loaded machine, and stays far below a lifetime of a few seconds.
    margin = 1.0
    assert max(stale) <= ttl + margin, f"B served changes {[round(x, 2) for x in stale]} s after commit; lifetime {ttl} s"
    r = httpx.get(f"{b.url}/firmware.json", headers=headers)
    assert json.loads(r.content)["semver"] == "1.2"
    assert httpx.get(json.loads(r.content)["file"]).content == make_image("1.2").read_bytes()


@pytest.fixture
def two_evaluators(tmp_path, database_url):
    """Two processes that both evaluate rollouts every 0.3 s (as every worker does)."""
    a, b = start_two(tmp_path, database_url)
    yield a, b
    a.stop()
    b.stop()


def test_rollout_decisions_agree_across_processes(two_evaluators, tmp_path, signing_key_path):
    from dataclasses import replace

    from otaml.image.synthetic import build_app_image as image
    from tests.utils.devices import HttpDevice, ring_bucket

    a, b = two_evaluators
    cli = Cli(a, signing_key_path, tmp_path)
    for version, extra in (("1.1", ()), ("1.2", ("--staged",))):
        path = tmp_path / f"otaml{version}.bin"
        path.write_bytes(image(version))
        assert cli("publish", version, str(path), *extra).returncode == 0
    devices = [HttpDevice.enroll(a, f"dev-{i:02d}") for i in range(30)]
    via = {d.device_id: (d, replace(d, url=b.url)) for d in devices}  # the same device through either process
    for d in devices:
        d.poll()
    rings = [10, 50, 100]
    ro = json.loads(cli("rollout", "start", "1.2", "--rings", ",".join(map(str, rings)), "--success-pct", "100", "--json").stdout)

    seen_stages = [0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with a.admin() as admin:
            r = admin.get(f"/api/rollouts/{ro['id']}").json()
        if r["stage"] != seen_stages[-1]:
            seen_stages.append(r["stage"])
            # Advanced only after every device of the earlier rings confirmed.
            done = {d.device_id for d in devices if d.version == "1.2"}
            assert {d.device_id for d in devices if ring_bucket(d.device_id) < rings[r["stage"] - 1] * 100} <= done
        if r["state"] == "done":
            break
        for i, d in enumerate(devices):
            first, second = via[d.device_id] if i % 2 else reversed(via[d.device_id])
            # Right after a decision the other process may be one policy TTL (0.3 s here) behind.
            offers = wait_for(lambda: len(o := {first.offered(), second.offered()}) == 1 and o,
                              timeout=2, what=f"both processes to offer {d.device_id} the same")
            if d.version == "1.1" and offers == {"1.2"}:
                second.update_to("1.2")  # events through the other process than the poll
                d.version = first.version = "1.2"
        time.sleep(0.2)
    assert r["state"] == "done" and seen_stages == [0, 1, 2], seen_stages
    late = HttpDevice.enroll(a, "late")
    assert late.offered() == "1.2" and replace(late, url=b.url).offered() == "1.2"
