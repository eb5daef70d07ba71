"""The device side of the server: manifest polls as check-ins, ETags, auth, batching, events."""

from __future__ import annotations

import json
import signal

import httpx
import pytest

from tests.utils.processes import ServerProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def published(cli, make_image):
    assert cli("publish", "1.2", str(make_image("1.2"))).returncode == 0


def enroll(cli, device_id: str) -> dict[str, str]:
    result = cli("enroll", device_id, "--json")
    assert result.returncode == 0, result.stderr
    return {"X-Otaml-Device-Id": device_id, "Authorization": f"Bearer {json.loads(result.stdout)['token']}"}


def checkin(**state: str) -> dict[str, str]:
    names = {"version": "X-Otaml-Version", "partition": "X-Otaml-Partition", "state": "X-Otaml-Ota-State",
             "manifest_version": "X-Otaml-Manifest-Version", "secure_version": "X-Otaml-Secure-Version"}
    return {names[k]: v for k, v in state.items()}


def test_poll_records_reported_state_and_cli_shows_it(server, cli, published):
    dev = enroll(cli, "dev-0001")
    r = httpx.get(f"{server.url}/firmware.json", headers={**dev, **checkin(
        version="1.1", partition="ota_0", state="valid", manifest_version="0", secure_version="0")})
    assert r.status_code == 200
    assert r.headers["X-Otaml-Poll-Interval"] == "60"
    devices = json.loads(cli("devices", "--json").stdout)
    assert devices["count"] == 1
    d = devices["data"][0]
    assert (d["device_id"], d["version"], d["partition"], d["ota_state"], d["channel"]) == ("dev-0001", "1.1", "ota_0", "valid", "stable")
    assert d["last_seen"] is not None
    table = cli("devices").stdout
    assert "dev-0001" in table and "1.1" in table and "ota_0" in table


