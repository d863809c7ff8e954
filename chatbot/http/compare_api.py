"""``POST /compare/stream``: one message, several models (:mod:`chatbot.core.compare`), over the HTTP API.

Server-sent events, each ``data: {"type", "column", "model", ...}``: ``start`` (the conversation and the
columns), then per column the JSON events of ``POST /chat/stream?format=json`` (``delta``, ``reasoning``,
``usage``, ``error``) tagged with its ``column`` and ``model``, a column's ``stats`` live while it streams
(paced: :func:`batch_events`) and when it ends (and ``stopped`` when it was stopped), one ``summary``, and
``done`` last. With ``?format=json`` the answer is one JSON object (:class:`CompareReply`: each column's stats
as it ended; a single answer has nothing to show live). A client that leaves stops every column (each closes
its upstream connection). Refusals are the API's usual 4xx before the body starts: the whole compare is admitted or none
of it (every column counts as a message and reserves a whole reply).

Storage: a compared turn is stored as one user/assistant pair per column, each with its model, so every
reader of ``GET /conversations/{id}`` takes it as it is. A later compare reads such a run back as one
compared turn: each column continues with its own model's reply (:mod:`chatbot.core.compared_turns`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator
from typing import Any, Literal

from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.sse import EventSourceResponse
from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictStr
from starlette.types import Receive, Scope, Send

from chatbot.core.compare import Batch, Column, ColumnEvent, ColumnStats, Comparison, Stopped, Summary, compare
from chatbot.core.events import Done, ErrorEvent
from chatbot.core.history import History
from chatbot.core.limits import Visitor
from chatbot.core.reply import ReplyState
from chatbot.core.store import StoreError, Turn
from chatbot.http.problems import ApiError, printable, store_down
from chatbot.http.schemas import CHAT_ERROR_RESPONSES, ChatRequest, ErrorDetail, ErrorOut, UsageOut
from chatbot.http.service import ChatService
from chatbot.http.sse import (
    KEEPALIVE,
    KEEPALIVE_SECONDS,
    error_text,
    json_event,
    sse_json,
    usage_json,
    while_connected,
)

log = logging.getLogger("switchboard.api")

COMPARE_EXAMPLE: dict[str, JsonValue] = {"message": "Explain recursion in one sentence.", "models": ["fast", "smart"]}


class CompareRequest(BaseModel):
    """A message to send to several models at once. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [COMPARE_EXAMPLE]})

    message: StrictStr = Field(description="The text to send: not empty, not longer than the server accepts.")
    models: list[StrictStr] = Field(
        min_length=2, max_length=8,
        description="2 to CHATBOT_COMPARE_MAX_COLUMNS different model aliases or ids from GET /models.",
    )
    conversation_id: StrictStr | None = Field(
        None, description="Continue this conversation (its stored turns are the context); leave out to start one."
    )


class StatsOut(BaseModel):
    first_token_seconds: float | None = Field(description="Seconds from the request to the first token.")
    tokens_per_second: float | None
    tokens_in: int | None
    tokens_out: int = Field(description="The provider's count, or the streamed text counted when it sent none.")
    cost: float | None = Field(description="USD, when known.")
    cut_by_length: bool


class StatsEvent(StatsOut):
    """A column's figures so far: sent live while it streams (``ended`` false: at most one per column per
    update, about every 40 ms while it changes), and once more when it ends (``ended`` true)."""

    type: Literal["stats"]
    column: int
    model: str
    ended: bool


class ColumnOut(BaseModel):
    column: int
    model: str = Field(description="The model id that answered.")
    reply: str
    reasoning: str | None = None
    finish_reason: str | None = None
    stopped: bool = False
    error: ErrorDetail | None = None
    usage: UsageOut | None = None
    stats: StatsOut


class SummaryOut(BaseModel):
    fastest_first_token: str | None
    fastest_stream: str | None
    cheapest: str | None
    cut_by_length: list[str]


class CompareReply(BaseModel):
    conversation_id: str
    columns: list[ColumnOut]
    summary: SummaryOut | None
    saved: bool = Field(True, description="False when the server could not store every column (it retries).")


