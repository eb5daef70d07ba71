"""The FastAPI application: ``create_app(settings)``; ``build_asgi(settings)`` is what ``release serve`` runs
under granian (api/server.py): the device fast path in front of it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from fastapi import FastAPI
from granian.utils.proxies import wrap_asgi_with_proxy_headers
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlmodel import Session

from otaml import __version__
from otaml.api import errors
from otaml.api.context import ServerContext
from otaml.api.limits import BodyLimits
from otaml.api.poll_asgi import DeviceFastPath
from otaml.api.routes import (
    audit, binaries, channels, claims, config, devices, history, info, keys, manifests, metrics, releases, rollouts, webhooks,
)
from otaml.core.config import Settings
from otaml.dashboard import pages as dashboard_pages
from otaml.dashboard import routes as dashboard_routes
from otaml.core.db import init_db, make_engine
from otaml.models import Release
from otaml.ops import housekeeping, mqtt
from otaml.ops import metrics as ops_metrics
from otaml.ops import webhooks as ops_webhooks
from otaml.releases.publishing import rebuild_mirror
from otaml.rollouts.service import evaluate

log = logging.getLogger("otaml.server")


async def _flush_loop(ctx: ServerContext) -> None:
    while True:
        await asyncio.sleep(ctx.settings.checkin_flush_interval)
        try:
            await run_in_threadpool(ctx.checkins.flush, ctx.engine)
        except Exception:  # the database is unreachable: the batch was put back and is retried
            log.exception("check-in flush failed; retrying in %.1fs", ctx.settings.checkin_flush_interval)


def _final_flush(ctx: ServerContext, attempts: int = 3) -> None:
    """The shutdown flush: bad rows are dropped inside flush, so only an unreachable database can stop
    it; that gets a few retries, then what is left is reported and the stop goes on."""
    for attempt in range(attempts):
        try:
            written = ctx.checkins.flush(ctx.engine)
            log.info("flushed %d pending check-ins on shutdown", written)
            return
        except Exception:
            log.exception("shutdown flush failed (attempt %d of %d)", attempt + 1, attempts)
            time.sleep(0.5)
    log.error("lost %d check-ins at shutdown: the database could not be reached", ctx.checkins.pending())


async def _rollout_loop(ctx: ServerContext) -> None:
    def promoted(release: Release) -> None:
        with Session(ctx.engine) as session:
            rebuild_mirror(session, ctx.store, ctx.mirror)

    while True:
        await asyncio.sleep(ctx.settings.rollout_eval_interval)
        try:
            if await run_in_threadpool(evaluate, ctx.engine, promoted):
                ctx.policy.invalidate()
        except Exception:
            log.exception("rollout evaluation failed; retrying in %.1fs", ctx.settings.rollout_eval_interval)


async def _ops_loop(ctx: ServerContext) -> None:
    """Webhook deliveries and the metrics snapshot every second; pruning and expiry checks every
    housekeeping_interval."""
    s = ctx.settings
    last_housekeeping = 0.0
    while True:
        await asyncio.sleep(1.0 if s.housekeeping_interval >= 1.0 else s.housekeeping_interval)
        try:
            if time.monotonic() - last_housekeeping >= s.housekeeping_interval:
                last_housekeeping = time.monotonic()
                await run_in_threadpool(housekeeping.run, ctx.engine, s)
            await run_in_threadpool(ops_webhooks.deliver_due, ctx.engine, base_backoff=s.webhook_backoff,
                                    max_attempts=s.webhook_max_attempts, timeout=s.webhook_timeout)
            await run_in_threadpool(ops_metrics.snapshot, ctx)
        except Exception:
            log.exception("housekeeping failed; retrying")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings)
        init_db(engine, settings)
        ctx = ServerContext.create(settings, engine)
        with Session(engine) as session:
            rebuild_mirror(session, ctx.store, ctx.mirror)
        app.state.ctx = ctx
        ctx.checkins.on_written = mqtt.checkins_written  # ML deltas and device state, after each flush commits
        mqtt.start(settings)
        flusher = asyncio.create_task(_flush_loop(ctx))
        evaluator = asyncio.create_task(_rollout_loop(ctx))
        ops = asyncio.create_task(_ops_loop(ctx))
        log.info("otaml %s serving project %r at %s (data in %s)", __version__, settings.project, settings.base_url, settings.data_dir)
        try:
            yield
        finally:
            for task in (flusher, evaluator, ops):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            _final_flush(ctx)  # no answered check-in is lost to a clean stop
            await run_in_threadpool(mqtt.stop)  # what is queued goes out if the broker is there (bounded wait)
            engine.dispose()

    app = FastAPI(title="otaml release server", version=__version__, lifespan=lifespan, responses=errors.ERROR_RESPONSES)
    errors.install(app)

    for module in (manifests, binaries, releases, channels, devices, rollouts, config, info, claims, keys, history, audit,
                   webhooks, metrics):
        app.include_router(module.router)
    app.include_router(dashboard_routes.router)
    app.include_router(dashboard_pages.router)
    app.mount("/dashboard/static", StaticFiles(directory=dashboard_routes.STATIC_DIR), name="dashboard-static")

    @app.get("/", include_in_schema=False)
    def _root() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    app.add_middleware(BodyLimits, settings=settings)  # before routing, authentication and parsing
    return app


def build_asgi(settings: Settings | None = None):  # type: ignore[no-untyped-def]
    """What the HTTP server runs: device traffic answered before the framework (api/poll_asgi.py), the
    rest by the FastAPI app, whose client address comes from X-Forwarded-For when the peer is a trusted
    proxy (OTAML_FORWARDED_ALLOW_IPS)."""
    settings = settings or Settings()
    app = create_app(settings)
    return DeviceFastPath(wrap_asgi_with_proxy_headers(app, settings.forwarded_allow_ips), app)
