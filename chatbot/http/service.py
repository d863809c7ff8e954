"""The HTTP API's conversations: validation, admission, storage, and each turn's reply (:class:`Reply`).

A reply is :func:`chatbot.core.conversation.turn` on the stored conversation's context; its
:class:`~chatbot.core.reply.ReplyState` is checkpointed while it streams and stored, once, when it ends,
however it ends (complete, failed, or cancelled: a dropped client, a Stop), by the state's end callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Awaitable, Coroutine, Mapping
from dataclasses import replace
from typing import Any

from chatbot.core.checkpoints import Checkpoints, Outcome, Progress
from chatbot.core.compared_turns import stored_items, thread
from chatbot.core.conversation import turn
from chatbot.core.errors import Friendly, friendly, render, store_failure
from chatbot.core.events import Done, ErrorEvent, Event, Usage
from chatbot.core.history import History, clean_text
from chatbot.core.limits import Visitor, visitor_from
from chatbot.core.params import Params
from chatbot.core.reply import ReplyState
from chatbot.core.settings import Settings
from chatbot.core.store import Conversation, Store, StoreError, Turn
from chatbot.core.upstream import Admission, Upstream
from chatbot.http.problems import ApiError, api_reader, fitted, printable, store_down
from chatbot.http.schemas import ChatRequest, ModelInfo, ModelsOut, Prices
from chatbot.http.sse import usage_json

log = logging.getLogger("switchboard.api")

#: Tries of a reply whose visitor limits' Redis failed before anything was sent upstream (the limits use two
#: Redis clients; each reconnects after its first failure once Redis has restarted).
STORE_ATTEMPTS = 3
#: Seconds of provider silence between the Idle events a reply yields: the HTTP face needs them only for the
#: 15 s keep-alive and to notice a shutdown (within this), and each one runs through the whole pipeline of
#: every silent stream (docs/benchmarks/http-gaps.md); the turn's default is the chat tab's 40 ms.
TICK = 1.0


class Reply:
    """One turn's reply over the API: the core's turn, on the stored conversation's context."""

    def __init__(
        self, service: ChatService, turn: Turn, message: str, model_name: str, visitor: Visitor,
        admission: Admission | None = None, params: Params | None = None,
    ) -> None:
        self.service = service
        self.params = params  # the request's own system prompt, temperature, reply length
        self.turn = turn
        self.message = message
        self.model_name = model_name
        self.visitor = visitor
        self.admission = admission  # the limits were checked before the turn was stored
        self.state = ReplyState(turn.model)
        self.state.on_end(self._release)
        self.state.on_end(self._store)
        self.cancel_reason = "disconnected"
        self.stored: Outcome | None = None
        """How storing the reply's end went (None until it was tried, or when a bug stopped it)."""
        self._progress: Progress | None = None

    @property
    def reply(self) -> str:
        return self.state.reply

    @property
    def text(self) -> list[str]:
        return self.state.text

    @property
    def usage(self) -> Usage | None:
        return self.state.usage

    @property
    def error(self) -> ErrorEvent | None:
        """The reply's failure, its advice fitted to an API caller (chatbot.http.problems.fitted)."""
        error = self.state.error
        return None if error is None else fitted(error, api_reader(self.service.settings))

    @property
    def done(self) -> Done | None:
        return self.state.done

    @property
    def trimmed(self) -> int:
        return self.state.trimmed

    @property
    def saved(self) -> bool:
        """The reply's end was stored (or is being stored)."""
        return self.state.ended

    async def events(self) -> AsyncGenerator[Event, None]:
        """The turn's events (its state is stored when it ends); a server shutting down ends it."""
        self._progress = self.service.checkpoints.track(self.turn, self.state.text)
        history = History.of(self.turn.history, self.service.settings)  # the stored context, text only
        events = turn(
            self.service.upstream, self.message, history, self.model_name, visitor=self.visitor,
            admission=self.admission, state=self.state, attempts=STORE_ATTEMPTS, params=self.params,
            tick=TICK,
        )
        async with contextlib.aclosing(events):
            async for event in events:
                if self.service.closing:
                    yield self.state.fail(friendly("shutting_down"))
                    break
                yield fitted(event, api_reader(self.service.settings)) if isinstance(event, ErrorEvent) else event
        await self.save()  # a turn ends its state itself; this covers one closed before it started

    async def save(self) -> None:
        """End the reply: its end callbacks free the admission and store it (once; a cancelled request
        still stores it, in a task of its own)."""
        await self.state.end()

    async def _release(self, state: ReplyState) -> None:
        await self.service.upstream.release(self.admission)  # a reply that never started frees its slot

    async def _store(self, state: ReplyState) -> None:
        self.service.checkpoints.untrack(self._progress)
        if state.complete:
            reason = None
        elif state.error is not None:
            reason = state.error.error.kind
        else:
            reason = self.cancel_reason
        write = self.service.checkpoints.finish(
            self.turn, state.reply, "complete" if state.complete else "interrupted", error=reason,
            finish_reason=state.finish_reason, usage=usage_json(state.usage) if state.usage else None,
        )
        self.stored = await self.service.background(write)
        if self.stored in ("failed", None):
            self.service.upstream.metrics.store_error("not_saved")

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
            raise ApiError.of("unknown_model", render("unknown_model", model=printable(request.model)))
        name = request.model if request.model and request.model.strip() else self.upstream.catalogue.default
        return message, name.strip(), model.id

    def visitor(self, owner: str, peer: str | None, headers: Mapping[str, str], user: str | None = None) -> Visitor:
        """Whom the limits count: the login's user (HTTP Basic) as in the UI; a token, against the API limits
        (``CHATBOT_API_RATE_LIMIT`` / ``CHATBOT_API_TOKEN_LIMIT``, each token on its own); without either,
        the client address as a visitor."""
        return visitor_from(peer, headers, self.settings.trusted_proxies, username=user, api_token=owner or None)

    async def begin(self, owner: str, request: ChatRequest, visitor: Visitor) -> Reply:
        """Validate, admit (every limit is checked before anything is stored or tokenised), store the
        message, and return the reply to run (:class:`ApiError` otherwise)."""

        message, name, model_id = self.check(request)
        if self.closing:
            raise ApiError.of("shutting_down")
        admission = await self._admit(visitor, name)
        if isinstance(admission, Friendly):
            self.upstream.metrics.refused(admission.kind)
            raise ApiError.of(admission.kind, admission.text, retry_after=admission.retry_after)
        try:
            turn = await self.store.begin_turn(
                request.conversation_id, owner, message, model_id, self.settings.max_history_messages
            )
        except StoreError as exc:
            self.upstream.metrics.store_error()
            await self.upstream.release(admission)
            raise store_down("stored", exc) from None
        except BaseException:
            await self.upstream.release(admission)
            raise
        if turn is None:
            await self.upstream.release(admission)
            raise ApiError.of(
                "unknown_conversation",
                f"There is no conversation “{printable(request.conversation_id, 40)}” for this token "
                "(unknown, deleted, or started with another token). Leave out conversation_id to start one.",
            )
        params = Params.of(request.model_dump(include={"system", "temperature", "max_tokens"}))
        context = thread(await self.context(owner, turn), model_id)  # earlier compared turns: this model's reply
        turn = replace(turn, history=context if isinstance(context, list) else turn.history)
        return Reply(self, turn, message, name, visitor, admission, params)

    async def context(self, owner: str, turn: Turn) -> list[dict]:
        """``turn``'s context with its earlier compared turns as such (:mod:`chatbot.core.compared_turns`: a
        model continues with its own reply there). The stored conversation is read again only when the
        turn's context repeats a message (what a compared turn looks like there)."""
        users = [m["content"] for m in turn.history if m["role"] == "user"]
        if len(set(users)) == len(users):
            return turn.history
        try:
            found = await self.store.get(turn.conversation_id, owner)
        except StoreError:
            log.warning("could not read the compared turns back; the context holds every column")
            return turn.history
        return turn.history if found is None else stored_items(found.messages, turn.user_seq,
                                                                self.settings.max_history_messages)

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
            raise store_down("read", exc) from None
        if found is None:
            raise ApiError.of(
                "unknown_conversation",
                f"There is no conversation “{printable(conversation_id, 40)}” for this token.",
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