def test_unchanged_poll_is_304_with_same_etag(server, cli, published):
    dev = enroll(cli, "dev-0001")
    first = httpx.get(f"{server.url}/firmware.json", headers=dev)
    again = httpx.get(f"{server.url}/firmware.json", headers={**dev, "If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["ETag"] == first.headers["ETag"]
    stale = httpx.get(f"{server.url}/firmware.json", headers={**dev, "If-None-Match": '"stale"'})
    assert stale.status_code == 200 and stale.content == first.content


def test_device_auth_is_required_unless_legacy_clients_are_allowed(server, cli, published, tmp_path):
    dev = enroll(cli, "dev-0001")
    no_id = httpx.get(f"{server.url}/firmware.json")
    assert no_id.status_code == 401 and "OTAML_ALLOW_LEGACY_CLIENTS" in no_id.json()["detail"]
    wrong = httpx.get(f"{server.url}/firmware.json", headers={**dev, "Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["detail"] == "unknown device 'dev-0001' or wrong device token"
    unknown = httpx.get(f"{server.url}/firmware.json", headers={**dev, "X-Otaml-Device-Id": "ghost"})
    assert unknown.status_code == 401

    legacy = ServerProcess(server.data_dir, env_extra={"OTAML_ALLOW_LEGACY_CLIENTS": "true"},
                           database_url=server.database_url)
    server.stop()
    legacy.start()
    try:
        r = httpx.get(f"{legacy.url}/firmware.json")
        assert r.status_code == 200 and json.loads(r.content)["version"] == 1.2
        assert httpx.get(f"{legacy.url}/firmware.json", headers={**dev, "Authorization": "Bearer nope"}).status_code == 401
    finally:
        legacy.stop()


def test_malformed_checkin_header_is_400_and_named(server, cli, published):
    dev = enroll(cli, "dev-0001")
    r = httpx.get(f"{server.url}/firmware.json", headers={**dev, **checkin(state="sleepy")})
    assert r.status_code == 400 and r.json()["detail"].startswith("X-Otaml-Ota-State: expected one of new, pending_verify")
    r = httpx.get(f"{server.url}/firmware.json", headers={**dev, **checkin(manifest_version="-3")})
    assert r.status_code == 400 and "X-Otaml-Manifest-Version" in r.json()["detail"]


def test_nothing_published_is_404_but_still_a_checkin(server, cli):
    dev = enroll(cli, "dev-0002")
    r = httpx.get(f"{server.url}/channels/beta/firmware.json", headers={**dev, **checkin(version="1.0")})
    assert r.status_code == 404 and r.json()["detail"] == "no release published on channel 'beta'"
    assert r.headers["X-Otaml-Poll-Interval"] == "60"
    d = json.loads(cli("devices", "--json").stdout)["data"][0]
    assert (d["version"], d["channel"]) == ("1.0", "beta")


def test_checkins_are_batched_and_flushed_on_shutdown(tmp_path, make_image, signing_key_path, database_url):
    from tests.utils.processes import Cli

    srv = ServerProcess(tmp_path / "data", env_extra={"OTAML_CHECKIN_FLUSH_INTERVAL": "60"},
                        database_url=database_url).start()
    cli = Cli(srv, signing_key_path, tmp_path)
    dev = enroll(cli, "dev-0003")
    for i in range(50):
        assert httpx.get(f"{srv.url}/firmware.json", headers={**dev, **checkin(version=f"1.{i}")}).status_code == 404
    # Nothing written yet: the batch waits.
    assert srv.query("select version from device where device_id='dev-0003'") == [(None,)]
    assert srv.stop(signal.SIGTERM) == 0  # granian stops its worker, which flushes, then exits cleanly
    assert srv.query("select version from device where device_id='dev-0003'") == [("1.49",)]


def _workers_that_answered_polls(srv: ServerProcess) -> int:
    """Processes whose metrics snapshot (written every second, ops/metrics.py) counts polls."""
    answered = 0
    for path in (srv.data_dir / "metrics").glob("*.json"):
        try:
            answered += json.loads(path.read_text())["values"]["polls"] > 0
        except (OSError, ValueError, KeyError):
            pass  # a snapshot being replaced
    return answered


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_every_worker_flushes_its_checkins_on_shutdown(sig, tmp_path, signing_key_path, database_url):
    """--workers 2: each worker holds the check-ins it answered; SIGTERM (or SIGINT, Ctrl-C) stops both
    and each writes its own batch, so no answered check-in is lost, whichever worker took it."""
    from tests.utils.processes import Cli

    srv = ServerProcess(tmp_path / "data", database_url=database_url,
                        env_extra={"OTAML_CHECKIN_FLUSH_INTERVAL": "60", "OTAML_WORKERS": "2"}).start()
    cli = Cli(srv, signing_key_path, tmp_path)
    devices = {f"dev-{i:02d}": enroll(cli, f"dev-{i:02d}") for i in range(8)}
    sent: dict[str, str] = {}
    for round_ in range(200):  # fresh connections until both workers have answered some (the kernel picks)
        for device, headers in devices.items():
            with httpx.Client() as client:
                r = client.get(f"{srv.url}/firmware.json", headers={**headers, **checkin(version=f"1.{round_}")})
            assert r.status_code == 404  # nothing published: still a check-in
            sent[device] = f"1.{round_}"
        if round_ >= 2 and _workers_that_answered_polls(srv) == 2:
            break
    assert _workers_that_answered_polls(srv) == 2, "one worker answered every poll"
    # Nothing written yet: each worker holds its batch for a minute.
    assert srv.query("select count(*) from device where version is not null") == [(0,)]
    assert srv.stop(sig) == 0
    stored = dict(srv.query("select device_id, version from device"))
    assert stored == sent, f"after {sig.name}"


def test_update_events_build_a_history(server, cli):
    dev = enroll(cli, "dev-0001")
    url = f"{server.url}/api/devices/dev-0001/events"
    for kind, reason in [("download_started", "ok"), ("verified", "ok"), ("installed", "ok"),
                         ("rolled_back", "self_test_failed")]:
        r = httpx.post(url, headers=dev, json={"kind": kind, "version": "1.2", "reason": reason})
        assert r.status_code == 201, r.text
    history = json.loads(cli("events", "dev-0001", "--json").stdout)["data"]
    assert [e["kind"] for e in history] == ["rolled_back", "installed", "verified", "download_started"]
    assert history[0]["reason"] == "self_test_failed"
    d = json.loads(cli("devices", "--json").stdout)["data"][0]
    assert (d["last_event"], d["last_reason"]) == ("rolled_back", "self_test_failed")

    assert httpx.post(url, headers={**dev, "Authorization": "Bearer bad"}, json={"kind": "booted"}).status_code == 401
    bad = httpx.post(url, headers=dev, json={"kind": "exploded"})
    assert bad.status_code == 422
    bad = httpx.post(url, headers=dev, json={"kind": "rejected", "reason": "because"})
    assert bad.status_code == 422
    assert len(json.loads(cli("events", "dev-0001", "--json").stdout)["data"]) == 4


def test_enrolling_twice_is_refused(cli):
    assert cli("enroll", "dev-0001").returncode == 0
    again = cli("enroll", "dev-0001")
    assert again.returncode == 2 and "already enrolled" in again.stderr
    bad = cli("enroll", "no spaces allowed")
    assert bad.returncode == 2 and "invalid device_id" in bad.stderr


def test_an_unknown_id_is_refused_from_memory_but_enrolling_it_takes_effect_at_once(server, cli, published):
    ghost = {"X-Otaml-Device-Id": "late-dev", "Authorization": "Bearer guess"}
    assert httpx.get(f"{server.url}/firmware.json", headers=ghost).status_code == 401  # remembered as unknown
    dev = enroll(cli, "late-dev")  # the same process forgets that at enrollment
    assert httpx.get(f"{server.url}/firmware.json", headers=dev).status_code == 200
    assert httpx.get(f"{server.url}/firmware.json", headers={**dev, "Authorization": "Bearer guess"}).status_code == 401


def test_a_burst_of_update_events_is_stored_and_counted_once_each(server):
    """A fleet confirming an update at once: every event is stored and counted in the history's outcome
    buckets exactly once (counted in memory, written by the check-in flush; a reader flushes first),
    and the burst does not stall the server (each event's connection is back in the pool at commit)."""
    import concurrent.futures
    import time

    with server.admin() as admin:
        devices = [{"X-Otaml-Device-Id": f"dev-{i:03d}", "Authorization": "Bearer " + admin.post(
            "/api/devices", json={"device_id": f"dev-{i:03d}"}).json()["token"]} for i in range(40)]
    kinds = ["download_started", "verified", "installed", "booted", "confirmed"]

    def update(dev: dict[str, str]) -> list[int]:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            return [http.post(f"/api/devices/{dev['X-Otaml-Device-Id']}/events", headers=dev,
                              json={"kind": kind, "version": "1.3"}).status_code for kind in kinds]

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=40) as pool:  # more than the pool's 15 connections
        statuses = [s for result in pool.map(update, devices) for s in result]
    took = time.monotonic() - t0
    assert statuses == [201] * 200
    assert took < 30, f"200 events took {took:.0f} s: requests waited for a database connection"
    assert server.query("select count(*) from device_event") == [(200,)]
    with server.admin() as admin:
        lines = admin.get("/api/history", params={"range": "1h"}).json()["outcomes"]["lines"]
    assert sum(v or 0 for v in lines.get("confirmed", [])) == 40
