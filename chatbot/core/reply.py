"""One reply as it streams in: the one fold of a reply's events that every reader shares.

The chat view renders a :class:`ReplyState`, the HTTP API stores it (and checkpoints its text while it
streams), the cost meter reads its usage and whether it was cut at a limit. Whoever runs the reply calls
:meth:`ReplyState.end` once it is over, however it ended (complete, failed, cancelled): the callbacks
registered with :meth:`ReplyState.on_end` run then, once (the API's storage is one), as the end-of-response
hooks of simonw/llm's ``Response`` do.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from chatbot.core.errors import REPLY_LIMIT_KINDS, Friendly, failure_text
from chatbot.core.events import Done, ErrorEvent, Event, HistoryTrimmed, ReasoningDelta, TextDelta, Usage
from chatbot.core.i18n import DEFAULT_LANGUAGE

log = logging.getLogger("switchboard.reply")

#: Called with the state once the reply is over (a coroutine function is awaited).
EndCallback = Callable[["ReplyState"], Awaitable[None] | None]


class ReplyState:
    """What one reply is so far: its text and reasoning (lists of the streamed parts, appended in place, so
    a checkpoint may hold the list), the turns dropped from its history, the provider's usage report, and
    how it ended (``done`` or ``error``)."""

    def __init__(self, model: str | None = None) -> None:
        self.model = model
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.trimmed = 0
        self.prompt_tokens: int | None = None  # the prompt as counted before it was sent (the provider's: usage)
        self.usage: Usage | None = None
        self.error: ErrorEvent | None = None
        self.done: Done | None = None
        self.ended = False
        self._on_end: list[EndCallback] = []

    def apply(self, event: Event) -> bool:
        """Take one event; True when the reply changed (an :class:`Idle` changes nothing)."""
        if isinstance(event, TextDelta):
            self.text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            self.reasoning.append(event.text)
        elif isinstance(event, HistoryTrimmed):
            self.trimmed = event.dropped_turns
        elif isinstance(event, Usage):
            self.usage = event
        elif isinstance(event, Done):
            self.done = event
        elif isinstance(event, ErrorEvent):
            self.error = event
        else:
            return False
        return True

    def fail(self, error: Friendly) -> ErrorEvent:
        """End the reply with ``error`` (partial when some text had arrived); the event, to pass on."""
        event = ErrorEvent(error, partial=self.partial)
        self.apply(event)
        return event

    @property
    def reply(self) -> str:
        return "".join(self.text)

    @property
    def partial(self) -> bool:
        """Some of the reply's text has arrived."""
        return bool(self.text)

    @property
    def finished(self) -> bool:
        """The reply came to its end: whole (``done``) or failed (``error``)."""
        return self.done is not None or self.error is not None

    @property
    def complete(self) -> bool:
        """The reply is whole: the provider finished it and nothing failed."""
        return self.done is not None and self.error is None

    @property
    def finish_reason(self) -> str | None:
        return self.done.finish_reason if self.done is not None else None

    @property
    def cut(self) -> bool:
        """The app stopped the reply at one of its limits (its size, its bytes, its time)."""
        return self.error is not None and self.error.error.kind in REPLY_LIMIT_KINDS

    def failure(self, lang: str = DEFAULT_LANGUAGE) -> str | None:
        """What every face says for the failure (the cut-off note first when it was partial), or None."""
        if self.error is None:
            return None
        return failure_text(self.error.error, self.error.partial, lang)

    def on_end(self, callback: EndCallback) -> None:
        """Run ``callback(state)`` when the reply is over (see :meth:`end`)."""
        self._on_end.append(callback)

    async def end(self) -> None:
        """The reply is over: run the end callbacks, once, in the order they were registered. A callback
        that fails is logged and the others still run (a reply is stored even if a limit's release
        failed)."""
        if self.ended:
            return
        self.ended = True
        for callback in self._on_end:
            try:
                result = callback(self)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("a reply's end callback failed")


async def drain(events: AsyncIterator[Event]) -> tuple[str, list[Event]]:
    """Collect a stream into (text, the other events but :class:`Idle`): for non-streaming callers and tests."""
    state = ReplyState()
    others: list[Event] = []
    async for event in events:
        if state.apply(event) and not isinstance(event, TextDelta):
            others.append(event)
    return state.reply, others

