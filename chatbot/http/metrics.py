"""``GET /metrics``: the app's :class:`chatbot.core.metrics.Metrics` in Prometheus' text format. It is one of
the API's routes, so the API's gate guards it (a token on a public bind; open on loopback without tokens)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from chatbot.core.metrics import Metrics


def metrics_router(metrics: Metrics, openapi_extra: dict[str, Any] | None = None) -> APIRouter:
    router = APIRouter()

    @router.get(
        "/metrics", tags=["operations"], summary="Prometheus metrics of this process",
        response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}}, openapi_extra=openapi_extra,
    )
    async def scrape() -> Response:
        return Response(metrics.text(), media_type=CONTENT_TYPE_LATEST)

    return router
