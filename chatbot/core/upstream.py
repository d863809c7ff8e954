"""The chat core: one request to an OpenAI-compatible upstream, streamed as typed events.

The Gradio UI and the HTTP API both consume :meth:`Upstream.stream` and reshape its events. Nothing
escapes it as an exception: every failure becomes an :class:`ErrorEvent` carrying a friendly message.

The upstream's stream is read by a task of its own that feeds a mailbox, so the consumer can wake up on a short
``tick`` while the upstream is silent (an :data:`IDLE` event). That is what lets Gradio notice a closed
tab while a reasoning model thinks, and what lets the time-outs for the first token and for silence be
enforced. Whenever the consumer stops (Stop, a closed tab, a dropped HTTP client, an error), the reader
task is cancelled inside ``async with stream:``, which closes the HTTP connection to the upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass, replace

import httpx2
import openai
import orjson

from chatbot.compat import ShortWaitClient
from chatbot.core.catalogue import Catalogue, Model, build_catalogue
from chatbot.core.errors import (
    REPLY_LIMIT_KINDS,
    FirstTokenTimeout,
    Friendly,
    IdleTimeout,
    StreamProblem,
    friendly,
    friendly_error,
)
from chatbot.core.history import History, MessageTooLong, clean_text, fit_history, small_history
from chatbot.core.limits import UNKNOWN_PRICE, Guard, Ticket, Visitor
from chatbot.core.reply_limits import ReplyCounter, ReplyLimits
from chatbot.core.settings import Settings
from chatbot.core.tokens import counter_for, encoding_loaded

log = logging.getLogger("switchboard.upstream")


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    cost_source: str  # "upstream" (the provider's own figure), "catalogue", or "unknown"


@dataclass(frozen=True, slots=True)
class HistoryTrimmed:
    dropped_turns: int


@dataclass(frozen=True, slots=True)
class Done:
    finish_reason: str | None


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    error: Friendly
    partial: bool  # some text had already been streamed


@dataclass(frozen=True, slots=True)
class Idle:
    """Nothing arrived for one tick: a chance for the consumer to flush or to notice it was abandoned."""


IDLE = Idle()
LOCAL_VISITOR = Visitor("local")
#: A key a visitor pastes: one line of printable ASCII, of a plausible length.
_KEY_RE = re.compile(r"^[\x21-\x7e]{8,512}$")
Event = TextDelta | ReasoningDelta | Usage | HistoryTrimmed | Done | ErrorEvent | Idle
_END = object()
_EMPTY = object()
#: An answer with no event at all to a prompt of at least this many tokens is taken as a length refusal
#: (llama.cpp's server answers a streaming request longer than its window with 200 and an empty body).
LENGTH_SUSPECT_TOKENS = 512
#: What is read of a body after ``[DONE]`` before its connection is given up rather than reused.
DRAIN_BYTES = 64 * 1024
DRAIN_SECONDS = 2.0
#: How long a finished reply waits for that (normally the end of the body is already there); a slower drain
#: goes on in the background, and a reply that starts meanwhile opens a connection of its own.
DRAIN_WAIT = 0.5
#: A usage report claiming fewer completion tokens than one per this many streamed bytes is not believed.
UNDER_REPORT_BYTES = 8
#: Readers draining a finished reply's body (a reference, so the tasks are not collected midway).
_DRAINING: set[asyncio.Task] = set()


def make_client(settings: Settings, api_key: str | None = None, **kwargs: object) -> openai.AsyncOpenAI:
    """An ``AsyncOpenAI`` for the configured base URL: one per process (or per visitor's own key)."""
    key = api_key or (settings.api_key.get_secret_value() if settings.api_key else "demo")
    longest_silence = max(settings.first_token_timeout, settings.idle_timeout) + 5
    if api_key is None and "http_client" not in kwargs:
        # The process's shared client keeps a connection alive per concurrent stream (the SDK keeps 100):
        # after a busy minute, the next burst of visitors reuses them instead of opening a connection
        # each (a new connection was ~20% of the app's CPU while 200 visitors arrived at once, py-spy).
        limits = httpx2.Limits(max_connections=max(1000, settings.max_concurrency),
                               max_keepalive_connections=settings.max_concurrency)
        kwargs["http_client"] = openai.DefaultAsyncHttpxClient(limits=limits)
    client = ShortWaitClient(
        api_key=key,
        base_url=settings.base_url,
        max_retries=settings.max_retries,
        timeout=httpx2.Timeout(longest_silence, connect=settings.connect_timeout),
        **kwargs,  # type: ignore[arg-type]
    )
    client.max_retry_wait = settings.max_retry_wait
    return client


@dataclass(frozen=True, slots=True)
class Admission:
    """A request admitted by :meth:`Upstream.admit` (``ticket`` is None when no limit applies)."""

    ticket: Ticket | None


@dataclass(frozen=True)
class Prepared:
    model: Model
    messages: list[dict]
    dropped_turns: int
    prompt_tokens: int
    max_tokens: int


class Upstream:
    """Builds requests within each model's token budget and streams the replies as events."""

    def __init__(
        self, settings: Settings, client: openai.AsyncOpenAI | None = None, guard: Guard | None = None,
        catalogue: Catalogue | None = None,
    ) -> None:
        self.settings = settings
        # the live catalogue (LiveModels adds the provider's list to it); the settings hold only its spec
        self.catalogue = catalogue if catalogue is not None else build_catalogue(settings.models)
        self.client = client or make_client(settings)
        if guard is None and settings.policy.active:
            guard = Guard(settings.policy, settings.redis_url.get_secret_value() if settings.redis_url else None)
        self.guard = guard
        #: Prompt budgets learned from length refusals (model id -> tokens): a provider whose real window
        #: is smaller than the catalogue says gets trimmed requests from then on.
        self.learned_budget: dict[str, int] = {}

    def warm_up(self) -> None:
        """Do now, once, what the first request would otherwise wait for: load the tokenisers of the
        offered models (a few hundred ms each). Measured with 200 visitors arriving at a fresh app: a
        quarter of its CPU in the first seconds (py-spy)."""
        try:
            seen: set[str] = set()
            for _, value in self.catalogue.choices():
                model = self.resolve(value)
                counter = counter_for(model.id) if model is not None else None
                if counter is not None and counter.encoding_name not in seen:
                    seen.add(counter.encoding_name)
                    _ = counter.encoding
        except Exception as exc:  # a warm-up is never worth an error: the first request does it instead
            log.warning("warm-up skipped: %s: %s", type(exc).__name__, exc)

    def warm_up_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.warm_up, name="switchboard-warm-up", daemon=True)
        thread.start()
        return thread

    def resolve(self, name: str | None) -> Model | None:
        """The model a dropdown value or API field names; None when it is not offered."""
        if name is None or (isinstance(name, str) and not name.strip()):
            name = self.catalogue.default
        return self.catalogue.resolve(name, allow_any=self.settings.allow_any_model)

    def budget(self, model: Model) -> tuple[int, int]:
        """(prompt budget in tokens, reply cap) for a model."""
        reply = min(self.settings.max_tokens, model.max_output or self.settings.max_tokens)
        reply = min(reply, max(model.context_window // 4, 256))
        prompt = model.context_window - reply
        if self.settings.context_tokens:
            prompt = min(prompt, self.settings.context_tokens)
        return max(prompt, 1), reply

    def prepare(
        self,
        message: str | list[dict],
        history: History | list[dict],
        model_name: str | None,
        *,
        prompt_budget: int | None = None,
    ) -> Prepared | Friendly:
        """The messages to send (system prompt, trimmed history, new message), or why nothing is sent.
        ``message`` is text, or OpenAI content parts (text and ``image_url``) when images are attached.
        ``prompt_budget`` lowers the model's prompt budget (a retry after a length refusal).

        ``history`` is the client's history as a :class:`History` (a list stands for one with the settings'
        caps); it is cleaned, counted and trimmed in one walk from the newest message back, which stops
        where the budget is full (:func:`chatbot.core.history.fit_history`)."""
        model = self.resolve(model_name)
        if model is None:
            return friendly("unknown_model", model=_printable(model_name))
        if isinstance(message, list):
            content: str | list[dict] | Friendly = _checked_parts(message, model, self.settings.max_message_chars)
            if isinstance(content, Friendly):
                return content
        else:
            if not isinstance(message, str) or not message.strip():
                return friendly("empty_message")
            if len(message) > self.settings.max_message_chars:  # before tokenising: a 5 MB paste costs nothing
                limit = self.settings.max_message_chars
                return friendly("input_too_long", chars=len(message), limit=limit)
            content = clean_text(message, self.settings.max_message_chars)
        budget, reply = self.budget(model)
        if prompt_budget is not None or model.id in self.learned_budget:
            budget = max(1, min(budget, prompt_budget or budget, self.learned_budget.get(model.id, budget)))
        system = [{"role": "system", "content": self.settings.system_prompt}] if self.settings.system_prompt else []
        newest = {"role": "user", "content": content}
        counter = counter_for(model.id)
        if not isinstance(history, History):
            history = History.of(history, self.settings)
        try:
            trimmed = fit_history(history, budget, counter.count, system=system, newest=newest)
        except MessageTooLong as exc:
            return friendly("message_too_long", model=model.id, tokens=exc.tokens, budget=exc.budget)
        return Prepared(model, trimmed.messages, trimmed.dropped_turns, trimmed.tokens, reply)

    async def admit(self, visitor: Visitor, model_name: str | None) -> Admission | Friendly:
        """Admit a request before anything of it is stored or tokenised (the HTTP API's order): every limit
        is checked, a stream slot taken, the message counted and a full reply's cost reserved; the prompt's
        cost is added by :meth:`stream` once the prompt is counted. Pass the admission to :meth:`stream`,
        or to :meth:`release` when the request goes no further."""
        _, refused = self._user_key(None)
        if refused is not None:
            return refused
        if self.guard is None:
            return Admission(None)
        visitor = replace(visitor, own_key=False)
        if (refused := await self.guard.precheck(visitor)) is not None:
            return refused
        model = self.resolve(model_name)
        reply_cost = _price(model, 0, self.budget(model)[1]) if self._has_budget and model is not None else None
        ticket = await self.guard.admit(visitor, reply_cost)
        return ticket if isinstance(ticket, Friendly) else Admission(ticket)

    async def release(self, admission: Admission | None) -> None:
        """Free an admission's stream slot and reservation if :meth:`stream` did not (idempotent)."""
        if admission is not None and admission.ticket is not None and self.guard is not None:
            await self.guard.settle(admission.ticket, 0, 0.0)

    async def stream(
        self,
        message: str | list[dict],
        history: History | list[dict],
        model_name: str | None,
        *,
        client: openai.AsyncOpenAI | None = None,
        tick: float = 0.04,
        visitor: Visitor | None = None,
        api_key: str | None = None,
        admission: Admission | None = None,
    ) -> AsyncIterator[Event]:
        """Stream one reply as events. Never raises (but for cancellation); always ends with
        :class:`Done` or :class:`ErrorEvent`.

        ``visitor`` is whom the limits count (every route passes one); ``api_key`` is a visitor's own key,
        used for this request only through a client of its own (never stored, never shared), which also
        exempts the request from the owner's quotas. ``admission`` is one from :meth:`admit` (the limits
        were checked already). Prompt building runs in a worker thread (tokenising a long history is CPU
        work that must not block the event loop). ``history`` is as for :meth:`prepare`."""
        if admission is None:
            api_key, refused = self._user_key(api_key)
            if refused is not None:
                yield ErrorEvent(refused, partial=False)
                return
            visitor = replace(visitor or LOCAL_VISITOR, own_key=bool(api_key))
            if self.guard is not None and (refused := await self.guard.precheck(visitor)) is not None:
                yield ErrorEvent(refused, partial=False)
                return
        else:
            api_key = None
        prepared = await self._prepared(message, history, model_name)
        ticket: Ticket | Friendly | None = admission.ticket if admission is not None else None
        if not isinstance(prepared, Friendly):
            if admission is None and self.guard is not None:
                ticket = await self.guard.admit(visitor or LOCAL_VISITOR, self._worst_cost(prepared))
                prepared = ticket if isinstance(ticket, Friendly) else prepared
            elif isinstance(ticket, Ticket) and self.guard is not None:
                prepared = await self.guard.reserve(ticket, self._worst_cost(prepared)) or prepared
        if isinstance(prepared, Friendly):
            await self.release(admission)
            yield ErrorEvent(prepared, partial=False)
            return
        own_client = make_client(self.settings, api_key=api_key) if api_key else None
        limits = ReplyLimits.for_cap(prepared.max_tokens, self.settings.reply_timeout)
        meter = _Meter(prepared, ReplyCounter(limits, counter_for(prepared.model.id)))
        try:
            events = self._attempts(prepared, (message, history, model_name), own_client or client or self.client,
                                    tick, meter)
            async with contextlib.aclosing(events):
                async for event in events:
                    meter.see(event)
                    yield event
        finally:
            if own_client is not None:
                await own_client.close()
            if isinstance(ticket, Ticket) and self.guard is not None:
                await self.guard.settle(ticket, *meter.totals(self._has_budget))

    async def _prepared(
        self, message: str | list[dict], history: History | list[dict],
        model_name: str | None, prompt_budget: int | None = None,
    ) -> Prepared | Friendly:
        """:meth:`prepare` on the event loop when it is cheap, else in a worker thread."""
        try:
            if prepares_inline(message, history) and self._counter_ready(model_name):  # a hop costs more
                return self.prepare(message, history, model_name, prompt_budget=prompt_budget)
            return await asyncio.to_thread(self.prepare, message, history, model_name, prompt_budget=prompt_budget)
        except Exception:  # pragma: no cover - prepare is total, this is a safety net
            log.exception("could not prepare a request")
            return friendly("internal")

    async def _attempts(
        self, prepared: Prepared, request: tuple[str | list[dict], History | list[dict], str | None],
        client: openai.AsyncOpenAI, tick: float, meter: _Meter,
    ) -> AsyncGenerator[Event, None]:
        """The reply's events. An empty answer to a long request is how some servers (llama.cpp) refuse a
        prompt longer than the model's real window: it is retried once with the prompt trimmed to half."""
        if prepared.dropped_turns:
            yield HistoryTrimmed(prepared.dropped_turns)
        retry: Prepared | Friendly | None = None
        async with contextlib.aclosing(self._stream_prepared(prepared, client, tick, meter.counter)) as events:
            async for event in events:
                if isinstance(event, ErrorEvent) and event.error.kind == "too_long_empty":
                    retry = await self._prepared(*request, prompt_budget=prepared.prompt_tokens // 2)
                    if isinstance(retry, Prepared) and retry.dropped_turns > prepared.dropped_turns:
                        break
                    retry = None
                yield event
        if not isinstance(retry, Prepared):
            return
        log.info("empty answer to a %d-token prompt: retried with %d", prepared.prompt_tokens, retry.prompt_tokens)
        meter.prepared = retry
        yield HistoryTrimmed(retry.dropped_turns)
        async with contextlib.aclosing(self._stream_prepared(retry, client, tick, meter.counter)) as events:
            async for event in events:
                if isinstance(event, Done):  # the shorter prompt fits: later requests are trimmed to it at once
                    model = retry.model.id
                    self.learned_budget[model] = min(self.learned_budget.get(model, retry.prompt_tokens),
                                                     prepared.prompt_tokens // 2)
                yield event

    def _counter_ready(self, model_name: str | None) -> bool:
        """Whether the model's tokeniser is loaded (the first load reads a file: never on the loop)."""
        model = self.resolve(model_name)
        return model is None or encoding_loaded(counter_for(model.id).encoding_name)

    @property
    def _has_budget(self) -> bool:
        return self.settings.policy.daily_budget_usd is not None

    def _user_key(self, api_key: str | None) -> tuple[str | None, Friendly | None]:
        """The visitor's own key to use (or None), or why the request is refused."""
        settings = self.settings
        key = api_key.strip() if isinstance(api_key, str) and settings.allow_user_key and not settings.demo else ""
        if key and not _KEY_RE.match(key):
            return None, friendly("bad_user_key")
        if not key and settings.require_user_key:
            return None, friendly("need_user_key")
        return key or None, None

    def _worst_cost(self, prepared: Prepared) -> float | None:
        """The most this request can cost (prompt plus a full reply), for the spending ceiling."""
        if not self._has_budget:
            return None
        return _price(prepared.model, prepared.prompt_tokens, prepared.max_tokens)

    async def _stream_prepared(
        self, prepared: Prepared, client: openai.AsyncOpenAI, tick: float, counter: ReplyCounter
    ) -> AsyncGenerator[Event, None]:
        loop = asyncio.get_running_loop()
        mailbox = _Mailbox()
        reader = asyncio.create_task(self._read(client, prepared, mailbox, counter))
        last = loop.time()
        deadline = last + counter.limits.seconds
        got_token = got_text = False
        try:
            while True:
                item = mailbox.take()
                if item is _EMPTY:
                    limit = self.settings.idle_timeout if got_token else self.settings.first_token_timeout
                    now = loop.time()
                    remaining = limit - (now - last)
                    if now >= deadline:
                        yield self._out_of_time(counter, got_text)
                        return
                    if remaining <= 0:
                        timeout = IdleTimeout(limit) if got_token else FirstTokenTimeout(limit)
                        yield ErrorEvent(friendly_error(timeout), partial=got_text)
                        return
                    await mailbox.wait(min(tick, remaining, deadline - now))
                    item = mailbox.take()
                    if item is _EMPTY:
                        yield IDLE
                        continue
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    yield ErrorEvent(friendly_error(item, model=prepared.model.id), partial=got_text)
                    return
                if isinstance(item, TextDelta | ReasoningDelta):
                    last = loop.time()
                    if last >= deadline:
                        yield self._out_of_time(counter, got_text)
                        return
                    got_token = True
                    got_text = got_text or isinstance(item, TextDelta)
                    item = _merged(item, mailbox)
                yield item
                if isinstance(item, Done):  # the reader is draining the body (see _read): its connection
                    await asyncio.wait({reader}, timeout=DRAIN_WAIT)  # is free for the next reply after it
                    return
        finally:
            if not reader.done() and mailbox.draining:
                _DRAINING.add(reader)
                reader.add_done_callback(_DRAINING.discard)
            else:
                if not reader.done():
                    reader.cancel()
                await asyncio.gather(reader, return_exceptions=True)

    @staticmethod
    def _out_of_time(counter: ReplyCounter, partial: bool) -> ErrorEvent:
        counter.cut = True
        return ErrorEvent(friendly("reply_timeout", seconds=counter.limits.seconds), partial=partial)

    async def _read(
        self, client: openai.AsyncOpenAI, prepared: Prepared, mailbox: _Mailbox, counter: ReplyCounter
    ) -> None:
        model = prepared.model
        cap = {"max_completion_tokens" if model.reasoning else "max_tokens": prepared.max_tokens}
        try:
            # The request, its retries, time-outs and HTTP status errors are the SDK's (``client.post``,
            # its documented way to send a request it has no method for, keeps the client's options); the
            # body is encoded and the response read here. The SDK's own stream builds a pydantic model per
            # chunk (43% of the app's CPU at 200 simultaneous streams, py-spy, against a few microseconds
            # for orjson); its typed ``create`` walks every message through a TypedDict transform (~110 us
            # a message) and encodes the body with json.dumps (14.1 ms for a 2,000-turn chat, against
            # 0.4 ms for orjson, both on the event loop). The messages are plain dicts of str already.
            body = orjson.dumps({
                "model": model.id, "messages": prepared.messages, "stream": True,
                "stream_options": {"include_usage": True}, **cap,
            })
            http = await client.post("/chat/completions", cast_to=httpx2.Response, content=body, stream=True)
            try:  # closing a response that was not read to its end closes the connection: the provider stops
                raw = http.aiter_bytes()
                try:
                    finish = await self._relay(http, raw, prepared, mailbox, counter)
                except (httpx2.RemoteProtocolError, openai.APIConnectionError) as exc:  # a body cut before its
                    if counter.body or prepared.prompt_tokens < LENGTH_SUSPECT_TOKENS or (  # first byte after a long
                        friendly_error(exc).kind != "cut"):  # prompt: how llama-cpp-python refuses a streaming
                        raise  # prompt past its window (llama.cpp's server: an empty body)
                    raise StreamProblem("too_long_empty") from None
                mailbox.draining = True
                mailbox.put(Done(finish))
                await _drain(raw)  # so the connection goes back to the pool
            finally:
                await http.aclose()
            mailbox.put(_END)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not mailbox.draining:
                if friendly_error(exc).kind == "internal":  # not the provider's failure: a bug here
                    log.exception("upstream request failed")
                else:  # classified (and shown to the visitor) as the provider's failure
                    log.warning("upstream request failed: %s", type(exc).__name__)
                mailbox.put(exc)

    @staticmethod
    async def _relay(
        http: httpx2.Response, raw: AsyncIterator[bytes], prepared: Prepared, mailbox: _Mailbox,
        counter: ReplyCounter,
    ) -> str | None:
        """Pass the body's events to the mailbox up to ``[DONE]`` (or the body's end); the finish reason.
        Raises :class:`StreamProblem` for an answer that is not a usable reply, or one past its limits."""
        content_type = http.headers.get("content-type", "").lower()
        if "html" in content_type:
            raise StreamProblem("not_event_stream")
        splitter = ThinkSplitter()
        finish: str | None = None
        seen = 0
        text = False
        async with contextlib.aclosing(sse_data(raw, counter)) as events:
            async for data in events:
                seen += 1
                if data.startswith("[DONE]"):
                    break
                chunk = _decode(data)
                if chunk.get("error"):  # an error sent inside a 200 stream, as the SDK reports it
                    raise _stream_error(chunk["error"], http.request)
                for event in _events(chunk, splitter, prepared.model):
                    if isinstance(event, Done):
                        finish = event.finish_reason
                        continue
                    if isinstance(event, TextDelta | ReasoningDelta):
                        counter.add(event.text)
                        text = text or isinstance(event, TextDelta)
                    mailbox.put(event)
        for event in splitter.flush():
            counter.add(event.text)
            text = text or isinstance(event, TextDelta)
            mailbox.put(event)
        if not seen and counter.body and "event-stream" not in content_type:
            raise StreamProblem("not_event_stream")
        if not seen and prepared.prompt_tokens >= LENGTH_SUSPECT_TOKENS:
            raise StreamProblem("too_long_empty")
        if seen and not text and finish is None:  # events but no text and no finish: a role chunk then [DONE] is
            raise StreamProblem("server_interrupted")  # how llama.cpp ends a request it interrupted for another
        if not text:
            raise StreamProblem("refused" if finish == "content_filter" else "empty_reply")
        if finish is None:
            raise StreamProblem("unfinished")
        return finish


def prepares_inline(message: object, history: object) -> bool:
    """Whether :meth:`Upstream.prepare` is cheap enough to run on the event loop: a text message and a
    small history (:func:`chatbot.core.history.small_history`, the message's characters counted in). A worker
    thread costs a hop each way on the path to the first token (more in a burst, when the hops queue
    for the GIL); a long paste, a long history or a model switch (which counts a whole history) does not
    belong on the loop, so those still go to a thread."""
    return isinstance(message, str) and small_history(history, len(message))


class _Mailbox:
    """The reader task's events for the consumer: a deque and one waiter, woken by a put or a time-out.

    ``asyncio.wait_for(queue.get(), t)`` costs a task, a future and a timer per wait, once per token."""

    __slots__ = ("_items", "_waiter", "_loop", "draining")

    def __init__(self) -> None:
        self.draining = False  # the reply is done; the reader is reading the rest of the body
        self._items: deque = deque()
        self._waiter: asyncio.Future | None = None
        self._loop = asyncio.get_running_loop()

    def put(self, item: object) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take(self) -> object:
        """The next item, or _EMPTY."""
        return self._items.popleft() if self._items else _EMPTY

    def peek(self) -> object:
        return self._items[0] if self._items else _EMPTY

    async def wait(self, timeout: float) -> None:
        """Until an item is there or ``timeout`` seconds have passed."""
        if self._items:
            return
        waiter = self._waiter = self._loop.create_future()
        timer = self._loop.call_later(timeout, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


def _wake(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _merged(item: TextDelta | ReasoningDelta, mailbox: _Mailbox) -> TextDelta | ReasoningDelta:
    """``item`` joined with the deltas of its kind already waiting behind it: when the app falls behind,
    every consumer gets fewer, larger events (one write, one update) instead of a backlog of tokens."""
    kind = type(item)
    if type(mailbox.peek()) is not kind:
        return item
    parts = [item.text]
    while type(mailbox.peek()) is kind:
        parts.append(mailbox.take().text)  # type: ignore[attr-defined]
    return kind("".join(parts))


async def sse_data(
    chunks: AsyncIterator[bytes], counter: ReplyCounter | None = None
) -> AsyncGenerator[str, None]:
    """The ``data`` of each server-sent event in a byte stream (multi-line data joined with newlines;
    comments, ``event``, ``id`` and ``retry`` fields ignored; CRLF or LF line ends; an event is complete at
    its blank line). With a ``counter``, the body's bytes are counted and an event larger than its limit
    stops the stream (:class:`StreamProblem`)."""
    buffer = b""
    data: list[bytes] = []
    size = 0  # bytes of data in the event being read
    for_event = counter.limits.event_bytes if counter is not None else None
    async for chunk in chunks:
        if counter is not None:
            counter.body_bytes(len(chunk))
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            line = buffer[start:end]
            start = end + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if data:
                    yield b"\n".join(data).decode("utf-8", "replace")
                    data = []
                    size = 0
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
                size += len(value)
        buffer = buffer[start:]
        if for_event is not None and size + len(buffer) > for_event and counter is not None:
            counter.event_too_large()
    # an event the stream ended in the middle of is not dispatched (as the SSE standard says)


async def _drain(raw: AsyncIterator[bytes]) -> None:
    """Read what is left of a body after ``[DONE]`` (normally nothing but the end of the chunked body), so
    the connection can be reused; give up after DRAIN_BYTES or DRAIN_SECONDS (the connection is closed)."""
    left = DRAIN_BYTES
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for rest in raw:
                left -= len(rest)
                if left < 0:
                    return


def _decode(data: str) -> dict:
    """One chunk's JSON as a dict (anything else counts as an empty chunk)."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        log.warning("upstream sent a chunk that is not JSON")
        return {}
    return chunk if isinstance(chunk, dict) else {}


def _stream_error(error: object, request: httpx2.Request) -> openai.APIError:
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message:
        message = "An error occurred during streaming"
    return openai.APIError(message=message, request=request, body=error)


def _price(model: Model, prompt_tokens: int, completion_tokens: int) -> float:
    """A reply's price from the catalogue; a model nobody has priced counts at a deliberately high price."""
    cost = model.cost(prompt_tokens, completion_tokens)
    if cost is None:
        cost = (prompt_tokens * UNKNOWN_PRICE[0] + completion_tokens * UNKNOWN_PRICE[1]) / 1_000_000
    return cost


class _Meter:
    """What one reply used: the upstream's usage report, checked against what streamed in.

    Without a report (a cut, a Stop, a provider that sends none), or with one that claims fewer tokens than
    the text could hold (fewer than one token per UNDER_REPORT_BYTES bytes), the tokens streamed are
    counted; a reply the app stopped at one of its limits costs at least its whole reservation."""

    def __init__(self, prepared: Prepared, counter: ReplyCounter) -> None:
        self.prepared = prepared
        self.counter = counter
        self.usage: Usage | None = None

    def see(self, event: Event) -> None:
        if isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, ErrorEvent) and event.error.kind in REPLY_LIMIT_KINDS:
            self.counter.cut = True

    def totals(self, priced: bool) -> tuple[int, float | None]:
        """(tokens in and out, dollars or None when no budget needs them)."""
        prepared, usage, counter = self.prepared, self.usage, self.counter
        reported = usage.completion_tokens if usage is not None else 0
        completion = reported
        if usage is None or reported * UNDER_REPORT_BYTES < counter.bytes:
            completion = max(reported, counter.completion_tokens())
        if counter.cut:
            completion = max(completion, prepared.max_tokens)
        prompt = usage.prompt_tokens if usage is not None and usage.prompt_tokens else prepared.prompt_tokens
        if not priced:
            return prompt + completion, None
        cost = _price(prepared.model, prompt, completion)
        if usage is not None and usage.cost_source == "upstream" and usage.cost is not None:
            cost = usage.cost if completion == reported else max(usage.cost, cost)
        return prompt + completion, cost


def _events(chunk: dict, splitter: ThinkSplitter, model: Model) -> Iterator[Event]:
    """The events of one decoded chunk (a dict of JSON, from any provider: every field is checked)."""
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        yield _usage(usage, model)
    choices = chunk.get("choices")
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        return  # the usage chunk has none
    choice = choices[0]
    delta = choice.get("delta")
    if isinstance(delta, dict):
        reasoning = _reasoning_text(delta)
        if reasoning:
            yield ReasoningDelta(reasoning)
        content = delta.get("content")
        if content and isinstance(content, str):
            yield from splitter.feed(content)
    finish = choice.get("finish_reason")
    if finish and isinstance(finish, str):
        yield Done(finish)


def _reasoning_text(delta: dict) -> str | None:
    for name in ("reasoning_content", "reasoning"):
        value = delta.get(name)
        if isinstance(value, str) and value:
            return value
    details = delta.get("reasoning_details")
    if isinstance(details, list):
        texts = [d.get("text") or d.get("summary") for d in details if isinstance(d, dict)]
        joined = "".join(t for t in texts if isinstance(t, str))
        return joined or None
    return None


def _usage(usage: dict, model: Model) -> Usage:
    prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    upstream_cost = usage.get("cost")
    if isinstance(upstream_cost, int | float) and not isinstance(upstream_cost, bool):
        return Usage(prompt, completion, float(upstream_cost), "upstream")
    cost = model.cost(prompt, completion)
    return Usage(prompt, completion, cost, "catalogue" if cost is not None else "unknown")


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class ThinkSplitter:
    """Splits ``<think>...</think>`` at the start of streamed content into reasoning deltas.

    Tags may arrive split across chunks, so a possible tag prefix is held back until it is decided."""

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self._state = "start"  # start -> (think -> text) | text
        self._held = ""

    def feed(self, text: str) -> Iterator[TextDelta | ReasoningDelta]:
        if self._state == "text":
            yield TextDelta(text)
            return
        self._held += text
        if self._state == "start":
            stripped = self._held.lstrip()
            if stripped.startswith(self.OPEN):
                self._state = "think"
                self._held = stripped[len(self.OPEN):]
            elif self.OPEN.startswith(stripped):
                return  # still undecided
            else:
                self._state = "text"
                held, self._held = self._held, ""
                yield TextDelta(held)
                return
        if self._state == "think":
            end = self._held.find(self.CLOSE)
            if end >= 0:
                thought, rest = self._held[:end], self._held[end + len(self.CLOSE):]
                self._held = ""
                self._state = "text"
                if thought:
                    yield ReasoningDelta(thought)
                rest = rest.lstrip("\n")
                if rest:
                    yield TextDelta(rest)
                return
            keep = _partial_suffix(self._held, self.CLOSE)
            out, self._held = self._held[: len(self._held) - keep], self._held[len(self._held) - keep:]
            if out:
                yield ReasoningDelta(out)

    def flush(self) -> Iterator[TextDelta | ReasoningDelta]:
        held, self._held = self._held, ""
        if held:
            yield ReasoningDelta(held) if self._state == "think" else TextDelta(held)


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-size:]):
            return size
    return 0


#: Most images one request may carry (attachments and the history's, together).
MAX_IMAGES = 20


def _checked_parts(parts: list, model: Model, max_chars: int) -> list[dict] | Friendly:
    """A message given as content parts, checked: text parts cleaned, images only for a vision model and
    only as data or https URLs, some content, not too much."""
    out: list[dict] = []
    chars = images = 0
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            chars += len(part["text"])
            if part["text"].strip():
                out.append({"type": "text", "text": clean_text(part["text"], max_chars)})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            if not isinstance(url, str) or not url.startswith(("data:image/", "https://")):
                continue
            images += 1
            out.append({"type": "image_url", "image_url": {"url": url}})
    if not out:
        return friendly("empty_message")
    if chars > max_chars:
        return friendly("input_too_long", chars=chars, limit=max_chars)
    if images and not model.vision:
        return friendly("no_vision", model=model.id)
    if images > MAX_IMAGES:
        return friendly("too_many_attachments", limit=MAX_IMAGES)
    return out


def _printable(value: object, limit: int = 60) -> str:
    text = " ".join(str(value).split()) if value is not None else "(none)"
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def drain(events: AsyncIterator[Event]) -> tuple[str, list[Event]]:
    """Collect a stream into (text, non-text events): handy for non-streaming callers and tests."""
    parts: list[str] = []
    others: list[Event] = []
    async for event in events:
        if isinstance(event, TextDelta):
            parts.append(event.text)
        elif not isinstance(event, Idle):
            others.append(event)
    return "".join(parts), others
