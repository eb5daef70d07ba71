"""Operator mistakes that used to be accepted and hurt later are refused with one line and exit 2 on
the CLI, and a typed 4xx on the API: pins a device cannot follow, config for a device that does not
exist, a build for another chip onto a channel. `device unpin` undoes a pin."""

from __future__ import annotations

import json

import pytest

from otaml.image.synthetic import build_app_image
from tests.utils.devices import HttpDevice

pytestmark = pytest.mark.e2e


def one_line(result, *fragments: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("A fatal error occurred: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def fleet(server, cli, make_image):
    for version in ("1.1", "1.2"):
        assert cli("publish", version, str(make_image(version))).returncode == 0
    on_12 = HttpDevice.enroll(server, "dev-new", version="1.2")
    on_11 = HttpDevice.enroll(server, "dev-old", version="1.1")
    for d in (on_12, on_11):
        assert d.poll().status_code == 200
    HttpDevice.enroll(server, "dev-silent")  # enrolled, never polled
    return on_12, on_11


def pin_of(server, device_id: str) -> str | None:
    return server.query(f"select pin_version from device where device_id='{device_id}'")[0][0]


def test_a_pin_must_name_a_release_of_the_channel_not_older_than_what_runs(server, cli, fleet):
    line = one_line(cli("device", "pin", "dev-new", "1.7"), "1.7 is not a release of its channel 'stable'", "--force")
    assert "server answered" not in line  # the server's own sentence, by its error class
    one_line(cli("device", "pin", "dev-new", "1.1"), "it runs 1.2", "replayed", "--force REASON")
    one_line(cli("device", "pin", "dev-silent", "1.2"), "has not polled yet")
    one_line(cli("device", "pin", "dev-new", "1.2\n"), "pin_version")
    one_line(cli("device", "pin", "ghost", "1.2"), "no device 'ghost'")
    assert pin_of(server, "dev-new") is None and pin_of(server, "dev-silent") is None
    with server.admin() as admin:
        r = admin.patch("/api/devices/dev-new", json={"pin_version": "1.7"})
        assert r.status_code == 409 and r.json()["error"] == "PinError"

    assert cli("device", "pin", "dev-old", "1.2").returncode == 0  # newer, published: fine
    assert fleet[1].offered() == "1.2" and pin_of(server, "dev-old") == "1.2"
    forced = cli("device", "pin", "dev-new", "1.1", "--force", "field test of the old sensor driver")
    assert forced.returncode == 0, forced.stderr
    assert pin_of(server, "dev-new") == "1.1"
    assert "forced" in server.log() and "field test of the old sensor driver" in server.log()

    unpinned = cli("device", "unpin", "dev-new")
    assert unpinned.returncode == 0 and "follows its channel" in unpinned.stdout
    assert pin_of(server, "dev-new") is None and fleet[0].offered() == "1.2"


def test_config_for_an_unknown_device_is_refused_like_a_pin(server, cli, fleet):
    one_line(cli("config", "set", "device", "ghost", "alert_threshold=50"), "no device 'ghost'", "release enroll ghost")
    one_line(cli("config", "set", "tag", "Not-A-Tag", "alert_threshold=50"), "a tag of 1 to 32")
    one_line(cli("config", "set", "channel", "stable\n", "alert_threshold=50"), "a channel of 1 to 32")
    assert server.query("select count(*) from config_layer") == [(0,)]
    assert cli("config", "set", "device", "dev-new", "alert_threshold=50").returncode == 0
    with server.admin() as admin:
        r = admin.put("/api/config/device/ghost", json={"alert_threshold": 50})
        assert r.status_code == 404 and r.json()["error"] == "NotFoundError"


def test_a_channel_has_the_chip_of_its_first_release(server, cli, fleet, tmp_path):
    c3 = tmp_path / "c3.bin"
    c3.write_bytes(build_app_image("1.7", chip="esp32c3"))
    line = one_line(cli("publish", "1.7", str(c3), "--chip", "esp32c3"),
                    "channel 'stable' serves esp32", "esp32c3", "--channel stable-esp32c3")
    assert "channel of their own" in line
    assert [r["version"] for r in json.loads(cli("list", "--json").stdout)] == ["1.2", "1.1"]
    assert fleet[0].offered() == "1.2"  # the esp32 devices' baseline is untouched
    own = cli("publish", "1.7", str(c3), "--chip", "esp32c3", "--channel", "stable-esp32c3")
    assert own.returncode == 0, own.stderr
