"""Power loss mid-download, and the poll loop's memory."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.firmware.conftest import kinds
from tests.utils.sim import SIM_PLAIN
from tests.utils.waiting import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(mitm_and_server):
    """The device reaches the server through a forwarding proxy that counts the bytes it is sent."""
    return mitm_and_server[1]


def test_power_loss_mid_download_keeps_1_1_and_resumes_later(mitm_and_server, cli, enroll, make_image, events):
    mitm, _ = mitm_and_server
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    dev = enroll("dev-power", mitm.url)
    dev.flash_image(make_image("1.1"))
    big = make_image("1.2", code_size=1_500_000)
    size = big.stat().st_size
    assert cli("publish", "1.2", str(big)).returncode == 0

    # Resumption alone: without progress milestones the rest of the image is one ranged request
    #  (tests/firmware/test_health_and_progress.py covers the milestones' segments).
    dev.start(0, 200, "--download-rate", "400000", "--progress-min-bytes", "0")  # a slow radio: ~4 s for the image
    wait_for(lambda: dev.info()["nvs"].get("dl_off", 0) >= 256 * 1024, timeout=60, what="256 KB saved", interval=0.05)
    dev.kill()
    info = dev.info()
    offset = info["nvs"]["dl_off"]
    assert 0 < offset < size
    assert info["boot_slot"] == "ota_0" and dev.booted_version() == "1.1"

    before = len(mitm.sent)
    log = dev.run(2, 100, "--progress-min-bytes", "0")
    assert f"resuming at {offset} of {size}" in log
    assert "restarting the download" not in log  # the warning the firmware gives when a range is ignored
    assert "1.2 confirmed" in log and dev.booted_version() == "1.2"
    # What actually crossed the wire after the power loss: one ranged request from the saved offset,
    # answered 206 with exactly the rest of the image, not the whole image again.
    binaries = [x for x in mitm.sent[before:] if x.path.startswith("/binaries/")]
    assert [(x.range, x.status, x.body_bytes) for x in binaries] == [(f"bytes={offset}-", 206, size - offset)]
    starts = [e for e in events("dev-power") if e["kind"] == "download_started"]
    assert starts[0]["detail"] == "" and starts[-1]["detail"] == f"resuming at {offset} of {size}"
    assert kinds(events("dev-power"))[-2:] == ["booted", "confirmed"]


def test_idle_polls_do_not_grow_the_heap(cli, enroll, make_image):
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0

    def heap_after(polls: int) -> int:
        dev = enroll(f"dev-idle-{polls}")
        dev.binary = SIM_PLAIN  # glibc's allocator statistics; ASan replaces the allocator
        dev.flash_image(make_image("1.1"))
        log = dev.run(polls, 2, "--heap-report")
        m = re.search(rf"heap in use after 10 polls: (\d+) bytes, after {polls} polls: (\d+) bytes", log)
        assert m, log
        assert int(m.group(1)) > 0 and int(m.group(2)) > 0, "the simulator could not read its heap figures: 0 - 0 proves nothing"
        return int(m.group(2))

    # Two runs, 600 polls apart: the allocator's churn (curl's connection cache, fragmentation) moves
    # the figure by a few KB either way, whatever the count; a leak of even one small allocation per
    # poll is >= 32 bytes x 600 = 19 KB more in the longer run.
    short, long = heap_after(100), heap_after(700)
    assert long - short < 6144, f"heap after 700 idle polls is {long - short} bytes above the figure after 100"


def test_poll_loop_has_no_leaks_under_valgrind(cli, enroll, make_image):
    assert shutil.which("valgrind"), "valgrind is missing: scripts/setup installs it"
    assert cli("publish", "1.1", str(make_image("1.1"))).returncode == 0
    dev = enroll("dev-valgrind")
    dev.binary = SIM_PLAIN
    dev.flash_image(make_image("1.1"))
    args = ["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=33",
            *dev.args(60, 2)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "definitely lost: 0 bytes" in r.stderr or "All heap blocks were freed" in r.stderr, r.stderr[-2000:]
