"""Servers for tests, forked from a process that has already imported them.

Most of a test server's start was Python importing the server (about 3 s of CPU, more on a loaded
machine), and the suite starts a few hundred. A zygote imports what `release serve` imports once per
test process; each ``spawn`` forks it and the child runs the same console entry point
(``otaml.cli.main:main``) with the test's argv, environment and working directory, in a session of its
own, output to its log. From the command line on it is the production code path: granian, its forked
workers, the lifespan, signals. Only the exec of a fresh interpreter is skipped.

Nothing in the server reads the environment at import time (settings are read when the command
runs), which is what makes this equivalent; OTAML_TEST_NO_ZYGOTE=1 turns it off (plain subprocesses).

    python -m tests.utils.zygote   # the zygote itself: JSON lines in on stdin, out on stdout
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parents[2]


class ForkedProcess:
    """The part of subprocess.Popen that tests use, for a child of the zygote (only the zygote can
    reap it: poll and wait ask it)."""

    def __init__(self, zygote: Zygote, pid: int):
        self._zygote = zygote
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._zygote.status(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"server {self.pid}", timeout or 0)
            time.sleep(0.02)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Zygote:
    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.utils.zygote"], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
        )
        self._lock = threading.Lock()

    def _ask(self, request: dict) -> dict:
        with self._lock:
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.write(json.dumps(request).encode() + b"\n")
            self._proc.stdin.flush()
            line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the test server zygote exited with {self._proc.wait()}")
        return json.loads(line)

    def spawn(self, argv: list[str], env: dict[str, str], cwd: Path, stdout: Path, stderr: Path) -> ForkedProcess:
        request = {"op": "spawn", "argv": argv, "env": env, "cwd": str(cwd), "stdout": str(stdout), "stderr": str(stderr)}
        return ForkedProcess(self, self._ask(request)["pid"])

    def status(self, pid: int) -> int | None:
        return self._ask({"op": "status", "pid": pid})["code"]

    def alive(self) -> bool:
        return self._proc.poll() is None

    def close(self) -> None:
        """End of the test process: the zygote sees end of input and exits (servers are stopped by
        their tests)."""
        with self._lock:
            for pipe in (self._proc.stdin, self._proc.stdout):
                if pipe is not None:
                    pipe.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


_zygote: Zygote | None = None


def forked() -> bool:
    return not os.environ.get("OTAML_TEST_NO_ZYGOTE")


def spawn(argv: list[str], env: dict[str, str], cwd: Path, stdout: Path, stderr: Path | None = None) -> ForkedProcess | subprocess.Popen:
    """Start `release` with argv[1:] (argv[0] is the console script): forked from the zygote, or a plain
    subprocess when OTAML_TEST_NO_ZYGOTE is set. Its own session; stdout and stderr appended to files
    (stderr to stdout's file when None); stdin empty."""
    global _zygote
    if not forked():
        with open(stdout, "ab") as out, open(stderr or stdout, "ab") as errors:
            return subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=errors, cwd=cwd,
                                    start_new_session=True)
    if _zygote is None or not _zygote.alive():
        _zygote = Zygote()
        atexit.register(_zygote.close)
    return _zygote.spawn(argv, env, cwd, stdout, stderr or stdout)


def run(argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    """subprocess.run(argv, capture_output=True, text=True, timeout=timeout), forked from the zygote."""
    if not forked():
        return subprocess.run(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=False)
    with tempfile.TemporaryDirectory(prefix="otaml-cli-") as tmp:
        out, errors = Path(tmp) / "stdout", Path(tmp) / "stderr"
        proc = spawn(argv, env, cwd, out, errors)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise subprocess.TimeoutExpired(argv, timeout, out.read_text(errors="replace"), errors.read_text(errors="replace")) from None
        return subprocess.CompletedProcess(argv, code, out.read_text(errors="replace"), errors.read_text(errors="replace"))


# ---- the zygote ----

def _child(request: dict) -> int:
    """In the forked child: become the command; its exit code."""
    os.setsid()
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(out, fd)
        os.close(out)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = list(request["argv"])
    from otaml.cli.main import main

    try:
        main(sys.argv[1:])
    except SystemExit as e:
        if isinstance(e.code, int) or e.code is None:
            return e.code or 0
        print(e.code, file=sys.stderr)  # sys.exit("message"): printed, exit code 1
        return 1
    return 0


def _exit(request: dict) -> NoReturn:
    """Run the command and exit as the console script would: an uncaught error printed with exit code
    1, atexit handlers run, output flushed. The interpreter's teardown of the heap is skipped: that
    alone was 0.7 s of CPU per server stop, a few hundred times per run."""
    try:
        code = _child(request)
    except BaseException:  # noqa: BLE001 - printed like an uncaught error
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


def _serve() -> None:
    # Nothing imported may fix a terminal size from this process's environment (rich reads COLUMNS
    # when a console is created; each command has its own).
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)
    import otaml.api.main  # what `release serve` imports before it forks its workers
    import otaml.cli.main

    # The request channel on its own descriptors; 0 and 1 are what each child redirects.
    requests, replies = os.fdopen(os.dup(0), "rb"), os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    done: dict[int, int] = {}
    for line in requests:
        request = json.loads(line)
        if request["op"] == "spawn":
            pid = os.fork()
            if pid == 0:
                requests.close()
                replies.close()
                _exit(request)
            reply: dict = {"pid": pid}
        else:
            pid = request["pid"]
            if pid not in done:
                try:
                    reaped, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:  # not a child of this zygote: report it gone
                    reaped, status = pid, 255 << 8
                if reaped:
                    done[pid] = os.waitstatus_to_exitcode(status)
            reply = {"code": done.get(pid)}
        replies.write(json.dumps(reply).encode() + b"\n")
        replies.flush()


if __name__ == "__main__":
    _serve()
