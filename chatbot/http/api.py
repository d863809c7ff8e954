"""The chat service behind the HTTP routes and the WebSocket (validation, storage, streaming) and the SSE
encoding (routes: :mod:`chatbot.http.routes`).

Every message is stored (:mod:`chatbot.core.store`) the moment it is accepted; the reply is stored when it ends,
however it ends: a dropped client or a Stop cancels the request task, which closes the upstream
connection (see :mod:`chatbot.core.upstream`) and stores what was produced, marked ``interrupted``. While it
streams, its text so far is saved about every second (:mod:`chatbot.core.checkpoints`). A reply the store did
not take is never reported as saved: ``done`` says ``"saved": false`` after an error event ``not_saved``
(plain SSE: an ``[ERROR]`` line), ``/chat`` answers ``"saved": false``, and the save is retried until the
store takes it. A failure after the stream started is an error event then the end of the stream; before,
a JSON error with its status; both are logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Coroutine, Mapping
from datetime import datetime, timezone
from typing import Any

from fastapi import Request

from chatbot.core.checkpoints import Checkpoints, Outcome, Progress
from chatbot.core.errors import Friendly, failure_text, friendly, render, store_failure
from chatbot.core.history import History, clean_text
from chatbot.core.limits import Visitor, visitor_from
from chatbot.core.settings import Settings
from chatbot.core.store import Conversation, Store, StoreError, Turn
from chatbot.core.upstream import (
    Admission,
    Done,
    ErrorEvent,
    Event,
    HistoryTrimmed,
    Idle,
    ReasoningDelta,
    TextDelta,
    Upstream,
    Usage,
)
from chatbot.http.problems import ApiError
from chatbot.http.problems import printable as _printable
from chatbot.http.problems import store_down as _store_down
from chatbot.http.schemas import ChatRequest, ModelInfo, ModelsOut, Prices

log = logging.getLogger("switchboard.api")

#: An SSE comment is sent after this many seconds without an event, so proxies keep the stream open.
KEEPALIVE_SECONDS = 15.0


# ------------------------------------------------------------------------------------------------- core


def sse_data(text: str) -> bytes:
    """One SSE event carrying ``text``: a ``data:`` line per line (SSE treats CR, LF and CRLF alike as
    line ends, so each becomes a line break the client joins back with LF)."""
    return ("".join(f"data: {line}\n" for line in re.split(r"\r\n|\r|\n", text)) + "\n").encode()


def sse_json(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cost": usage.cost,
        "cost_source": usage.cost_source,
    }


#: Tries of a reply whose visitor limits' Redis failed before anything was sent upstream (the limits use two
#: Redis clients; each reconnects after its first failure once Redis has restarted).
STORE_ATTEMPTS = 3


def error_text(event: ErrorEvent) -> str:
    """The wording the UI shows for a failed reply (without its emoji), in English."""
    return failure_text(event.error, event.partial)


def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Reply:
    """One turn's reply: runs the upstream stream, keeps what arrives, and stores the reply when the
    stream ends, whether it completed, failed, or was cancelled (a dropped client, a Stop)."""

    def __init__(
        self, service: ChatService, turn: Turn, message: str, model_name: str, visitor: Visitor,
        admission: Admission | None = None,
    ) -> None:
        self.service = service
        self.turn = turn
        self.message = message
        self.model_name = model_name
        self.visitor = visitor
        self.admission = admission  # the limits were checked before the turn was stored
        self.text: list[str] = []
        self.usage: Usage | None = None
        self.error: ErrorEvent | None = None
        self.done: Done | None = None
        self.trimmed = 0
        self.cancel_reason = "disconnected"
        self.saved = False
        self.stored: Outcome | None = None
        """How storing the reply's end went (None until it was tried, or when a bug stopped it)."""
        self._progress: Progress | None = None

    @property
    def reply(self) -> str:
        return "".join(self.text)

    async def events(self) -> AsyncIterator[Event]:
        self._progress = self.service.checkpoints.track(self.turn, self.text)
        try:
            for attempt in range(1, STORE_ATTEMPTS + 1):
                started = False
                try:
                    async for event in self._upstream_events():
                        started = True
                        yield event
                    break
                except Exception as exc:  # a failure of the app itself (its Redis): an error event, logged
                    if store_failure(exc) and not started and attempt < STORE_ATTEMPTS:
                        # The visitor limits' Redis restarted: each of its clients reconnects on its first
                        # failure. Nothing was sent upstream yet (the limits come first): try again.
                        log.warning("the shared store failed (%s); trying again", type(exc).__name__)
                        continue
                    log.exception("a reply failed")
                    if self.done is not None and self.error is None:
                        break  # the reply was whole; only its accounting (the limits) failed afterwards
                    failure = friendly("store_unavailable" if store_failure(exc) else "internal")
                    self.error = ErrorEvent(failure, partial=bool(self.text))
                    yield self.error
                    break
        finally:
            await self.save()

    async def _upstream_events(self) -> AsyncIterator[Event]:
        history = History.of(self.turn.history, self.service.settings)  # the stored context, text only
        upstream = self.service.upstream
        stream = upstream.stream(
            self.message, history, self.model_name, visitor=self.visitor, admission=self.admission
        )
        async with contextlib.aclosing(stream):
            async for event in stream:
                if self.service.closing:
                    ending = friendly("shutting_down")
                    self.error = ErrorEvent(ending, partial=bool(self.text))
                    yield self.error
                    break
                if isinstance(event, TextDelta):
                    self.text.append(event.text)
                elif isinstance(event, Usage):
                    self.usage = event
                elif isinstance(event, ErrorEvent):
                    self.error = event
                elif isinstance(event, Done):
                    self.done = event
                elif isinstance(event, HistoryTrimmed):
                    self.trimmed = event.dropped_turns
                yield event

    async def save(self) -> None:
        """Store the reply (once). Runs in a task of its own, so a cancelled request still stores it."""
        await self.service.upstream.release(self.admission)  # a reply that never started frees its slot
        if self.saved:
            return
        self.saved = True
        self.service.checkpoints.untrack(self._progress)
        complete = self.done is not None and self.error is None
        if complete:
            reason = None
        elif self.error is not None:
            reason = self.error.error.kind
        else:
            reason = self.cancel_reason
        write = self.service.checkpoints.finish(
            self.turn, self.reply, "complete" if complete else "interrupted", error=reason,
            finish_reason=self.done.finish_reason if self.done else None,
            usage=usage_json(self.usage) if self.usage else None,
        )
        self.stored = await self.service.background(write)

    def not_saved(self) -> ErrorEvent | None:
        """The event telling the client the store refused its reply (None when it took it, or when the
        conversation was deleted meanwhile)."""
        if self.stored not in ("failed", None):
            return None
        return ErrorEvent(friendly("not_saved"), partial=False)


