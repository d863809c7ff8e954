"""``GET /healthz``: whether this process can serve, for a load balancer's or a container's health check.

It answers 200 ``{"status": "ok"}`` when the conversation store answers a read (SQLite or Redis) within
:data:`CHECK_TIMEOUT_S`, else 503 ``{"status": "unavailable"}``. The body says nothing more (no address,
no reason, no setting): the route is outside the login and the API tokens, so that a balancer can call it.
Why the store failed goes to the log, once each time the answer changes. Only the public
:class:`~chatbot.core.store.Store` protocol is used: the probe reads a conversation id that no conversation
has, under an owner no caller can have.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from chatbot.core.store import Store

log = logging.getLogger("switchboard.health")

#: The longest a check waits for the store (a balancer's own check timeout should be longer).
CHECK_TIMEOUT_S = 3.0
#: What the probe reads: a well-formed id under an owner that no token or login hashes to.
PROBE_ID = "0" * 32
PROBE_OWNER = "switchboard:healthz"


class Health:
    """The store check, remembering the last answer so that only changes are logged."""

    def __init__(self, store: Store, timeout: float = CHECK_TIMEOUT_S) -> None:
        self.store = store
        self.timeout = timeout
        self.healthy: bool | None = None

    async def check(self) -> bool:
        """True when the store answered a read in time."""
        try:
            await asyncio.wait_for(self.store.get(PROBE_ID, PROBE_OWNER), self.timeout)
            healthy, reason = True, ""
        except Exception as exc:  # any failure of the store is "unavailable", never a traceback here
            healthy, reason = False, str(exc) if not isinstance(exc, TimeoutError) else "no answer in time"
        if healthy != self.healthy:
            if healthy:
                log.info("health: the conversation store answers again")
            else:
                log.warning("health: the conversation store does not answer (%s)", reason)
        self.healthy = healthy
        return healthy


def health_router(store: Store) -> APIRouter:
    """A router with ``GET``/``HEAD /healthz`` checking ``store`` (include it before Gradio is mounted)."""
    health = Health(store)
    router = APIRouter()

    # ``security: []`` marks the route open: the API's gate passes it (a balancer's check has no token)
    @router.api_route("/healthz", methods=["GET", "HEAD"], include_in_schema=False, openapi_extra={"security": []})
    async def healthz() -> JSONResponse:
        if await health.check():
            return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})
        return JSONResponse({"status": "unavailable"}, status_code=503, headers={"Cache-Control": "no-store"})

    return router
