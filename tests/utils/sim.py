"""otaml-sim, the host build of the firmware, driven as a device: flash it, run it, read its flash."""

from __future__ import annotations

import json
import os
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
    """Build (or bring up to date) the host firmware; cheap when nothing changed."""
    subprocess.run([str(ROOT / "scripts" / "build-host")], check=True, capture_output=True, timeout=600)


@dataclass
class SimDevice:
    flash: Path
    server: str
    device_id: str
    token: str
    binary: Path = SIM
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    extra: list[str] = field(default_factory=list)

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        # LeakSanitizer runs at exit of every (re-executed) process; a leak fails the run.
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=23")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        return env

    def flash_image(self, image: Path) -> str:
        r = subprocess.run([str(self.binary), "--flash", str(self.flash), "flash", str(image)],
                           capture_output=True, text=True, env=self._env(), timeout=60)
        assert r.returncode == 0, r.stderr + r.stdout
        return r.stdout

    def args(self, polls: int, interval_ms: int, *extra: str) -> list[str]:
        return [str(self.binary), "--flash", str(self.flash), "run", "--server", self.server,
                "--device-id", self.device_id, "--token", self.token, "--polls", str(polls),
                "--interval-ms", str(interval_ms), *self.extra, *extra]

    def run(self, polls: int = 3, interval_ms: int = 100, *extra: str, timeout: float = 120) -> str:
        """Run to completion (reboots re-execute the same process). Returns the device log."""
        r = subprocess.run(self.args(polls, interval_ms, *extra), capture_output=True, text=True,
                           env=self._env(), timeout=timeout)
        assert r.returncode == 0, f"otaml-sim exited {r.returncode}\n{r.stdout}\n{r.stderr}"
        assert "ERROR: " not in r.stderr, r.stderr  # sanitizer reports
        return r.stdout

    def start(self, polls: int = 0, interval_ms: int = 200, *extra: str) -> None:
        self.log_path = self.flash.with_suffix(".log")
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(self.args(polls, interval_ms, *extra), stdout=log, stderr=subprocess.STDOUT,
                                     env=self._env())

    def kill(self) -> None:
        """Pull the plug: SIGKILL, no cleanup, like a power loss."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def info(self) -> dict:
        r = subprocess.run([str(SIM_PLAIN), "--flash", str(self.flash), "info"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def read_partition(self, label: str) -> bytes:
        """The raw bytes of a partition in the flash file (the emulated 4 MB SPI flash)."""
        offset, size = partition(label)
        with open(self.flash, "rb") as f:
            f.seek(offset)
            return f.read(size)

    def booted_version(self) -> str:
        info = self.info()
        return next(s["version"] for s in info["slots"] if s["label"] == info["boot_slot"])
