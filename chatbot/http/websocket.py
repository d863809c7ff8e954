"""``WS /chat/ws``: send ``{"message", "model", "conversation_id"}`` as a text frame, receive
``{"type": "start", "conversation_id", "model"}``, then the same JSON events as ``POST /chat/stream?format=json``
ending with ``done``; ``{"type": "stop"}`` stops the reply (its ``done`` says ``"stopped": true``). A request
that cannot start gets ``{"type": "error", "status", "code", "message"}`` and the socket stays open. Who may
connect: :class:`chatbot.http.gate.Gate`, and only from this site's own pages (no CORS for WebSockets)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from fastapi import WebSocket
from pydantic import ValidationError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from chatbot.core.limits import Visitor
from chatbot.http.gate import Gate
from chatbot.http.problems import ApiError, validation_error
from chatbot.http.schemas import ChatRequest
from chatbot.http.service import ChatService, Reply
from chatbot.http.sse import done_event, json_event

T = TypeVar("T")
#: What :meth:`WebSocketChat._parsed` gives for a message it refused (JSON has no such value).
REFUSED: Any = object()

log = logging.getLogger("switchboard.api")


class WebSocketChat:
    """One WebSocket connection: requests in, JSON events out, ``{"type": "stop"}`` stops the reply."""

    def __init__(self, service: ChatService, gate: Gate, websocket: WebSocket) -> None:
        self.service = service
        self.gate = gate
        self.ws = websocket
        self._send_lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._reply: Reply | None = None
        self._stopping = False

    async def run(self) -> None:
        try:
            origin = self.ws.headers.get("origin")
            host = self.ws.headers.get("host", "").lower()
            if origin is not None and urlsplit(origin).netloc.lower() != host:
                # Browsers let any page open a WebSocket to localhost (no CORS): refuse other pages.
                raise ApiError.of("cross_origin", "WebSocket connections from other web pages are refused.")
            peer = self.ws.client.host if self.ws.client else None
            caller = self.gate.caller(self.ws.headers, peer)
        except ApiError as exc:
            await self._deny(exc)
            return
        owner = caller.owner
        visitor = self.service.visitor(owner, peer, self.ws.headers, caller.user)
        await self.ws.accept()
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                raw = message.get("text")
                if raw is None:
                    raw = (message.get("bytes") or b"").decode("utf-8", "replace")
                await self._handle(owner, visitor, raw)
        except WebSocketDisconnect:
            pass
        finally:
            await self._cancel("disconnected")

    async def _deny(self, exc: ApiError) -> None:
        if "websocket.http.response" in self.ws.scope.get("extensions", {}):
            await self.ws.send_denial_response(exc.response())
        else:  # pragma: no cover - servers without the denial extension
            await self.ws.close(code=1008, reason=exc.message[:120])

    async def _send(self, payload: dict[str, Any]) -> None:
        async with self._send_lock:
            if self.ws.application_state == WebSocketState.CONNECTED:
                await self.ws.send_text(json.dumps(payload, ensure_ascii=False))

    async def _error(self, exc: ApiError) -> None:
        await self._send({"type": "error", "status": exc.status, **exc.body()["error"]})

    async def _parsed(self, raw: str) -> Any:
        """The message's JSON, or REFUSED once the client was told why not (too large, not JSON)."""
        if len(raw) > self.service.settings.max_body_bytes:
            await self._error(ApiError.of("body_too_large", "The message is larger than CHATBOT_MAX_BODY_BYTES."))
            return REFUSED
        try:
            return json.loads(raw)
        except ValueError as exc:
            await self._error(ApiError.of("invalid_json", f"Not valid JSON ({type(exc).__name__})."))
            return REFUSED

    async def _handle(self, owner: str, visitor: Visitor, raw: str) -> None:
        if (data := await self._parsed(raw)) is REFUSED:
            return
        if isinstance(data, dict) and data.get("type") == "stop":
            await self._cancel("stopped")
            return
        if self._task is not None and not self._task.done():
            await self._error(ApiError.of(
                "busy",
                'A reply is still streaming on this socket: wait for "done" or send {"type": "stop"}.',
            ))
            return
        reply = await self._began(lambda: self.service.begin(owner, ChatRequest.model_validate(data), visitor))
        if reply is None:
            return
        self._reply = reply
        self._stopping = False
        self._task = asyncio.create_task(self._stream(reply))

    async def _began(self, begin: Callable[[], Awaitable[T]]) -> T | None:
        """What ``begin()`` started, or None once its refusal (a bad request, a limit) was sent to the client."""
        try:
            return await begin()
        except ValidationError as exc:
            await self._error(validation_error(exc, "application/json"))
        except ApiError as exc:
            await self._error(exc)
        return None

    async def _stream(self, reply: Reply) -> None:
        turn = reply.turn
        await self._send({"type": "start", "conversation_id": turn.conversation_id, "model": turn.model})
        try:
            async with contextlib.aclosing(reply.events()) as events:
                async for event in events:
                    payload = json_event(event, reply)
                    if payload is not None:
                        await self._send(payload)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            await self._send(done_event(reply, stopped=True))
            return
        except (WebSocketDisconnect, OSError) as exc:  # the socket went away: the reply is stored regardless
            log.info("websocket closed mid-reply: %r", exc)
            return
        except Exception:  # a bug: the reply is stored regardless, the operator gets the traceback
            log.exception("websocket reply failed")
            return
        unsaved = reply.not_saved()
        if unsaved is not None:
            await self._send(json_event(unsaved, reply) or {})
        await self._send(done_event(reply))

    async def _cancel(self, reason: str) -> None:
        task, reply = self._task, self._reply
        if task is None or task.done() or reply is None:
            return
        reply.cancel_reason = reason
        self._stopping = reason == "stopped"
        task.cancel()
        await asyncio.wait({task})
