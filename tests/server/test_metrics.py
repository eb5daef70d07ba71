"""/metrics in Prometheus' format: counters the poll path bumps (polls, 304s), check-ins written and
dropped, rollouts by state, devices by version; the admin token unless OTAML_METRICS_PUBLIC; every
process's counters from any process (they share the data dir)."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.utils.devices import HttpDevice
from tests.utils.processes import ServerProcess
from tests.utils.waiting import wait_for

pytestmark = pytest.mark.e2e


def scrape(server, token: str | None = "admin") -> dict[str, dict[tuple, float]]:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {server.admin_token}"} if token == "admin" else {}
    r = httpx.get(f"{server.url}/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def total(metrics: dict, name: str) -> float:
    return sum(metrics.get(name, {}).values())


def test_polls_304s_checkins_rollouts_and_versions(server, cli, make_image):
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    assert cli("publish", "1.2", str(make_image("1.2")), "--staged").returncode == 0
    devices = [HttpDevice.enroll(server, f"met-{i}") for i in range(4)]
    devices[3].version = "0.9-factory"  # not a release: counted as "other", never its own series
    before = total(scrape(server), "otaml_polls_total")
    etag = None
    for d in devices:
        r = d.poll()
        etag = r.headers["etag"]
    r = httpx.get(f"{server.url}/firmware.json", headers={**devices[0].auth, "X-Otaml-Version": "1.1", "If-None-Match": etag})
    assert r.status_code == 304
    assert cli("rollout", "start", "1.2").returncode == 0
    m = wait_for(lambda: m if total(m := scrape(server), "otaml_checkins_written_total") >= 1 else None, what="a flush")
    assert total(m, "otaml_polls_total") - before == 5
    assert total(m, "otaml_polls_not_modified_total") == 1
    assert total(m, "otaml_checkins_dropped_total") == 0
    assert m["otaml_rollouts"][(("state", "running"),)] == 1 and m["otaml_rollouts"][(("state", "halted"),)] == 0
    assert m["otaml_devices"] == {(("channel", "stable"), ("version", "1.1")): 3, (("channel", "stable"), ("version", "other")): 1}
    assert [labels for labels in m["otaml_polls_total"]] == [(("process", labels[0][1]),) for labels in m["otaml_polls_total"]]


def test_a_scrape_reports_every_process_and_can_be_public(tmp_path, database_url):
    a = ServerProcess(tmp_path / "data", database_url=database_url, env_extra={"OTAML_METRICS_PUBLIC": "true"}).start()
    b = ServerProcess(tmp_path / "data", database_url=database_url, admin_token=a.admin_token).start()
    try:
        dev = HttpDevice.enroll(a, "two-1")
        for server, n in ((a, 2), (b, 3)):
            dev.url = server.url
            for _ in range(n):
                dev.poll()
        # b's snapshot reaches a's scrape within a few seconds; each process is its own series. A snapshot
        # b wrote between two of its polls is seen first, so wait for the one after its last poll.
        m = wait_for(lambda: m if sorted((m := scrape(a, token=None))["otaml_polls_total"].values()) == [2, 3] else None,
                     15, "both processes' polls in one scrape")
        assert len(m["otaml_polls_total"]) == 2
        assert httpx.get(f"{b.url}/metrics").status_code == 401  # b keeps the default: the admin token
    finally:
        a.stop()
        b.stop()
