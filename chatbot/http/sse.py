"""How the HTTP API renders a reply's events: server-sent events (the tutorial's plain ``data:`` text, or
typed JSON with ``?format=json``) and the JSON events the WebSocket sends.

The wire encoding is FastAPI's own (:func:`fastapi.sse.format_sse_event`: the same bytes as the hand-written
encoder it replaces). :class:`EventStream` is FastAPI's :class:`~fastapi.sse.EventSourceResponse` for a
reply. FastAPI's generator path operations (``response_class=EventSourceResponse`` with ``yield``) do not fit
the stream route: the route answers a refused request with a JSON 4xx and names the conversation in a
header, both before the body starts, and their producer task and ``: ping`` keep-alive would change the
wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Coroutine
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from fastapi.sse import EventSourceResponse, format_sse_event
from starlette.types import Receive, Scope, Send

from chatbot.core.error_kinds import KINDS
from chatbot.core.errors import failure_text
from chatbot.core.events import ErrorEvent, Event, Idle, ReasoningDelta, TextDelta, Usage

if TYPE_CHECKING:
    from starlette.requests import Request

    from chatbot.http.service import Reply

#: An SSE comment is sent after this many seconds without an event, so proxies keep the stream open.
KEEPALIVE_SECONDS = 15.0
KEEPALIVE = b": keep-alive\n\n"
PLAIN_DONE = b"data: [DONE]\n\n"


def sse_data(text: str) -> bytes:
    """One SSE event carrying ``text``: a ``data:`` line per line (SSE treats CR, LF and CRLF alike as
    line ends, so each becomes a line break the client joins back with LF)."""
    return format_sse_event(data_str=text)


def sse_json(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cost": usage.cost,
        "cost_source": usage.cost_source,
    }


def error_text(event: ErrorEvent) -> str:
    """The wording the UI shows for a failed reply (without its emoji), in English."""
    return failure_text(event.error, event.partial)


def iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def code_of(kind: str) -> str:
    """The API's stable code for an error kind (advice fitted to a reader keeps its kind's code)."""
    return KINDS[kind].code if kind in KINDS else kind


def json_event(event: Event, reply: Reply | None = None) -> dict[str, Any] | None:
    """The ``?format=json`` / WebSocket shape of one core event (None: nothing to send)."""
    if isinstance(event, TextDelta):
        return {"type": "delta", "text": event.text}
    if isinstance(event, ReasoningDelta):
        return {"type": "reasoning", "text": event.text}
    if isinstance(event, Usage):
        return {"type": "usage", **usage_json(event)}
    if isinstance(event, ErrorEvent):
        return {
            "type": "error", "code": code_of(event.error.kind), "message": error_text(event),
            "retry_after": event.error.retry_after, "partial": event.partial,
        }
    return None


def done_event(reply: Reply, stopped: bool = False) -> dict[str, Any]:
    state = reply.state
    out: dict[str, Any] = {
        "type": "done",
        "conversation_id": reply.turn.conversation_id,
        "model": reply.turn.model,
        "finish_reason": state.finish_reason,
        "interrupted": stopped or not state.complete,
        "history_trimmed_turns": state.trimmed,
    }
    out["saved"] = reply.stored == "stored"
    if stopped:
        out["stopped"] = True
    return out


async def sse_stream(reply: Reply, structured: bool) -> AsyncGenerator[bytes, None]:
    """The body of ``POST /chat/stream``."""
    loop = asyncio.get_running_loop()
    last = loop.time()
    async with contextlib.aclosing(reply.events()) as events:
        async for event in events:
            now = loop.time()
            if isinstance(event, Idle):
                if now - last >= KEEPALIVE_SECONDS:
                    last = now
                    yield KEEPALIVE
                continue
            chunk = sse_chunk(event, structured)
            if chunk:
                last = now
                yield chunk
    unsaved = reply.not_saved()
    if unsaved is not None:
        yield sse_chunk(unsaved, structured) or b""
    yield sse_json(done_event(reply)) if structured else PLAIN_DONE


def sse_chunk(event: Event, structured: bool) -> bytes | None:
    if structured:
        payload = json_event(event)
        return sse_json(payload) if payload else None
    if isinstance(event, TextDelta):
        return sse_data(event.text)
    if isinstance(event, ErrorEvent):
        return sse_data(f"[ERROR] {error_text(event)}")
    return None


async def until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def while_connected(request: Request, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Run ``work`` to its end, or until the client leaves (which cancels it); its task, done either way
    (cancelled when the client left first)."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(until_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for running in (task, gone):
            running.cancel()
        await asyncio.gather(task, gone, return_exceptions=True)
    return task


class EventStream(EventSourceResponse):
    """A reply's server-sent events that always closes its body (Starlette leaves a body that was cancelled
    between two chunks suspended, which would keep the upstream open until garbage collection) and stores
    the reply even when the client left before the body started."""

    def __init__(self, reply: Reply, structured: bool, headers: dict[str, str]) -> None:
        self._events = sse_stream(reply, structured)
        super().__init__(self._events, headers=headers)
        self.reply = reply

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await self._events.aclose()
            finally:
                await self.reply.save()  # once: a no-op when the reply's end was already stored