class CompareRun:
    """One compare over the API: its :class:`Comparison`, and a stored turn per column."""

    def __init__(self, service: ChatService, comparison: Comparison, turns: list[Turn]) -> None:
        self.service = service
        self.comparison = comparison
        self.turns = turns
        self.stored: list[str | None] = [None] * len(turns)
        for column, turn in zip(comparison.columns, turns, strict=True):
            progress = service.checkpoints.track(turn, column.state.text)
            column.state.on_end(functools.partial(self._store, column, turn, progress))

    @property
    def conversation_id(self) -> str:
        return self.turns[0].conversation_id

    async def _store(self, column: Column, turn: Turn, progress: Any, state: ReplyState) -> None:
        self.service.checkpoints.untrack(progress)
        reason = None if state.complete else "stopped" if column.stopped else "disconnected"
        if state.error is not None:
            reason = state.error.error.kind
        write = self.service.checkpoints.finish(
            turn, state.reply, "complete" if state.complete else "interrupted", error=reason,
            finish_reason=state.finish_reason, usage=usage_json(state.usage) if state.usage else None,
        )
        self.stored[column.index] = await self.service.background(write)


async def begin_compare(service: ChatService, owner: str, body: CompareRequest, visitor: Visitor) -> CompareRun:
    """Validate, admit every column (all or none), store the message once per column, and return the run."""
    upstream = service.upstream
    message, _, _ = service.check(_as_chat(body))
    if service.closing:
        raise ApiError.of("shutting_down")
    comparison = compare(upstream, message, [], list(body.models), visitor=visitor)
    refused = await comparison.admit()
    if refused is not None:
        upstream.metrics.refused(refused.kind)
        raise ApiError.of(refused.kind, refused.text, retry_after=refused.retry_after)
    turns: list[Turn] = []
    try:
        cid, limit = body.conversation_id, service.settings.max_history_messages
        for column in comparison.columns:
            found = await service.store.begin_turn(cid, owner, message, column.model, limit)
            if found is None:
                raise ApiError.of(
                    "unknown_conversation",
                    f"There is no conversation “{printable(cid, 40)}” for this token. Leave out conversation_id "
                    "to start one.",
                )
            turns.append(found)
            cid = found.conversation_id
    except BaseException as exc:
        await comparison.release()
        for turn in turns:  # the columns already stored never start
            await service.checkpoints.finish(turn, "", "interrupted", error="not_started")
        if isinstance(exc, StoreError):
            upstream.metrics.store_error()
            raise store_down("stored", exc) from None
        raise
    comparison.history = History.of(await service.context(owner, turns[0]), service.settings)
    return CompareRun(service, comparison, turns)


def _as_chat(body: CompareRequest) -> ChatRequest:
    return ChatRequest(message=body.message, model=body.models[0], conversation_id=None, system=None,
                       temperature=None, max_tokens=None)


# ------------------------------------------------------------------------------------------ the wire


def stats_json(stats: ColumnStats) -> dict[str, Any]:
    return {
        "first_token_seconds": stats.first_token, "tokens_per_second": stats.tokens_per_second,
        "tokens_in": stats.tokens_in, "tokens_out": stats.tokens_out, "cost": stats.cost,
        "cut_by_length": stats.cut_by_length,
    }


def summary_json(summary: Summary) -> dict[str, Any]:
    return {
        "fastest_first_token": summary.fastest_first_token, "fastest_stream": summary.fastest_stream,
        "cheapest": summary.cheapest, "cut_by_length": list(summary.cut_by_length),
    }


def column_events(run: CompareRun, item: ColumnEvent) -> list[dict[str, Any]]:
    """The JSON events of one column's event (tagged with ``column`` and ``model``); its last ``stats``."""
    tag = {"column": item.index, "model": item.model}
    out: list[dict[str, Any]] = []
    if isinstance(item.event, Stopped):
        out.append({"type": "stopped", **tag})
    elif (payload := json_event(item.event)) is not None:
        out.append({**payload, **tag})
    if isinstance(item.event, Done | ErrorEvent | Stopped):
        stats = run.comparison.columns[item.index].stats(run.service.upstream)
        out.append({"type": "stats", **tag, **stats_json(stats), "ended": True})
    return out


def batch_events(run: CompareRun, batch: Batch) -> list[dict[str, Any]]:
    """The JSON events of one batch: its columns' events, then live ``stats`` (``"ended": false``) of every
    column that changed in it and has not ended (so stats are paced as the page's: one per column per update,
    ``tick`` apart, never one per token), then the ``summary`` after the last column ended."""
    out = [p for item in batch.events for p in column_events(run, item)]
    ended = {p["column"] for p in out if p["type"] == "stats"}
    columns = run.comparison.columns
    for index in sorted({item.index for item in batch.events} - ended):
        stats = columns[index].stats(run.service.upstream)
        out.append({"type": "stats", "column": index, "model": columns[index].model, **stats_json(stats),
                    "ended": False})
    if batch.summary is not None:
        out.append({"type": "summary", **summary_json(batch.summary)})
    return out


