"""One request to the provider, read as typed events: the SDK's client sends it (with its retries and
status errors), the body is read here, chunk by chunk, within the reply's limits.

The body is read by a task of its own that feeds a mailbox, so the consumer wakes up on a short ``tick``
while the provider is silent (an :data:`IDLE` event): that is what lets Gradio notice a closed tab while a
reasoning model thinks, and what enforces the time-outs for the first token and for silence. Whenever the
consumer stops (Stop, a closed tab, a dropped HTTP client, an error), the reader task is cancelled, which
closes the HTTP connection to the provider.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import cast

import httpx2
import openai
import orjson

from chatbot.compat import ShortWaitClient
from chatbot.compat_sdk import AioHttpClient
from chatbot.core.catalogue import Model
from chatbot.core.chunks import ThinkSplitter, chunk_events, decode_chunk, sse_data, stream_error
from chatbot.core.errors import FirstTokenTimeout, IdleTimeout, StreamProblem, friendly, friendly_error
from chatbot.core.events import IDLE, Done, ErrorEvent, Event, ReasoningDelta, TextDelta
from chatbot.core.reply_limits import ReplyCounter
from chatbot.core.settings import Settings

log = logging.getLogger("switchboard.upstream")

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
#: Readers draining a finished reply's body (a reference, so the tasks are not collected midway).
_DRAINING: set[asyncio.Task] = set()


@dataclass(frozen=True)
class Prepared:
    """A request ready to send: the model, the messages within its prompt budget, and the reply's cap."""

    model: Model
    messages: list[dict]
    dropped_turns: int
    prompt_tokens: int
    max_tokens: int
    temperature: float | None = None  # None: not sent (the provider's default)


def make_client(settings: Settings, api_key: str | None = None, **kwargs: object) -> openai.AsyncOpenAI:
    """An ``AsyncOpenAI`` for the configured base URL: one per process (or per visitor's own key)."""
    key = api_key or (settings.api_key.get_secret_value() if settings.api_key else "demo")
    longest_silence = max(settings.first_token_timeout, settings.idle_timeout) + 5
    if "http_client" not in kwargs:
        # The SDK's aiohttp transport (chatbot.compat_sdk: its bodies are parsed in C; see replicas.md,
        # fourth session). The process's shared client keeps a connection alive per concurrent stream (the
        # SDK keeps 100): after a busy minute, the next burst of visitors reuses them instead of opening a
        # connection each (a new connection was ~20% of the app's CPU while 200 visitors arrived at once).
        limits = httpx2.Limits(max_connections=max(1000, settings.max_concurrency),
                               max_keepalive_connections=settings.max_concurrency)
        kwargs["http_client"] = AioHttpClient(limits=limits) if api_key is None else AioHttpClient()
    client = ShortWaitClient(
        api_key=key,
        base_url=settings.base_url,
        max_retries=settings.max_retries,
        timeout=httpx2.Timeout(longest_silence, connect=settings.connect_timeout),
        **kwargs,  # type: ignore[arg-type]
    )
    client.max_retry_wait = settings.max_retry_wait
    return client


async def reply_events(
    settings: Settings, prepared: Prepared, client: openai.AsyncOpenAI, tick: float, counter: ReplyCounter
) -> AsyncGenerator[Event, None]:
    """The provider's answer to one request as events, ending with :class:`Done` or :class:`ErrorEvent`
    (:data:`IDLE` after each ``tick`` of silence). The body is read by a task of its own (:func:`_read`);
    whenever the consumer stops, that task is cancelled, which closes the connection, unless the reply was
    done and the task is draining the body's end (then the connection goes back to the pool)."""
    loop = asyncio.get_running_loop()
    mailbox = _Mailbox()
    reader = asyncio.create_task(_read(client, prepared, mailbox, counter))
    last = loop.time()
    deadline = last + counter.limits.seconds
    got_token = got_text = False
    try:
        while True:
            item = mailbox.take()
            if item is _EMPTY:
                limit = settings.idle_timeout if got_token else settings.first_token_timeout
                now = loop.time()
                remaining = limit - (now - last)
                if now >= deadline:
                    yield _out_of_time(counter, got_text)
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
                    yield _out_of_time(counter, got_text)
                    return
                got_token = True
                got_text = got_text or isinstance(item, TextDelta)
                item = _merged(item, mailbox)
            yield cast(Event, item)  # the reader puts only events, exceptions and _END
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


def _out_of_time(counter: ReplyCounter, partial: bool) -> ErrorEvent:
    counter.cut = True
    return ErrorEvent(friendly("reply_timeout", seconds=counter.limits.seconds), partial=partial)


async def _read(
    client: openai.AsyncOpenAI, prepared: Prepared, mailbox: _Mailbox, counter: ReplyCounter
) -> None:
    model = prepared.model
    cap: dict[str, float] = {"max_completion_tokens" if model.reasoning else "max_tokens": prepared.max_tokens}
    if prepared.temperature is not None:
        cap["temperature"] = prepared.temperature
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
        http = await client.post("/chat/completions", cast_to=httpx2.Response, content=body, stream=True,
                                 options={"timeout": _stream_timeout(client.timeout)})
        try:  # closing a response that was not read to its end closes the connection: the provider stops
            raw = http.aiter_bytes()
            finish = await _relayed(http, raw, prepared, mailbox, counter)
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


def _stream_timeout(timeout: float | httpx2.Timeout | None) -> httpx2.Timeout:
    """The client's time-outs for a reply's request, without the one for reading: the reply's silences are
    timed by :func:`reply_events` (first token, idle, the whole reply), which closes the connection, and a read
    time-out would only re-arm a timer for every packet of the body."""
    if isinstance(timeout, httpx2.Timeout):
        return httpx2.Timeout(connect=timeout.connect, read=None, write=timeout.write, pool=timeout.pool)
    return httpx2.Timeout(None, connect=timeout)


async def _relayed(
    http: httpx2.Response, raw: AsyncIterator[bytes], prepared: Prepared, mailbox: _Mailbox, counter: ReplyCounter,
) -> str | None:
    """:func:`_relay`, with a body cut before its first byte after a long prompt taken as a length refusal:
    how llama-cpp-python refuses a streaming prompt past its window (llama.cpp's server: an empty body)."""
    try:
        return await _relay(http, raw, prepared, mailbox, counter)
    except (httpx2.RemoteProtocolError, openai.APIConnectionError) as exc:
        if counter.body or prepared.prompt_tokens < LENGTH_SUSPECT_TOKENS or friendly_error(exc).kind != "cut":
            raise
        raise StreamProblem("too_long_empty") from None


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
            chunk = decode_chunk(data)
            if chunk.get("error"):  # an error sent inside a 200 stream, as the SDK reports it
                raise stream_error(chunk["error"], http.request)
            for event in chunk_events(chunk, splitter, prepared.model):
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
