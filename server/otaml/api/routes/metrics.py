"""/metrics: Prometheus' text format (ops/metrics.py). Needs the admin token as a bearer token
(Prometheus: `authorization: {credentials: ...}`) unless OTAML_METRICS_PUBLIC=true."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from otaml.api.deps import ContextDep, require_admin
from otaml.ops import metrics

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics (text exposition format)", response_class=Response)
async def get_metrics(request: Request, ctx: ContextDep, authorization: Annotated[str | None, Header()] = None) -> Response:
    if not ctx.settings.metrics_public:
        require_admin(request, ctx, authorization)
    body = await run_in_threadpool(metrics.exposition, ctx)
    return Response(body, media_type=metrics.CONTENT_TYPE)
