"""The otaml MicroPython package on the real MicroPython (the WebAssembly build from npm, under Node):
scripts run in it, and host devices that update against the real server with otaml-sim's flash layout."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.utils.processes import ROOT
from tests.utils.sim import SIM_PLAIN

MPY = ROOT / "firmware" / "micropython"
HOST = MPY / "host"
RUNNER = HOST / "otaml-mpy.mjs"
NODE = shutil.which("node") or "/usr/bin/node"


def check_runtime() -> None:
    """The interpreter is installed by scripts/setup (npm ci in firmware/micropython/host)."""
    wasm = HOST / "node_modules" / "@micropython" / "micropython-webassembly-pyscript" / "micropython.wasm"
    assert wasm.is_file(), f"{wasm} is missing: scripts/setup installs it (npm ci --prefix {HOST})"


def run_script(script: str, *args: str, timeout: float = 300) -> str:
    """Run MicroPython source with the otaml package importable (otaml_hostjs: argv, read_file, root).
    Returns stdout; fails the test with MicroPython's traceback when the script raises."""
    path = Path(subprocess.run(["mktemp", "--suffix=.py"], capture_output=True, text=True, check=True).stdout.strip())
    try:
        path.write_text(script)
        r = subprocess.run([NODE, str(RUNNER), "exec", str(path), *args], capture_output=True, text=True, timeout=timeout)
    finally:
        path.unlink(missing_ok=True)
    assert r.returncode == 0, f"MicroPython exited {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    return r.stdout


@dataclass
class MpyDevice:
    """A MicroPython device on the host: the otaml package in the WebAssembly MicroPython, a flash file."""

    flash: Path
    server: str
    device_id: str
    token: str
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    def flash_image(self, image: Path) -> str:
        """Like a first USB flash: otaml-sim writes the same partition table and image into the file."""
        r = subprocess.run([str(SIM_PLAIN), "--flash", str(self.flash), "flash", str(image)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr + r.stdout
        return r.stdout

    def args(self, polls: int, interval_ms: int, *extra: str) -> list[str]:
        return [NODE, str(RUNNER), "--flash", str(self.flash), "run", "--server", self.server, "--device-id",
                self.device_id, "--token", self.token, "--polls", str(polls), "--interval-ms", str(interval_ms),
                *self.extra, *extra]

    def run(self, polls: int = 3, interval_ms: int = 100, *extra: str, timeout: float = 180) -> str:
        """Run to completion (a reboot is a new process with a new interpreter on the same flash, in the
        same process group). Returns the device log."""
        proc = subprocess.Popen(self.args(polls, interval_ms, *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise AssertionError(f"the MicroPython device ran past {timeout} s\n{stdout[-6000:]}\n{stderr[-4000:]}") from None
        assert proc.returncode == 0, f"the MicroPython device exited {proc.returncode}\n{stdout[-6000:]}\n{stderr[-4000:]}"
        assert "Traceback" not in stdout + stderr, stdout + stderr
        return stdout

    def start(self, polls: int = 0, interval_ms: int = 200, *extra: str) -> None:
        self.log_path = self.flash.with_suffix(".log")
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(self.args(polls, interval_ms, *extra), stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def kill(self) -> None:
        """Pull the plug: SIGKILL to the whole process group (the boot running now, whichever reset it
        came from), like a power loss."""
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

    def booted_version(self) -> str:
        info = self.info()
        return next(s["version"] for s in info["slots"] if s["label"] == info["boot_slot"])
