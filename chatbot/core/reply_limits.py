"""What one reply may take, whatever the provider does: tokens, bytes and time.

A provider may ignore ``max_tokens``, stream forever, or send one enormous chunk. The stream reader
(:mod:`chatbot.core.upstream`) feeds every streamed piece of text to a :class:`ReplyCounter`, which raises
:class:`~chatbot.core.errors.StreamProblem` once the reply passes its cap (plus a small margin) or a size
limit, so the reader closes the connection and the visitor keeps what arrived before.

Counting stays O(chunk): the counter adds up UTF-8 bytes, and tokenises only when the bytes seen could
hold more tokens than the cap allows. A byte-level BPE token is at least one byte, so ``bytes * margin``
bounds the token count from above; after each exact count the next one is due only once enough new bytes
arrived to pass the cap even at one token per byte. A reply well under its cap is never tokenised while
it streams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from chatbot.core.errors import StreamProblem
from chatbot.core.tokens import TokenCounter

#: Tokens a reply may run past its cap before it is stopped: a provider's count and ours differ a little.
CAP_MARGIN = 0.05
MIN_CAP_MARGIN = 16
#: Largest single server-sent event (a normal chunk is a few hundred bytes).
MAX_EVENT_BYTES = 256 * 1024
#: Reply text (answer and reasoning) per token of the cap, and at least this much whatever the cap.
REPLY_BYTES_PER_TOKEN = 32
MIN_REPLY_BYTES = 512 * 1024
#: Raw response body per token of the cap (JSON around each token), and at least this much.
BODY_BYTES_PER_TOKEN = 2048
MIN_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ReplyLimits:
    """The limits of one reply: ``cap`` is the ``max_tokens`` asked for, ``tokens`` what stops it."""

    cap: int
    tokens: int
    event_bytes: int
    reply_bytes: int
    body_bytes: int
    seconds: float

    @classmethod
    def for_cap(cls, cap: int, seconds: float) -> ReplyLimits:
        return cls(
            cap=cap,
            tokens=cap + max(MIN_CAP_MARGIN, math.ceil(cap * CAP_MARGIN)),
            event_bytes=MAX_EVENT_BYTES,
            reply_bytes=max(MIN_REPLY_BYTES, cap * REPLY_BYTES_PER_TOKEN),
            body_bytes=max(MIN_BODY_BYTES, cap * BODY_BYTES_PER_TOKEN),
            seconds=seconds,
        )


def size_text(size: int) -> str:
    """``256 KB``, ``16 MB``: a byte count for a message."""
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):g} MB"
    return f"{size / 1024:g} KB"


class ReplyCounter:
    """Counts what one reply streamed in and stops it at its limits (see the module's docstring)."""

    __slots__ = ("limits", "counter", "bytes", "body", "tokens", "_pending", "_next_check", "cut")

    def __init__(self, limits: ReplyLimits, counter: TokenCounter) -> None:
        self.limits = limits
        self.counter = counter
        self.bytes = 0  # UTF-8 bytes of reply text (answer and reasoning)
        self.body = 0  # raw response body bytes
        self.tokens = 0  # tokens of the text counted so far (the rest is pending)
        self._pending: list[str] = []
        self._next_check = self._bytes_before_cap()
        self.cut = False  # stopped at a limit

    def _bytes_before_cap(self) -> int:
        """Bytes more that cannot take the count past the cap (at most ``margin`` tokens a byte)."""
        return self.bytes + int((self.limits.tokens - self.tokens) / self.counter.margin)

    def body_bytes(self, size: int) -> None:
        """``size`` more bytes of the raw body arrived."""
        self.body += size
        if self.body > self.limits.body_bytes:
            self._stop("reply_too_large", size=size_text(self.limits.body_bytes))

    def event_too_large(self) -> None:
        self._stop("reply_too_large", size=size_text(self.limits.event_bytes))

    def add(self, text: str) -> None:
        """A piece of reply text is about to be passed on; raises StreamProblem when it may not be."""
        size = len(text.encode("utf-8", "surrogatepass"))
        if self.bytes + size > self.limits.reply_bytes:
            self._stop("reply_too_large", size=size_text(self.limits.reply_bytes))
        self.bytes += size
        self._pending.append(text)
        if self.bytes > self._next_check:
            self._count_pending()
            if self.tokens > self.limits.tokens:
                self._stop("reply_cap", limit=self.limits.cap)
            self._next_check = self._bytes_before_cap()

    def _count_pending(self) -> None:
        if self._pending:
            self.tokens += self.counter.count_text("".join(self._pending))
            self._pending.clear()

    def completion_tokens(self) -> int:
        """The tokens streamed, counted (what is still pending is tokenised now, once)."""
        self._count_pending()
        return self.tokens

    def _stop(self, kind: str, **params: object) -> None:
        self.cut = True
        raise StreamProblem(kind, **params)
