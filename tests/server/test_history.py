"""Fleet history: aggregates written by the check-in flush (fleet/history.py) and read by range
(fleet/insight.py). Class counts come from deltas of lifetime counters that restart at boot; several
server processes on one database never count a check-in twice; old buckets are pruned."""

from __future__ import annotations

import json
import itertools
import random
import time

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, text

from otaml.fleet.history import ml_delta
from tests.utils.devices import HttpDevice
from tests.utils.processes import ServerProcess
from tests.utils.waiting import wait_for

LABELS = ["healthy", "unstable", "overdriven", "failsoon"]

# A device's life: per report, whether it rebooted first, and how many predictions per class since
# the previous report.
lives = st.lists(
    st.tuples(st.booleans(), st.lists(st.integers(0, 50), min_size=4, max_size=4)), min_size=1, max_size=30
)


@given(lives)
@settings(max_examples=300, deadline=None)
def test_deltas_add_up_to_every_prediction_when_restarts_are_known(life):
    counters = [0] * 4
    old = None
    total = 0
    true_total = 0
    for rebooted, increments in life:
        if rebooted:
            counters = [0] * 4
        counters = [c + i for c, i in zip(counters, increments)]
        true_total += sum(increments)
        new = dict(zip(LABELS, counters))
        delta, _ = ml_delta(new, old, rebooted and old is not None)
        assert all(v >= 0 for v in delta.values())
        total += sum(delta.values())
        old = new
    assert total == true_total


@given(lives)
@settings(max_examples=300, deadline=None)
def test_without_an_uptime_deltas_never_overcount_and_a_counter_going_down_is_a_restart(life):
    counters = [0] * 4
    old = None
    total = true_total = 0
    for rebooted, increments in life:
        if rebooted:
            counters = [0] * 4
        counters = [c + i for c, i in zip(counters, increments)]
        true_total += sum(increments)
        new = dict(zip(LABELS, counters))
        delta, went_down = ml_delta(new, old, False)
        if old is not None and any(new[k] < old[k] for k in LABELS):
            assert went_down and delta == new  # everything since the restart
        total += sum(delta.values())
        old = new
    assert total <= true_total


