"""The typed events of one reply, as every face receives them from :func:`chatbot.core.conversation.turn`.

A reply is a stream of these, always ending with :class:`Done` or :class:`ErrorEvent` (:class:`Idle` may come
in between while the provider is silent). :class:`chatbot.core.reply.ReplyState` folds them into the reply.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatbot.core.errors import Friendly


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
