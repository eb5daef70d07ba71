"""otaml-sim, the host build of the firmware, driven as a device: flash it, run it, read its flash."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.utils.processes import ROOT

BUILD = ROOT / "build" / "host"
PARTITIONS_CSV = ROOT / "firmware" / "partitions.csv"


def partition(label: str) -> tuple[int, int]:
    """(offset, size) of a partition in firmware/partitions.csv, the table otaml-sim flashes."""
    for line in PARTITIONS_CSV.read_text().splitlines():
        cols = [c.strip() for c in line.split("#")[0].split(",")]
        if cols[0] == label:
            return int(cols[3], 0), int(cols[4], 0)
    raise KeyError(f"no partition {label!r} in {PARTITIONS_CSV}")
SIM = BUILD / "otaml-sim"
SIM_PLAIN = BUILD / "otaml-sim-plain"


def build_host() -> None:
    """Build (or bring up to date) the host firmware; cheap when nothing changed. Under pytest-xdist
    every worker asks: a lock file makes them build one at a time (the others find it up to date)."""
    BUILD.mkdir(parents=True, exist_ok=True)
    with open(BUILD.parent / "host-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        subprocess.run([str(ROOT / "scripts" / "build-host")], check=True, capture_output=True, timeout=600)


@dataclass
class FlashDevice:
    """A device on the host that updates against the real server: a flash file in otaml-sim's layout
    (the emulated 4 MB SPI flash) and the program that runs on it. Subclasses say what runs (the C
    firmware's otaml-sim, the MicroPython client); flashing and reading the flash are otaml-sim's."""

    flash: Path
    server: str
    device_id: str
    token: str
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    extra: list[str] = field(default_factory=list)

    def command(self, polls: int, interval_ms: int, *extra: str) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def check_output(self, stdout: str, stderr: str) -> None:
        """A finished run's output, beyond its exit status (e.g. sanitizer reports)."""

    @property
    def flasher(self) -> Path:
        return SIM_PLAIN

    def flash_image(self, image: Path) -> str:
        """Like a first USB flash: the partition table and the image, into the flash file."""
        r = subprocess.run([str(self.flasher), "--flash", str(self.flash), "flash", str(image)],
                           capture_output=True, text=True, env=self.env(), timeout=60)
        assert r.returncode == 0, r.stderr + r.stdout
        return r.stdout

    def args(self, polls: int, interval_ms: int, *extra: str) -> list[str]:
        return self.command(polls, interval_ms, *self.extra, *extra)

    def run(self, polls: int = 3, interval_ms: int = 100, *extra: str, timeout: float = 180) -> str:
        """Run to completion (reboots included: every boot runs in the same process group). Returns the
        device log."""
        proc = subprocess.Popen(self.args(polls, interval_ms, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=self.env(), start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise AssertionError(f"{self.device_id} ran past {timeout} s\n{stdout[-6000:]}\n{stderr[-4000:]}") from None
        assert proc.returncode == 0, f"{self.device_id} exited {proc.returncode}\n{stdout[-6000:]}\n{stderr[-4000:]}"
        self.check_output(stdout, stderr)
        return stdout

    def start(self, polls: int = 0, interval_ms: int = 200, *extra: str) -> None:
        self.log_path = self.flash.with_suffix(".log")
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(self.args(polls, interval_ms, *extra), stdout=log, stderr=subprocess.STDOUT,
                                     env=self.env(), start_new_session=True)

    def kill(self) -> None:
        """Pull the plug: SIGKILL to the process group (whichever boot runs now), no cleanup, like a
        power loss."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def info(self) -> dict:
        """Boot slot, slot states and the store, read from the flash file by otaml-sim."""
        r = subprocess.run([str(SIM_PLAIN), "--flash", str(self.flash), "info"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def read_partition(self, label: str) -> bytes:
        """The raw bytes of a partition in the flash file."""
        offset, size = partition(label)
        with open(self.flash, "rb") as f:
            f.seek(offset)
            return f.read(size)

    def booted_version(self) -> str:
        info = self.info()
        return next(s["version"] for s in info["slots"] if s["label"] == info["boot_slot"])


@dataclass
class SimDevice(FlashDevice):
    """The C firmware: otaml-sim (a reboot re-executes the same process)."""

    binary: Path = SIM

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        # LeakSanitizer runs at exit of every (re-executed) process; a leak fails the run.
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=23")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        return env

    @property
    def flasher(self) -> Path:
        return self.binary

    def command(self, polls: int, interval_ms: int, *extra: str) -> list[str]:
        return [str(self.binary), "--flash", str(self.flash), "run", "--server", self.server,
                "--device-id", self.device_id, "--token", self.token, "--polls", str(polls),
                "--interval-ms", str(interval_ms), *extra]

    def check_output(self, stdout: str, stderr: str) -> None:
        assert "ERROR: " not in stderr, stderr  # sanitizer reports