async def sse_compare(run: CompareRun) -> AsyncGenerator[bytes, None]:
    """The body of ``POST /compare/stream``."""
    loop = asyncio.get_running_loop()
    last = loop.time()
    columns = [{"column": c.index, "model": c.model} for c in run.comparison.columns]
    yield sse_json({"type": "start", "conversation_id": run.conversation_id, "columns": columns})
    async with contextlib.aclosing(run.comparison.batches()) as batches:
        async for batch in batches:
            payloads = batch_events(run, batch)
            now = loop.time()
            if payloads:
                last = now
                yield b"".join(sse_json(p) for p in payloads)
            elif now - last >= KEEPALIVE_SECONDS:
                last = now
                yield KEEPALIVE
    yield sse_json({"type": "done", "conversation_id": run.conversation_id, "saved": _saved(run)})


def _saved(run: CompareRun) -> bool:
    return all(outcome in ("stored", "deleted") for outcome in run.stored)


class CompareStream(EventSourceResponse):
    """A compare's server-sent events; its body is always closed (which stops every column still running)."""

    def __init__(self, run: CompareRun, headers: dict[str, str]) -> None:
        self._events = sse_compare(run)
        super().__init__(self._events, headers=headers)
        self.run = run

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._events.aclose()
            await self.run.comparison.release()  # a body that never started: its admissions are freed


def column_out(run: CompareRun, column: Column) -> ColumnOut:
    state = column.state
    error = None
    if state.error is not None:
        error = ErrorDetail(code=state.error.error.kind, message=error_text(state.error),
                            retry_after=state.error.error.retry_after)
    stats = column.stats(run.service.upstream)
    return ColumnOut(
        column=column.index, model=column.model, reply=state.reply, reasoning="".join(state.reasoning) or None,
        finish_reason=state.finish_reason, stopped=column.stopped, error=error,
        usage=UsageOut(**usage_json(state.usage)) if state.usage else None,
        stats=StatsOut(**stats_json(stats)),
    )


async def compare_json(run: CompareRun, request: Request) -> Response:
    """``?format=json``: every column to its end (or until the client leaves), as one :class:`CompareReply`."""
    summary: Summary | None = None

    async def consume() -> None:
        nonlocal summary
        async with contextlib.aclosing(run.comparison.batches()) as batches:
            async for batch in batches:
                summary = batch.summary or summary

    try:
        work = await while_connected(request, consume())
    finally:
        await run.comparison.release()
    if work.cancelled() or summary is None:
        return Response(status_code=499, headers={"X-Conversation-ID": run.conversation_id})
    out = CompareReply(
        conversation_id=run.conversation_id, columns=[column_out(run, c) for c in run.comparison.columns],
        summary=SummaryOut(**summary_json(summary)), saved=_saved(run),
    )
    return JSONResponse(out.model_dump(), headers={"X-Conversation-ID": run.conversation_id})




async def compare_stream(
    request: Request,
    body: CompareRequest,
    format: Literal["sse", "json"] = Query("sse", description="sse: tagged server-sent events; json: one answer."),
) -> Response:
    """Send one message to several models; their replies stream together, each event tagged by model."""
    service: ChatService = request.app.state.chat_service
    owner = request.state.switchboard_owner
    peer = request.client.host if request.client else None
    visitor = service.visitor(owner, peer, request.headers, request.state.switchboard_user)
    run = await begin_compare(service, owner, body, visitor)
    headers = {"X-Conversation-ID": run.conversation_id, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if format == "json":
        return await compare_json(run, request)
    return CompareStream(run, headers)


COMPARE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": 'Server-sent events `data: {"type", "column", "model", ...}`: start, then per column delta, '
        "reasoning, usage, error, stopped, and stats (a StatsEvent: live while the column streams, "
        '`"ended": false`, paced at one per column per update; `"ended": true` once when it ends); summary; '
        "done. With format=json: one CompareReply (each column's stats as it ended).",
        "model": CompareReply,
        "content": {"text/event-stream": {"schema": {"type": "object", "properties": {"data": {
            "type": "string", "contentMediaType": "application/json",
            "contentSchema": {"anyOf": [
                StatsEvent.model_json_schema(),
                {"type": "object", "description": "start, delta, reasoning, usage, error, stopped, summary, done"},
            ]},
        }}}}},
        "headers": {"X-Conversation-ID": {"schema": {"type": "string"}}},
    },
    **CHAT_ERROR_RESPONSES,
    403: {"model": ErrorOut, "description": "Compare is turned off (CHATBOT_COMPARE_MAX_COLUMNS=0), or the API is."},
}
