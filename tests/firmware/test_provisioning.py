"""Fleet provisioning end to end: `release provision` enrolls a CSV of devices and writes one NVS image
each (ESP-IDF's generator); simulated devices booted from those images check in under their ids from one
build, with nothing on their command line. Claiming with a fleet claim token (with and without approval),
token rotation and revocation across a live simulated device."""

from __future__ import annotations

import csv
import json
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from otaml.image.synthetic import build_app_image
from tests.utils import nvs
from tests.utils.sim import SIM, SIM_PLAIN, partition
from tests.utils.waiting import wait_for

pytestmark = pytest.mark.e2e
NVS_OFFSET, NVS_SIZE = partition("nvs")


class NvsDevice:
    """A simulated device booted from a provisioned NVS image: no id, token or server on its command line."""

    def __init__(self, tmp_path: Path, name: str, image: Path, app: Path):
        self.flash = tmp_path / f"{name}.flash"
        self.log_path = tmp_path / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        r = subprocess.run([str(SIM), "--flash", str(self.flash), "flash", str(app), "--nvs", str(image)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr

    def args(self, polls: int, interval_ms: int) -> list[str]:
        return [str(SIM), "--flash", str(self.flash), "run", "--polls", str(polls), "--interval-ms", str(interval_ms)]

    def run(self, polls: int = 2, interval_ms: int = 100) -> str:
        r = subprocess.run(self.args(polls, interval_ms), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    def start(self, interval_ms: int = 150) -> None:
        self.proc = subprocess.Popen(self.args(0, interval_ms), stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def nvs(self) -> dict:
        with open(self.flash, "rb") as f:
            f.seek(NVS_OFFSET)
            return nvs.read(f.read(NVS_SIZE)).get("otaml", {})

    def info(self) -> dict:
        r = subprocess.run([str(SIM_PLAIN), "--flash", str(self.flash), "info"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)


@pytest.fixture
def app(tmp_path) -> Path:
    path = tmp_path / "otaml1_0.bin"
    path.write_bytes(build_app_image("1.0"))
    return path


@pytest.fixture
def devices():
    started: list[NvsDevice] = []
    yield started
    for d in started:
        d.stop()


def device(server, device_id: str) -> dict:
    with server.admin() as admin:
        r = admin.get(f"/api/devices/{device_id}")
    assert r.status_code == 200, r.text
    return r.json()


def poll(server, device_id: str, token: str) -> int:
    r = httpx.get(f"{server.url}/firmware.json", headers={"X-Otaml-Device-Id": device_id, "Authorization": f"Bearer {token}"})
    return r.status_code


def test_a_100_row_csv_yields_100_images_and_three_devices_check_in_from_one_build(cli, server, tmp_path, app):
    rows = [{"device_id": f"dev-{i:04d}", "channel": "stable" if i % 2 else "", "tags": "line-a;hw:rev2" if i < 50 else "",
             "wifi_ssid": "factory" if i % 3 else "", "wifi_password": "secret-passphrase" if i % 3 else ""} for i in range(1, 101)]
    with open(tmp_path / "devices.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    started = time.monotonic()
    r = cli("provision", "devices.csv", "--out", "factory", "--server-url", server.url, "--wifi-ssid", "default-net",
            timeout=300)
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    out = tmp_path / "factory"
    images = sorted(out.glob("*.bin"))
    assert len(images) == 100 and "100 NVS images" in r.stdout
    print(f"\nrelease provision: 100 devices enrolled and 100 NVS images written in {elapsed:.1f} s")
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 and p.stat().st_size == NVS_SIZE for p in images)
    index = list(csv.DictReader(open(out / "index.csv")))
    assert [e["device_id"] for e in index] == [f"dev-{i:04d}" for i in range(1, 101)]
    assert index[41]["flash_command"] == f"esptool --chip esp32 --port PORT write-flash {NVS_OFFSET:#x} {out / 'dev-0042.bin'}"
    tokens = {p.stem: nvs.read(p.read_bytes())["otaml"]["token"] for p in images}
    assert len(set(tokens.values())) == 100
    for text in (r.stdout, r.stderr, (out / "index.csv").read_text()):  # secrets never reach the terminal or the index
        assert not any(t in text for t in tokens.values()) and "secret-passphrase" not in text
    values = nvs.read((out / "dev-0003.bin").read_bytes())["otaml"]
    assert values == {"device_id": "dev-0003", "token": tokens["dev-0003"], "server_url": server.url, "channel": "stable",
                      "wifi_ssid": "default-net"}  # row 3 names no Wi-Fi: the option's; no password at all
    assert nvs.read((out / "dev-0004.bin").read_bytes())["otaml"]["wifi_pass"] == "secret-passphrase"
    assert device(server, "dev-0042")["tags"] == ["hw:rev2", "line-a"] and device(server, "dev-0077")["tags"] == []

    for name in ("dev-0007", "dev-0042", "dev-0100"):
        log = NvsDevice(tmp_path, name, out / f"{name}.bin", app).run(polls=2)
        assert f"device {name} on {server.url}, channel stable" in log, log
        assert "server refused" not in log
    wait_for(lambda: all(device(server, d)["last_seen"] for d in ("dev-0007", "dev-0042", "dev-0100")), what="three check-ins")
    assert device(server, "dev-0008")["last_seen"] is None

    # The same CSV again: refused whole, nothing changes; with --rotate-tokens every device gets a new token.
    again = cli("provision", "devices.csv", "--out", "factory2", "--server-url", server.url)
    assert again.returncode == 2 and "100 already enrolled (dev-0001" in again.stderr and "--rotate-tokens" in again.stderr
    assert not (tmp_path / "factory2" / "dev-0001.bin").exists()
    assert poll(server, "dev-0042", tokens["dev-0042"]) in (200, 404)
    rotated = cli("provision", "devices.csv", "--out", "factory", "--server-url", server.url, "--rotate-tokens", timeout=300)
    assert rotated.returncode == 0 and "100 with new tokens" in rotated.stdout, rotated.stderr
    new = nvs.read((out / "dev-0042.bin").read_bytes())["otaml"]["token"]
    assert new != tokens["dev-0042"]
    wait_for(lambda: poll(server, "dev-0042", tokens["dev-0042"]) == 401, what="the old token refused")
    assert poll(server, "dev-0042", new) in (200, 404)


def test_provision_refuses_bad_rows_before_enrolling_anyone(cli, server, tmp_path):
    for body, message in [
        ("device_id,colour\ndev-1,red\n", "expected a header with device_id"),
        ("device_id\ndev-1\ndev-1\n", "appears twice"),
        ("device_id\ndev 1\n", "device_id: expected a device id"),
        ("device_id,wifi_password\ndev-1,short\n", "8 to 64 bytes"),
        ("device_id,tags\ndev-1,Berlin\n", "tags: expected a tag"),
        ("device_id,server_url\ndev-1,ftp://x\n", "http(s) URL"),
    ]:
        (tmp_path / "bad.csv").write_text(body)
        r = cli("provision", "bad.csv", "--out", "o")
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, (body, r.stderr)
    assert device_count(server) == 0
    r = cli("provision", "--count", "1", "--partitions", str(tmp_path / "bad.csv"))
    assert r.returncode == 2 and "expected a data/nvs partition" in r.stderr


def device_count(server) -> int:
    with server.admin() as admin:
        return admin.get("/api/devices").json()["count"]


def test_port_flashes_one_device_with_esptool_and_dry_run_shows_the_command(cli, server, tmp_path):
    r = cli("provision", "--count", "1", "--prefix", "line-b-", "--out", "one", "--port", "/dev/ttyUSB7", "--dry-run",
            "--chip", "esp32c3")
    assert r.returncode == 0, r.stderr
    image = tmp_path / "one" / "line-b-0001.bin"
    assert r.stdout.strip().splitlines()[-1] == f"esptool --chip esp32c3 --port /dev/ttyUSB7 write-flash {NVS_OFFSET:#x} {image}"
    # Without --dry-run esptool itself runs: no such port here, so it fails, in one line.
    r = cli("provision", "--count", "1", "--prefix", "line-c-", "--out", "two", "--port", str(tmp_path / "no-such-tty"))
    assert r.returncode == 2 and "esptool could not flash line-c-0001.bin" in r.stderr and "Traceback" not in r.stderr
    r = cli("provision", "--count", "2", "--prefix", "line-d-", "--port", "/dev/ttyUSB0")
    assert r.returncode == 2 and "--port flashes one device" in r.stderr


def claim_token(cli, *args: str) -> str:
    r = cli("claim", "create", *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["token"]


def test_devices_claim_their_own_tokens_with_a_fleet_claim_token(cli, server, tmp_path, app, events):
    token = claim_token(cli, "line-1", "--max-uses", "2", "--tag", "factory:one")
    r = cli("provision", "--claim-token", token, "--out", "claim", "--server-url", server.url)
    assert r.returncode == 0, r.stderr
    image = tmp_path / "claim" / "fleet.bin"
    assert token not in r.stdout + r.stderr
    assert set(nvs.read(image.read_bytes())["otaml"]) == {"claim", "server_url"}  # one image for the whole line

    first, second, third = (NvsDevice(tmp_path, n, image, app) for n in ("a", "b", "c"))
    ids = []
    for dev in (first, second):
        log = dev.run(polls=2)
        assert "claimed otaml-" in log and "waiting for an operator" not in log, log
        ids.append(log.split("claimed ")[1].split()[0].rstrip(":"))
        stored = dev.nvs()
        assert stored["token"] and "claim" not in stored and "claim_new" not in stored  # no fleet secret left behind
    assert ids[0] != ids[1]  # each named after its own MAC
    for d in ids:
        state = device(server, d)
        assert state["status"] == "active" and state["tags"] == ["factory:one"]
    wait_for(lambda: all(device(server, d)["last_seen"] for d in ids), what="claimed devices checking in")

    log = third.run(polls=2)  # the claim token is used up
    assert "refused: HTTP 401" in log and "claimed" not in log, log
    assert "claim" in third.nvs()  # it keeps the claim token and asks again later

    # A device that lost the answer asks again with the same token: answered the same, not a second use.
    again = httpx.post(f"{server.url}/api/claim", headers={"Authorization": f"Bearer {token}"},
                       json={"device_id": ids[0], "token": first.nvs()["token"]})
    assert again.status_code == 201, again.text
    taken = httpx.post(f"{server.url}/api/claim", headers={"Authorization": f"Bearer {token}"},
                       json={"device_id": ids[0], "token": "x" * 32})
    assert taken.status_code == 409  # nobody takes over a claimed id


def test_claimed_devices_wait_as_pending_until_accepted(cli, server, tmp_path, app, devices):
    token = claim_token(cli, "line-2", "--approval")
    assert cli("provision", "--claim-token", token, "--out", "claim", "--server-url", server.url).returncode == 0
    dev = NvsDevice(tmp_path, "p", tmp_path / "claim" / "fleet.bin", app)
    devices.append(dev)
    dev.start()
    wait_for(lambda: "waits for an operator to accept it" in dev.log(), what="the device waiting for approval")
    device_id = dev.log().split("claimed ")[1].split(":")[0]
    assert device(server, device_id)["status"] == "pending" and device(server, device_id)["last_seen"] is None
    r = cli("devices", "--json")
    assert any(d["device_id"] == device_id and d["status"] == "pending" for d in json.loads(r.stdout)["data"])

    r = cli("device", "accept", device_id)
    assert r.returncode == 0 and "accepted (now active)" in r.stdout, r.stderr
    wait_for(lambda: device(server, device_id)["last_seen"], what="the accepted device checking in")
    assert cli("device", "accept", device_id).returncode == 2  # only a pending device can be accepted


def test_rotate_and_revoke_a_live_device(cli, server, tmp_path, app, devices):
    assert cli("provision", "--count", "1", "--prefix", "live-", "--out", "live", "--server-url", server.url).returncode == 0
    dev = NvsDevice(tmp_path, "live", tmp_path / "live" / "live-0001.bin", app)
    devices.append(dev)
    old = dev.nvs()["token"]
    dev.start()
    wait_for(lambda: device(server, "live-0001")["last_seen"], what="first check-in")

    r = cli("device", "rotate-token", "live-0001")
    assert r.returncode == 0 and "a new token waits for its next check-in" in r.stdout, r.stderr
    wait_for(lambda: dev.nvs().get("token") not in (None, old) and "token_nx" not in dev.nvs(), timeout=30,
             what="the device storing and using its rotated token")
    new = dev.nvs()["token"]
    wait_for(lambda: poll(server, "live-0001", old) == 401, what="the old token refused once the new one was used")
    assert poll(server, "live-0001", new) in (200, 404)
    assert "rotated device token in use" in dev.log()
    seen = device(server, "live-0001")["last_seen"]
    wait_for(lambda: device(server, "live-0001")["last_seen"] != seen, what="check-ins with the new token")

    r = cli("device", "revoke", "live-0001")
    assert r.returncode == 0 and "revoked" in r.stdout
    wait_for(lambda: "server refused device live-0001" in dev.log(), what="the device refused")
    assert poll(server, "live-0001", new) == 401 and device(server, "live-0001")["status"] == "revoked"
    assert cli("device", "rotate-token", "live-0001").returncode == 2  # a revoked device gets no new token

    r = cli("device", "remove", "live-0001", "--yes")
    assert r.returncode == 0
    with server.admin() as admin:
        assert admin.get("/api/devices/live-0001").status_code == 404


def test_a_rotated_token_survives_a_power_cut_before_it_was_used(cli, server, tmp_path, app):
    """The device stores the handed-over token before it uses it: cut the power right after the answer
    that carried it (the run ends after one poll), and the next boot checks in with the new token."""
    assert cli("provision", "--count", "1", "--prefix", "cut-", "--out", "cut", "--server-url", server.url).returncode == 0
    dev = NvsDevice(tmp_path, "cut", tmp_path / "cut" / "cut-0001.bin", app)
    old = dev.nvs()["token"]
    dev.run(polls=1)
    assert cli("device", "rotate-token", "cut-0001").returncode == 0
    time.sleep(1.0)  # the server processes' credential caches follow within OTAML_POLICY_TTL
    log = dev.run(polls=1)  # the answer hands the token over; the power goes before the next request
    stored = dev.nvs()
    assert stored["token"] == old and stored["token_nx"] != old, log
    assert poll(server, "cut-0001", old) in (200, 404)  # not used yet: the old one still works
    dev.run(polls=1)
    assert dev.nvs()["token"] == stored["token_nx"] and "token_nx" not in dev.nvs()
    wait_for(lambda: poll(server, "cut-0001", old) == 401, what="the old token retired")
