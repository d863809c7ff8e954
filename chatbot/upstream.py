"""The chat core: one request to an OpenAI-compatible upstream, streamed as typed events.

The Gradio UI and the HTTP API both consume :meth:`Upstream.stream` and reshape its events. Nothing
escapes it as an exception: every failure becomes an :class:`ErrorEvent` carrying a friendly message.

The SDK stream is read by a task of its own that feeds a queue, so the consumer can wake up on a short
``tick`` while the upstream is silent (an :data:`IDLE` event). That is what lets Gradio notice a closed
tab while a reasoning model thinks, and what lets the time-outs for the first token and for silence be
enforced. Whenever the consumer stops (Stop, a closed tab, a dropped HTTP client, an error), the reader
task is cancelled inside ``async with stream:``, which closes the HTTP connection to the upstream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx2
import openai

from .catalogue import Model
from .config import Settings
from .errors import FirstTokenTimeout, Friendly, IdleTimeout, friendly_error, render
from .history import MessageTooLong, trim_history
from .tokens import counter_for

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
Event = TextDelta | ReasoningDelta | Usage | HistoryTrimmed | Done | ErrorEvent | Idle
_END = object()


class _Client(openai.AsyncOpenAI):
    """The SDK's client with one change: a ``Retry-After`` longer than ``max_retry_wait`` is not waited
    out (the person is told when to try again instead). Retries stay the SDK's own, bounded, and happen
    only before the first token, since they wrap the request and not the streamed body."""

    max_retry_wait: float = 5.0

    def _should_retry(self, response: httpx2.Response) -> bool:
        wait = self._parse_retry_after_header(response.headers)
        if wait is not None and wait > self.max_retry_wait:
            return False
        return super()._should_retry(response)


def make_client(settings: Settings, api_key: str | None = None, **kwargs: object) -> openai.AsyncOpenAI:
    """An ``AsyncOpenAI`` for the configured base URL: one per process (or per visitor's own key)."""
    key = api_key or (settings.api_key.reveal() if settings.api_key else "demo")
    longest_silence = max(settings.first_token_timeout, settings.idle_timeout) + 5
    client = _Client(
        api_key=key,
        base_url=settings.base_url,
        max_retries=settings.max_retries,
        timeout=httpx2.Timeout(longest_silence, connect=settings.connect_timeout),
        **kwargs,  # type: ignore[arg-type]
    )
    client.max_retry_wait = settings.max_retry_wait
    return client


@dataclass(frozen=True)
class Prepared:
    model: Model
    messages: list[dict]
    dropped_turns: int
    prompt_tokens: int
    max_tokens: int


class Upstream:
    """Builds requests within each model's token budget and streams the replies as events."""

    def __init__(self, settings: Settings, client: openai.AsyncOpenAI | None = None) -> None:
        self.settings = settings
        self.catalogue = settings.catalogue
        self.client = client or make_client(settings)

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

    def prepare(self, message: str, history: list[dict], model_name: str | None) -> Prepared | Friendly:
        """The messages to send (system prompt, trimmed history, new message), or why nothing is sent."""
        model = self.resolve(model_name)
        if model is None:
            return Friendly("unknown_model", render("unknown_model", model=_printable(model_name)))
        if not isinstance(message, str) or not message.strip():
            return Friendly("empty_message", render("empty_message"))
        budget, reply = self.budget(model)
        system = [{"role": "system", "content": self.settings.system_prompt}] if self.settings.system_prompt else []
        messages = system + list(history) + [{"role": "user", "content": message}]
        try:
            trimmed = trim_history(messages, budget, counter_for(model.id).count)
        except MessageTooLong as exc:
            return Friendly(
                "message_too_long",
                render("message_too_long", model=model.id, tokens=exc.tokens, budget=exc.budget),
            )
        return Prepared(model, trimmed.messages, trimmed.dropped_turns, trimmed.tokens, reply)

    async def stream(
        self,
        message: str,
        history: list[dict],
        model_name: str | None,
        *,
        client: openai.AsyncOpenAI | None = None,
        tick: float = 0.04,
    ) -> AsyncIterator[Event]:
        """Stream one reply as events. Never raises (but for cancellation); always ends with
        :class:`Done` or :class:`ErrorEvent`. Prompt building runs in a worker thread (tokenising a long
        history is CPU work that must not block the event loop)."""
        try:
            prepared = await asyncio.to_thread(self.prepare, message, history, model_name)
        except Exception as exc:  # pragma: no cover - prepare is total, this is a safety net
            log.error("could not prepare a request: %s", type(exc).__name__)
            prepared = Friendly("internal", render("internal"))
        if isinstance(prepared, Friendly):
            yield ErrorEvent(prepared, partial=False)
            return
        if prepared.dropped_turns:
            yield HistoryTrimmed(prepared.dropped_turns)
        async for event in self._stream_prepared(prepared, client or self.client, tick):
            yield event

    async def _stream_prepared(
        self, prepared: Prepared, client: openai.AsyncOpenAI, tick: float
    ) -> AsyncIterator[Event]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        reader = asyncio.create_task(self._read(client, prepared, queue))
        last = loop.time()
        got_token = got_text = False
        try:
            while True:
                try:
                    item = queue.get_nowait()
                except asyncio.QueueEmpty:
                    limit = self.settings.idle_timeout if got_token else self.settings.first_token_timeout
                    remaining = limit - (loop.time() - last)
                    if remaining <= 0:
                        timeout = IdleTimeout(limit) if got_token else FirstTokenTimeout(limit)
                        yield ErrorEvent(friendly_error(timeout), partial=got_text)
                        return
                    try:
                        item = await asyncio.wait_for(queue.get(), min(tick, remaining))
                    except TimeoutError:
                        yield IDLE
                        continue
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    yield ErrorEvent(friendly_error(item, model=prepared.model.id), partial=got_text)
                    return
                if isinstance(item, TextDelta | ReasoningDelta):
                    last = loop.time()
                    got_token = True
                    got_text = got_text or isinstance(item, TextDelta)
                yield item
        finally:
            if not reader.done():
                reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def _read(self, client: openai.AsyncOpenAI, prepared: Prepared, queue: asyncio.Queue) -> None:
        model = prepared.model
        cap = {"max_completion_tokens" if model.reasoning else "max_tokens": prepared.max_tokens}
        try:
            stream = await client.chat.completions.create(
                model=model.id,
                messages=prepared.messages,  # type: ignore[arg-type]
                stream=True,
                stream_options={"include_usage": True},
                **cap,  # type: ignore[arg-type]
            )
            async with stream:  # closing the stream closes the connection: the provider stops
                splitter = ThinkSplitter()
                finish: str | None = None
                async for chunk in stream:
                    for event in _events(chunk, splitter, model):
                        if isinstance(event, Done):
                            finish = event.finish_reason
                        else:
                            queue.put_nowait(event)
                for event in splitter.flush():
                    queue.put_nowait(event)
            queue.put_nowait(Done(finish))
            queue.put_nowait(_END)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("upstream request failed: %s", type(exc).__name__)
            queue.put_nowait(exc)


def _events(chunk: object, splitter: ThinkSplitter, model: Model) -> Iterator[Event]:
    usage = getattr(chunk, "usage", None)
    if usage is not None:
        yield _usage(usage, model)
    choices = getattr(chunk, "choices", None)
    if not choices:  # the usage chunk has none
        return
    choice = choices[0]
    delta = choice.delta
    if delta is not None:
        reasoning = _reasoning_text(delta)
        if reasoning:
            yield ReasoningDelta(reasoning)
        if delta.content:
            yield from splitter.feed(delta.content)
    if choice.finish_reason:
        yield Done(choice.finish_reason)


def _reasoning_text(delta: object) -> str | None:
    extra = getattr(delta, "model_extra", None) or {}
    for name in ("reasoning_content", "reasoning"):
        value = extra.get(name)
        if isinstance(value, str) and value:
            return value
    details = extra.get("reasoning_details")
    if isinstance(details, list):
        texts = [d.get("text") or d.get("summary") for d in details if isinstance(d, dict)]
        joined = "".join(t for t in texts if isinstance(t, str))
        return joined or None
    return None


def _usage(usage: object, model: Model) -> Usage:
    prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion = int(getattr(usage, "completion_tokens", 0) or 0)
    extra = getattr(usage, "model_extra", None) or {}
    upstream_cost = extra.get("cost")
    if isinstance(upstream_cost, int | float) and not isinstance(upstream_cost, bool):
        return Usage(prompt, completion, float(upstream_cost), "upstream")
    cost = model.cost(prompt, completion)
    return Usage(prompt, completion, cost, "catalogue" if cost is not None else "unknown")


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
