"""What a provider's streamed answer means: its server-sent events' ``data``, each chunk's JSON, and the
typed events a chunk carries (text, reasoning, usage, the finish reason), read from any provider's fields.

Pure parsing: no network and no state beyond :class:`ThinkSplitter`'s (``<think>`` tags split across chunks).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterator

import httpx2
import openai
import orjson

from chatbot.core.catalogue import Model
from chatbot.core.events import Done, Event, ReasoningDelta, TextDelta, Usage
from chatbot.core.reply_limits import ReplyCounter

log = logging.getLogger("switchboard.upstream")


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


def decode_chunk(data: str) -> dict:
    """One chunk's JSON as a dict (anything else counts as an empty chunk)."""
    try:
        chunk = orjson.loads(data)
    except orjson.JSONDecodeError:
        log.warning("upstream sent a chunk that is not JSON")
        return {}
    return chunk if isinstance(chunk, dict) else {}


def stream_error(error: object, request: httpx2.Request) -> openai.APIError:
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message:
        message = "An error occurred during streaming"
    return openai.APIError(message=message, request=request, body=error)


def chunk_events(chunk: dict, splitter: ThinkSplitter, model: Model) -> Iterator[Event]:
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
