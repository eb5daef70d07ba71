"""The otaml MicroPython package on the real MicroPython (the WebAssembly build from npm, under Node):
scripts run in it, and host devices that update against the real server with otaml-sim's flash layout."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.utils.processes import ROOT
from tests.utils.sim import FlashDevice

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
class MpyDevice(FlashDevice):
    """A MicroPython device on the host: the otaml package in the WebAssembly MicroPython (a reset is a
    new Node process with a new interpreter, in the same process group), on otaml-sim's flash file."""

    def command(self, polls: int, interval_ms: int, *extra: str) -> list[str]:
        return [NODE, str(RUNNER), "--flash", str(self.flash), "run", "--server", self.server, "--device-id",
                self.device_id, "--token", self.token, "--polls", str(polls), "--interval-ms", str(interval_ms), *extra]

    def check_output(self, stdout: str, stderr: str) -> None:
        assert "Traceback" not in stdout + stderr, stdout + stderr
