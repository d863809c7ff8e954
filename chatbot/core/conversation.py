"""One conversation turn, the same for every face: the chat tab, gradio_client's ``/chat``, the HTTP API
and its WebSocket all call :func:`turn` and only translate its events.

A turn checks the visitor's key and limits, builds the request within the model's budget (the history is
the client's or a stored conversation's), streams the provider's reply (:mod:`chatbot.core.provider`),
retries once with half the prompt when a server answers a long prompt with nothing, and settles the
limits with what the reply cost (:class:`Meter`, which reads the turn's :class:`ReplyState`). Nothing
escapes it as an exception but cancellation: every failure is an :class:`ErrorEvent`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator
from dataclasses import replace
from typing import TYPE_CHECKING

import openai

from chatbot.core.catalogue import Model
from chatbot.core.errors import Friendly, friendly, store_failure
from chatbot.core.events import Done, ErrorEvent, Event, HistoryTrimmed
from chatbot.core.history import History
from chatbot.core.limits import UNKNOWN_PRICE, Ticket, Visitor
from chatbot.core.params import Params
from chatbot.core.provider import Prepared, make_client, reply_events
from chatbot.core.reply import ReplyState
from chatbot.core.reply_limits import ReplyCounter, ReplyLimits
from chatbot.core.tokens import counter_for

if TYPE_CHECKING:
    from chatbot.core.upstream import Admission, Upstream

log = logging.getLogger("switchboard.upstream")

LOCAL_VISITOR = Visitor("local")
#: A usage report claiming fewer completion tokens than one per this many streamed bytes is not believed.
UNDER_REPORT_BYTES = 8

Message = str | list[dict]
Request = tuple[Message, History | list[dict], str | None, Params | None]


async def turn(
    upstream: Upstream,
    message: Message,
    history: History | list[dict],
    model_name: str | None,
    *,
    visitor: Visitor | None = None,
    api_key: str | None = None,
    admission: Admission | None = None,
    state: ReplyState | None = None,
    attempts: int = 1,
    client: openai.AsyncOpenAI | None = None,
    tick: float = 0.04,
    params: Params | None = None,
) -> AsyncGenerator[Event, None]:
    """One reply's events, each applied to ``state`` before it is passed on; always ends with
    :class:`Done` or :class:`ErrorEvent`, then :meth:`ReplyState.end` (however the turn ends: complete,
    failed, closed or cancelled).

    ``message`` is text or OpenAI content parts; ``history`` the client's or a stored conversation's
    (see :meth:`Upstream.prepare`). ``visitor`` is whom the limits count; ``api_key`` a visitor's own key,
    used for this request only through a client of its own (never stored, never shared), which also
    exempts it from the owner's quotas. ``admission`` is one from :meth:`Upstream.admit` (the limits were
    checked already). A failure of the app's own store (the limits' Redis) before anything streamed is tried
    again, up to ``attempts`` times in all (each of its clients reconnects after its first failure).
    ``params`` are the chat's own settings (system prompt, temperature, reply length; see
    :mod:`chatbot.core.params`)."""
    state = state if state is not None else ReplyState()
    request: Request = (message, history, model_name, params)
    try:
        for attempt in range(1, attempts + 1):
            started = False
            try:
                events = upstream.metrics.observed(
                    _stream(upstream, request, state, visitor, api_key, admission, client, tick),
                    _model_label(upstream, model_name),
                )
                async with contextlib.aclosing(events):
                    async for event in events:
                        started = True
                        state.apply(event)
                        yield event
                break
            except Exception as exc:  # a failure of the app itself (its Redis): an error event, logged
                if store_failure(exc) and not started and attempt < attempts:
                    log.warning("the shared store failed (%s); trying again", type(exc).__name__)
                    continue
                log.exception("a reply failed")
                if not state.complete:  # else the reply was whole; only its accounting failed afterwards
                    yield state.fail(friendly("store_unavailable" if store_failure(exc) else "internal"))
                break
    finally:
        await state.end()


def _model_label(upstream: Upstream, model_name: str | None) -> str:
    """The metrics' ``model`` label: the model's id when the catalogue offers it (configured or listed by the
    provider), else ``other``: with ``CHATBOT_ALLOW_ANY_MODEL`` a request may name any id, and a label per
    name a visitor invents would grow the metrics without bound."""
    if not isinstance(model_name, str | None):  # a browser's payload; the turn refuses it with a message
        return "other"
    name = model_name if model_name and model_name.strip() else upstream.catalogue.default
    model = upstream.catalogue.resolve(name, allow_any=False)
    return model.id if model is not None else "other"


async def _stream(
    upstream: Upstream, request: Request, state: ReplyState, visitor: Visitor | None, api_key: str | None,
    admission: Admission | None, client: openai.AsyncOpenAI | None, tick: float,
) -> AsyncGenerator[Event, None]:
    """One try of a turn: key and limits, the request, the reply, and the limits settled."""
    guard = upstream.guard
    if admission is None:
        api_key, refused = upstream.user_key(api_key)
        if refused is not None:
            yield ErrorEvent(refused, partial=False)
            return
        visitor = replace(visitor or LOCAL_VISITOR, own_key=bool(api_key))
        if guard is not None and (refused := await guard.precheck(visitor)) is not None:
            yield ErrorEvent(refused, partial=False)
            return
    else:
        api_key = None
    prepared = await upstream.prepared(*request)
    ticket: Ticket | Friendly | None = admission.ticket if admission is not None else None
    if not isinstance(prepared, Friendly):
        if admission is None and guard is not None:
            ticket = await guard.admit(visitor or LOCAL_VISITOR, upstream.worst_cost(prepared))
            prepared = ticket if isinstance(ticket, Friendly) else prepared
        elif isinstance(ticket, Ticket) and guard is not None:
            prepared = await guard.reserve(ticket, upstream.worst_cost(prepared)) or prepared
    if isinstance(prepared, Friendly):
        await upstream.release(admission)
        yield ErrorEvent(prepared, partial=False)
        return
    own_client = make_client(upstream.settings, api_key=api_key) if api_key else None
    limits = ReplyLimits.for_cap(prepared.max_tokens, upstream.settings.reply_timeout)
    state.prompt_tokens = prepared.prompt_tokens
    meter = Meter(prepared, ReplyCounter(limits, counter_for(prepared.model.id)), state)
    try:
        events = _attempts(upstream, prepared, request, own_client or client or upstream.client, tick, meter)
        async with contextlib.aclosing(events):
            async for event in events:
                yield event
    finally:
        if own_client is not None:
            await own_client.close()
        if isinstance(ticket, Ticket) and guard is not None:
            await guard.settle(ticket, *meter.totals(upstream.has_budget))


async def _attempts(
    upstream: Upstream, prepared: Prepared, request: Request, client: openai.AsyncOpenAI, tick: float,
    meter: Meter,
) -> AsyncGenerator[Event, None]:
    """The reply's events. An empty answer to a long request is how some servers (llama.cpp) refuse a
    prompt longer than the model's real window: it is retried once with the prompt trimmed to half."""
    if prepared.dropped_turns:
        yield HistoryTrimmed(prepared.dropped_turns)
    settings = upstream.settings
    retry: Prepared | Friendly | None = None
    async with contextlib.aclosing(reply_events(settings, prepared, client, tick, meter.counter)) as events:
        async for event in events:
            if isinstance(event, ErrorEvent) and event.error.kind == "too_long_empty":
                retry = await upstream.prepared(*request, prompt_budget=prepared.prompt_tokens // 2)
                if isinstance(retry, Prepared) and retry.dropped_turns > prepared.dropped_turns:
                    break
                retry = None
            yield event
    if not isinstance(retry, Prepared):
        return
    log.info("empty answer to a %d-token prompt: retried with %d", prepared.prompt_tokens, retry.prompt_tokens)
    meter.prepared = retry
    yield HistoryTrimmed(retry.dropped_turns)
    async with contextlib.aclosing(reply_events(settings, retry, client, tick, meter.counter)) as events:
        async for event in events:
            if isinstance(event, Done):  # the shorter prompt fits: later requests are trimmed to it at once
                learned, model = upstream.learned_budget, retry.model.id
                learned[model] = min(learned.get(model, retry.prompt_tokens), prepared.prompt_tokens // 2)
            yield event


def price(model: Model, prompt_tokens: int, completion_tokens: int) -> float:
    """A reply's price from the catalogue; a model nobody has priced counts at a deliberately high price."""
    cost = model.cost(prompt_tokens, completion_tokens)
    if cost is None:
        cost = (prompt_tokens * UNKNOWN_PRICE[0] + completion_tokens * UNKNOWN_PRICE[1]) / 1_000_000
    return cost


class Meter:
    """What one reply used: the provider's usage report (read from the turn's :class:`ReplyState`), checked
    against what streamed in (the :class:`ReplyCounter`).

    Without a report (a cut, a Stop, a provider that sends none), or with one that claims fewer tokens than
    the text could hold (fewer than one token per UNDER_REPORT_BYTES bytes), the tokens streamed are
    counted; a reply the app stopped at one of its limits costs at least its whole reservation."""

    def __init__(self, prepared: Prepared, counter: ReplyCounter, state: ReplyState) -> None:
        self.prepared = prepared
        self.counter = counter
        self.state = state

    def totals(self, priced: bool) -> tuple[int, float | None]:
        """(tokens in and out, dollars or None when no budget needs them)."""
        prepared, usage, counter = self.prepared, self.state.usage, self.counter
        reported = usage.completion_tokens if usage is not None else 0
        completion = reported
        if usage is None or reported * UNDER_REPORT_BYTES < counter.bytes:
            completion = max(reported, counter.completion_tokens())
        if counter.cut or self.state.cut:
            completion = max(completion, prepared.max_tokens)
        prompt = usage.prompt_tokens if usage is not None and usage.prompt_tokens else prepared.prompt_tokens
        if not priced:
            return prompt + completion, None
        cost = price(prepared.model, prompt, completion)
        if usage is not None and usage.cost_source == "upstream" and usage.cost is not None:
            cost = usage.cost if completion == reported else max(usage.cost, cost)
        return prompt + completion, cost
