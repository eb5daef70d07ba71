"""otaml-sim's device health in its check-ins (signal, heap, uptime, why it last reset) and download
progress: a large image reports 25, 50 and 75 % while it downloads, each step one ranged request that
continues where the last one stopped."""

from __future__ import annotations

import os
import re

import pytest

from tests.firmware.conftest import kinds
from tests.utils.sim import SIM_PLAIN
from tests.utils.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(mitm_and_server):
    """Devices reach the server through a forwarding proxy that records what crosses the wire."""
    return mitm_and_server[1]


def test_health_reaches_the_server_and_says_why_the_device_last_reset(mitm_and_server, cli, enroll, make_image, device_state,
                                                                     events):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    dev = enroll("dev-health", mitm_and_server[0].url)
    dev.binary = SIM_PLAIN  # glibc's allocator keeps the heap figures (a sanitizer build reports none)
    dev.flash_image(make_image("1.1"))
    dev.run(3, 100, "--rssi", "-71")
    s = device_state("dev-health")
    assert -75 <= s["rssi"] <= -71  # the simulated link wanders by up to 4 dB
    assert 0 < s["min_free_heap"] <= s["free_heap"] <= 320 * 1024
    assert 0 <= s["uptime_s"] < 60 and s["reset_reason"] == "poweron"

    assert cli("publish", "1.2", str(make_image("1.2"))).returncode == 0
    dev.run(2, 100)
    s = device_state("dev-health")
    assert (s["version"], s["reset_reason"]) == ("1.2", "sw")  # it restarted itself into the update

    assert cli("publish", "1.3", str(make_image("1.3", payload=b"OTAML-SIM:crash-on-boot\n"))).returncode == 0
    log = dev.run(2, 100)
    assert "simulated crash before the image confirmed itself" in log
    s = device_state("dev-health")
    # The bootloader brought 1.2 back after 1.3 crashed: 1.2 reports a panic as its last reset.
    assert (s["version"], s["reset_reason"]) == ("1.2", "panic")
    assert [(e["kind"], e["reason"]) for e in events("dev-health") if e["version"] == "1.3"][-2] == ("rolled_back", "reset_while_pending")


def test_a_large_image_reports_progress_in_ranged_steps(mitm_and_server, cli, enroll, make_image, events, device_state):
    mitm, _ = mitm_and_server
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    dev = enroll("dev-progress", mitm.url)
    dev.flash_image(make_image("1.1"))
    big = make_image("1.2", payload=os.urandom(700_000))
    size = big.stat().st_size
    assert cli("publish", "1.2", str(big)).returncode == 0

    before = len(mitm.sent)
    dev.start(0, 200, "--download-rate", "250000")  # about 3 s: the fleet sees the update in flight
    wait_for(lambda: device_state("dev-progress")["last_event"] == "download_progress", 60, "an update in flight")
    wait_for(lambda: device_state("dev-progress")["version"] == "1.2", 90, "the update to confirm")
    dev.kill()

    evts = [e for e in events("dev-progress") if e["version"] == "1.2"]
    assert kinds(evts)[:5] == ["download_started", "download_progress", "download_progress", "download_progress", "verified"]
    steps = [re.fullmatch(r"(\d+)% \((\d+) of (\d+) bytes\)", e["detail"]) for e in evts if e["kind"] == "download_progress"]
    assert all(steps), [e["detail"] for e in evts]
    assert [int(m.group(1)) for m in steps] == [25, 50, 75]
    done = [int(m.group(2)) for m in steps]
    assert all(int(m.group(3)) == size for m in steps)
    assert [d >= size * p // 100 for d, p in zip(done, (25, 50, 75))] == [True] * 3 and done == sorted(done)
    # On the wire: the whole image from 0, then one ranged request from each milestone the device reached.
    binaries = [x for x in mitm.sent[before:] if x.path.startswith("/binaries/")]
    assert [(x.range, x.status) for x in binaries] == [(None, 200)] + [(f"bytes={d}-", 206) for d in done]
