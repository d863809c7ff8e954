"""What an operator watches: replies, their speed, failures and spending, in Prometheus' text format.

One :class:`Metrics` per app (its own ``CollectorRegistry``, so two apps in one process count apart). The
conversation core feeds it through :meth:`Metrics.observed`, which wraps a reply's event stream and reads
every event once; the store and the limits report their failures and refusals through :meth:`store_error`
and the refusals seen in the stream. Counts are this process's: with several replicas, sum them in the
query (``sum by (model) (...)``). Model labels are the ids the catalogue offers (configured or listed by
the provider); any other name a request gives counts as ``other``, so visitors cannot grow the labels.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from chatbot.core.error_kinds import KINDS
from chatbot.core.events import Done, ErrorEvent, Event, ReasoningDelta, TextDelta, Usage

#: Error kinds that are the app's own limits refusing a request (``switchboard_refusals_total{limit}``).
REFUSAL_KINDS = frozenset({
    "limit_messages", "limit_tokens", "limit_one_at_a_time", "limit_capacity", "limit_budget", "need_user_key",
})
#: Error kinds that are the provider's failure (``switchboard_upstream_errors_total{kind}``).
UPSTREAM_KINDS = frozenset({
    "auth", "no_balance", "refused", "model_not_found", "too_long", "rate_limited", "rate_limited_soon",
    "overloaded", "timeout", "first_token_timeout", "idle_timeout", "connection", "cut", "upstream_error",
    "bad_request", "reply_cap", "reply_too_large", "reply_timeout", "not_event_stream", "empty_reply",
    "unfinished", "too_long_empty", "server_interrupted",
})
#: Error kinds of the app's storage (``switchboard_store_errors_total{kind}``).
STORE_KINDS = frozenset({"store_unavailable", "not_saved"})
#: The rest: the visitor's own request refused before anything was sent (a bad model name, an empty or too
#: long message, an attachment) or the app stopping; they count as replies with ``outcome="rejected"``.
REQUEST_KINDS = frozenset(KINDS) - REFUSAL_KINDS - UPSTREAM_KINDS - STORE_KINDS

TTFT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
DURATION_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class Metrics:
    """The app's metrics; :meth:`text` is what ``GET /metrics`` serves."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.active = Gauge("switchboard_active_streams", "Replies streaming now.", registry=registry)
        self.ttft = Histogram(
            "switchboard_time_to_first_token_seconds", "From the request to the reply's first token (text or "
            "thinking).", ["model"], buckets=TTFT_BUCKETS, registry=registry,
        )
        self.duration = Histogram(
            "switchboard_reply_duration_seconds", "From the request to the reply's end (complete, failed or "
            "stopped).", ["model"], buckets=DURATION_BUCKETS, registry=registry,
        )
        self.replies = Counter(
            "switchboard_replies", "Replies by how they ended: complete, error (the provider's or the store's), "
            "refused (a limit), rejected (the request itself), stopped (the visitor left or pressed Stop).",
            ["model", "outcome"], registry=registry,
        )
        self.upstream_errors = Counter(
            "switchboard_upstream_errors", "Replies the provider failed, by error kind.", ["kind"], registry=registry,
        )
        self.refusals = Counter(
            "switchboard_refusals", "Requests the app's limits refused, by limit.", ["limit"], registry=registry,
        )
        self.store_errors = Counter(
            "switchboard_store_errors", "Failures of the conversation store, by kind.", ["kind"], registry=registry,
        )
        self.tokens = Counter(
            "switchboard_tokens", "Tokens used, as the provider reported them (prompt or completion).",
            ["direction"], registry=registry,
        )
        self.spend = Counter("switchboard_spend_usd", "Dollars spent, as reported or priced.", registry=registry)
        self.tokens_today = Gauge(
            "switchboard_tokens_today", "Tokens used since midnight UTC (this process).", registry=registry,
        )
        self.spend_today = Gauge(
            "switchboard_spend_today_usd", "Dollars spent since midnight UTC (this process).", registry=registry,
        )
        self._day = _today()

    def text(self) -> bytes:
        """The exposition (text format 0.0.4)."""
        self._roll_day()
        return generate_latest(self.registry)

    def store_error(self, kind: str = "store_unavailable") -> None:
        self.store_errors.labels(kind).inc()

    def refused(self, kind: str) -> None:
        """A request refused before it became a reply (the HTTP API's admission, before anything is stored)."""
        if kind in REFUSAL_KINDS:
            self.refusals.labels(kind).inc()

    async def observed(self, events: AsyncGenerator[Event, None], model: str) -> AsyncGenerator[Event, None]:
        """``events`` unchanged, counted on the way (a reply ends at :class:`Done`, an :class:`ErrorEvent`, or
        when the consumer stops reading: ``stopped``)."""
        started = time.perf_counter()
        first = True
        outcome = "stopped"
        self.active.inc()
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    if first and isinstance(event, TextDelta | ReasoningDelta):
                        first = False
                        self.ttft.labels(model).observe(time.perf_counter() - started)
                    elif isinstance(event, Usage):
                        self._used(event)
                    elif isinstance(event, Done):
                        outcome = "complete"
                    elif isinstance(event, ErrorEvent):
                        outcome = self._failed(event.error.kind)
                    yield event
        finally:
            self.active.dec()
            self.duration.labels(model).observe(time.perf_counter() - started)
            self.replies.labels(model, outcome).inc()

    def _failed(self, kind: str) -> str:
        if kind in REFUSAL_KINDS:
            self.refusals.labels(kind).inc()
            return "refused"
        if kind in UPSTREAM_KINDS:
            self.upstream_errors.labels(kind).inc()
            return "error"
        if kind in STORE_KINDS:
            self.store_errors.labels(kind).inc()
            return "error"
        return "rejected"

    def _used(self, usage: Usage) -> None:
        self._roll_day()
        self.tokens.labels("prompt").inc(usage.prompt_tokens)
        self.tokens.labels("completion").inc(usage.completion_tokens)
        self.tokens_today.inc(usage.prompt_tokens + usage.completion_tokens)
        if usage.cost is not None:
            self.spend.inc(usage.cost)
            self.spend_today.inc(usage.cost)

    def _roll_day(self) -> None:
        today = _today()
        if today != self._day:
            self._day = today
            self.tokens_today.set(0)
            self.spend_today.set(0)


def _today() -> str:
    return datetime.now(UTC).date().isoformat()