def history(server, **params) -> dict:  # type: ignore[no-untyped-def]
    with server.admin() as admin:
        r = admin.get("/api/history", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def class_totals(h: dict) -> dict[str, float]:
    return {k: sum(v or 0 for v in vals) for k, vals in h["classes"]["lines"].items()}


def poll(device: HttpDevice, counts: list[int], uptime: int, version: str | None = None) -> None:
    if version:
        device.version = version
    device.extra = {"X-Otaml-Ml-Counters": ",".join(f"{k}={v}" for k, v in zip(LABELS, counts)),
                    "X-Otaml-Uptime-S": str(uptime), "X-Otaml-Ml-Latency-Us": "1000"}
    assert device.poll().status_code in (200, 304, 404)


def flushed(server, polls: int) -> None:
    """Reports within one flush interval are coalesced (the newest wins): wait for each to be written."""
    wait_for(lambda: sum(v or 0 for v in history(server)["checkins"]["lines"]["polls"]) == polls, what=f"{polls} polls flushed")


def test_a_device_that_reboots_is_counted_once_per_prediction(server, cli):
    dev = HttpDevice.enroll(server, "hist-1")
    poll(dev, [5, 1, 0, 0], 100)
    flushed(server, 1)
    poll(dev, [9, 2, 0, 0], 160)  # +4 healthy, +1 unstable
    flushed(server, 2)
    poll(dev, [3, 0, 1, 0], 5)  # rebooted: everything since the reboot is new
    flushed(server, 3)
    poll(dev, [3, 0, 1, 0], 65, version="1.2")  # an update is a restart too: the counters are the new image's
    expected = {"healthy": 5 + 4 + 3 + 3, "unstable": 2, "overdriven": 1 + 1}
    h = wait_for(lambda: h if class_totals(h := history(server)) == expected else None, what=f"class totals {expected}")
    assert h["checkins"]["lines"]["polls"][-1] + h["checkins"]["lines"]["polls"][-2] == 4  # four polls, however bucketed
    assert sum(h["reboots"]["lines"]["restarts"]) == 2
    assert sum(v or 0 for v in h["devices"]["lines"]["online"]) in (1, 2)  # one device (twice if a minute turned)
    assert set(h["latency"]["lines"]) == {"1.1", "1.2"}

    dev.report("download_started", "1.3")
    dev.report("rolled_back", "1.3", "self_test_failed")
    out = wait_for(lambda: o if "rolled_back" in (o := history(server)["outcomes"]["lines"]) else None, what="outcomes")
    assert sum(out["rolled_back"]) == 1 and sum(out["download_started"]) == 1
    with server.admin() as admin:
        hours = admin.get(f"/api/history/devices/{dev.device_id}").json()
    rates = {k: v[-1] for k, v in hours["class_rates"]["lines"].items() if v[-1] is not None}
    if rates:  # the hour may have turned between polls; then the rates split over two points
        assert abs(sum(rates.values()) - 1.0) < 1e-6
    assert sum(v or 0 for v in hours["checkins"]["lines"]["check-ins"]) == 4

    # `release history` reads the same aggregates: as JSON, and as a table of the points with polls.
    r = cli("history", "--range", "24h", "--json")
    assert r.returncode == 0, r.stderr
    assert class_totals(json.loads(r.stdout)) == expected
    r = cli("history", "--range", "24h", "--channel", "stable")
    assert r.returncode == 0, r.stderr
    assert "healthy" in r.stdout and "latency 1.2 (us)" in r.stdout and " 4 " in r.stdout, r.stdout


def test_history_refuses_what_it_cannot_read(server):
    with server.admin() as admin:
        assert admin.get("/api/history", params={"range": "2h"}).status_code == 422
        assert admin.get("/api/history", params={"channel": "Bad Channel"}).status_code == 422
        assert admin.get("/api/history/devices/nobody").status_code == 404
    assert httpx.get(f"{server.url}/api/history").status_code == 401


@pytest.mark.e2e
def test_two_processes_never_count_a_checkin_twice(tmp_path, database_url):
    """Devices poll both processes in turn (a load balancer); each process flushes what it answered.
    The class counts and polls in the history equal exactly what the devices did."""
    a = ServerProcess(tmp_path / "data", database_url=database_url).start()
    b = ServerProcess(tmp_path / "data", database_url=database_url, admin_token=a.admin_token).start()
    try:
        devices = [HttpDevice.enroll(a, f"mp-{i:02d}") for i in range(12)]
        rng = random.Random(7)
        counts = {d.device_id: [0, 0, 0, 0] for d in devices}
        polls = 0
        for round_, target in zip(range(15), itertools.cycle([a, b])):
            for d in devices:
                c = counts[d.device_id]
                for k in range(4):
                    c[k] += rng.randint(0, 9)
                d.url = (target if rng.random() < 0.5 else (b if target is a else a)).url
                poll(d, c, 100 + round_)
                polls += 1
            time.sleep(0.05)  # interleave the two processes' flushes
        expected = {k: sum(c[i] for c in counts.values()) for i, k in enumerate(LABELS)}
        h = wait_for(lambda: h if class_totals(h := history(a)) == expected else None, 20,
                     f"class totals {expected}, seen {class_totals(history(a))}")
        assert sum(v or 0 for v in h["checkins"]["lines"]["polls"]) == polls
        assert class_totals(history(b)) == expected  # both processes read the one database
    finally:
        a.stop()
        b.stop()


@pytest.mark.e2e
def test_buckets_past_their_retention_are_pruned(tmp_path, database_url):
    srv = ServerProcess(tmp_path / "data", database_url=database_url,
                        env_extra={"OTAML_HOUSEKEEPING_INTERVAL": "0.3", "OTAML_HISTORY_MINUTE_RETENTION": "2"}).start()
    try:
        dev = HttpDevice.enroll(srv, "old-1")
        poll(dev, [1, 0, 0, 0], 10)
        wait_for(lambda: srv.query("select count(*) from history_bucket")[0][0] == 2, what="a minute and an hour bucket")
        now = int(time.time())
        old = now - now % 60 - 3 * 3600  # a minute bucket three hours old: past two hours of retention
        engine = create_engine(srv.db_url())
        with engine.begin() as conn:  # a bucket a flush wrote three hours ago
            conn.execute(text(f"insert into history_bucket (resolution, start, channel, version, checkins, devices, first_seen, "
                              f"reboots, latency_sum, latency_n) values (60, {old}, 'stable', '1.1', 5, 1, 1, 0, 0, 0)"))
        engine.dispose()
        wait_for(lambda: srv.query(f"select count(*) from history_bucket where start = {old}")[0][0] == 0, what="the prune")
        assert srv.query("select count(*) from history_bucket")[0][0] == 2  # the recent ones stay
    finally:
        srv.stop()