class ChatService:
    """Validation, storage and streaming shared by the HTTP routes and the WebSocket."""

    def __init__(self, settings: Settings, upstream: Upstream, store: Store) -> None:
        self.settings = settings
        self.upstream = upstream
        self.store = store
        self.closing = False
        self._tasks: set[asyncio.Task] = set()
        self.checkpoints = Checkpoints(store)

    def close(self) -> None:
        """The server is shutting down: replies in progress end now (stored as interrupted), new
        requests are refused."""
        self.closing = True

    async def background(self, work: Coroutine[Any, Any, Any]) -> Any:
        """Run ``work`` to completion even if the caller is cancelled meanwhile (the caller still sees
        its cancellation) and return its result. Failures are logged, never raised (None)."""
        task = asyncio.get_running_loop().create_task(self._logged(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(task)

    @staticmethod
    async def _logged(work: Awaitable[Any]) -> Any:
        try:
            return await work
        except StoreError as exc:
            log.error("could not store a reply: %s", exc)
        except Exception:  # pragma: no cover - a bug must not vanish silently
            log.exception("could not store a reply")
        return None

    async def drain(self) -> None:
        """Wait for pending writes (at shutdown), and give the refused ones a last try."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.checkpoints.close()

    def check(self, request: ChatRequest) -> tuple[str, str, str]:
        """(clean message, model name to send, model id), or :class:`ApiError` 422."""
        raw = request.message
        limit = self.settings.max_message_chars
        if len(raw) > limit:
            raise ApiError.of("input_too_long", render("input_too_long", chars=len(raw), limit=limit))
        message = clean_text(raw, limit)
        if not message.strip():
            raise ApiError.of("empty_message", render("empty_message"))
        model = self.upstream.resolve(request.model)
        if model is None:
            raise ApiError.of("unknown_model", render("unknown_model", model=_printable(request.model)))
        name = request.model if request.model and request.model.strip() else self.upstream.catalogue.default
        return message, name.strip(), model.id

    def visitor(self, owner: str, peer: str | None, headers: Mapping[str, str], user: str | None = None) -> Visitor:
        """Whom the limits count: the login's user (HTTP Basic) as in the UI; a token, against the API limits
        (``CHATBOT_API_RATE_LIMIT`` / ``CHATBOT_API_TOKEN_LIMIT``, each token on its own); without either,
        the client address as a visitor."""
        if user:
            return visitor_from(peer, headers, self.settings.trusted_proxies, username=user)
        if owner:
            return Visitor(f"api-token:{owner[:16]}", api=True)
        return visitor_from(peer, headers, self.settings.trusted_proxies)

    async def begin(self, owner: str, request: ChatRequest, visitor: Visitor) -> Reply:
        """Validate, admit (every limit is checked before anything is stored or tokenised), store the
        message, and return the reply to run (:class:`ApiError` otherwise)."""
        message, name, model_id = self.check(request)
        if self.closing:
            raise ApiError.of("shutting_down")
        admission = await self._admit(visitor, name)
        if isinstance(admission, Friendly):
            raise ApiError.of(admission.kind, admission.text, retry_after=admission.retry_after)
        try:
            turn = await self.store.begin_turn(
                request.conversation_id, owner, message, model_id, self.settings.max_history_messages
            )
        except StoreError as exc:
            await self.upstream.release(admission)
            raise _store_down("stored", exc) from None
        except BaseException:
            await self.upstream.release(admission)
            raise
        if turn is None:
            await self.upstream.release(admission)
            raise ApiError.of(
                "unknown_conversation",
                f"There is no conversation “{_printable(request.conversation_id, 40)}” for this token "
                "(unknown, deleted, or started with another token). Leave out conversation_id to start one.",
            )
        return Reply(self, turn, message, name, visitor, admission)

    async def _admit(self, visitor: Visitor, name: str) -> Admission | Friendly:
        """The limits' admission, tried again when their Redis failed (each of its clients reconnects on its
        first failure, so a restarted Redis costs no request); a failure that remains is a 503, logged."""
        for attempt in range(1, STORE_ATTEMPTS + 1):
            try:
                return await self.upstream.admit(visitor, name)
            except Exception as exc:
                if not store_failure(exc):
                    raise
                if attempt < STORE_ATTEMPTS:
                    log.warning("the shared store failed (%s); trying again", type(exc).__name__)
                    continue
                log.exception("the limits' store failed")
                raise ApiError.of("store_unavailable") from None
        raise AssertionError("unreachable")

    async def conversation(self, owner: str, conversation_id: str) -> Conversation:
        try:
            found = await self.store.get(conversation_id, owner)
        except StoreError as exc:
            raise _store_down("read", exc) from None
        if found is None:
            raise ApiError.of(
                "unknown_conversation",
                f"There is no conversation “{_printable(conversation_id, 40)}” for this token.",
            )
        return found

    def models(self) -> ModelsOut:
        catalogue = self.upstream.catalogue
        names = [value for _, value in catalogue.choices()]
        available: list[ModelInfo] = []
        mapping: dict[str, str] = {}
        for name in names:
            model = self.upstream.resolve(name)
            if model is None:  # pragma: no cover - every offered name resolves
                continue
            mapping[name] = model.id
            available.append(
                ModelInfo(
                    name=name, id=model.id, context_window=model.context_window, max_output=model.max_output,
                    prices=Prices(input=model.input_price, output=model.output_price),
                    reasoning=model.reasoning, vision=model.vision,
                )
            )
        return ModelsOut(models=mapping, default=catalogue.default, available=available)


def json_event(event: Event, reply: Reply) -> dict[str, Any] | None:
    """The ``?format=json`` / WebSocket shape of one core event (None: nothing to send)."""
    if isinstance(event, TextDelta):
        return {"type": "delta", "text": event.text}
    if isinstance(event, ReasoningDelta):
        return {"type": "reasoning", "text": event.text}
    if isinstance(event, Usage):
        return {"type": "usage", **usage_json(event)}
    if isinstance(event, ErrorEvent):
        return {
            "type": "error", "code": event.error.kind, "message": error_text(event),
            "retry_after": event.error.retry_after, "partial": event.partial,
        }
    return None


def done_event(reply: Reply, stopped: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "done",
        "conversation_id": reply.turn.conversation_id,
        "model": reply.turn.model,
        "finish_reason": reply.done.finish_reason if reply.done else None,
        "interrupted": stopped or reply.error is not None or reply.done is None,
        "history_trimmed_turns": reply.trimmed,
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
                    yield b": keep-alive\n\n"
                continue
            chunk = _sse_chunk(event, reply, structured)
            if chunk:
                last = now
                yield chunk
    unsaved = reply.not_saved()
    if unsaved is not None:
        yield _sse_chunk(unsaved, reply, structured) or b""
    yield sse_json(done_event(reply)) if structured else b"data: [DONE]\n\n"


def _sse_chunk(event: Event, reply: Reply, structured: bool) -> bytes | None:
    if structured:
        payload = json_event(event, reply)
        return sse_json(payload) if payload else None
    if isinstance(event, TextDelta):
        return sse_data(event.text)
    if isinstance(event, ErrorEvent):
        return sse_data(f"[ERROR] {error_text(event)}")
    return None


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
