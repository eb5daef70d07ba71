"""`release serve`: the application under granian, a Rust HTTP server (ASGI interface), one process per
worker sharing the port. SIGTERM or SIGINT stops each worker gracefully: it finishes its requests and runs
the lifespan shutdown, which writes the pending check-ins."""

from __future__ import annotations

import os

from otaml.core.config import Settings

# Seconds a worker may take to stop (its final check-in flush retries an unreachable database) before
# it is killed.
STOP_TIMEOUT = 15


def worker_app():  # type: ignore[no-untyped-def]
    """Called in each worker process: settings from the environment ``run`` prepared."""
    from otaml.api.main import build_asgi

    return build_asgi(Settings())


def run(settings: Settings, workers: int, log_level: str) -> None:
    from granian.constants import Interfaces
    from granian.log import LogLevels
    from granian.server import Server

    # Imported once here: the workers are forked from this process and start with the modules loaded
    # (each builds its own app, engine and caches in worker_app).
    import otaml.api.main  # noqa: F401

    # Worker processes build their own app from the environment: hand the command-line values over.
    os.environ.update(OTAML_HOST=settings.host, OTAML_PORT=str(settings.port), OTAML_DATA_DIR=str(settings.data_dir))
    Server(
        "otaml.api.server:worker_app", factory=True, address=settings.host, port=settings.port,
        interface=Interfaces.ASGI, workers=workers, log_level=LogLevels(log_level), backlog=2048,
        workers_kill_timeout=STOP_TIMEOUT,
    ).serve()
