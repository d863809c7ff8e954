"""Compare models side by side: one message, several models, their replies streamed together.

:func:`compare` runs one :func:`chatbot.core.conversation.turn` per model (a *column*), concurrently, each
with its own :class:`~chatbot.core.reply.ReplyState` and live :class:`ColumnStats`, and merges their events
into one stream of :class:`Batch` es: everything the columns produced during one tick, so a face makes one
update that carries every column's new text. A column's failure is an error event of that column only;
:meth:`Comparison.stop` cancels one column's task (which closes that column's upstream connection and no
other), :meth:`Comparison.stop_all` all of them.

Limits: a compare of N is admitted all or none (:meth:`chatbot.core.limits.Guard.admit_group`): N messages
counted, N full replies reserved against the spending ceiling up front, each column settling its own
ticket. ``CHATBOT_COMPARE_MAX_COLUMNS`` caps N (0 turns Compare off). After the last column ends the
stream's last batch carries the :class:`Summary`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import openai

from chatbot.core.compared_turns import thread
from chatbot.core.conversation import LOCAL_VISITOR, Message, price, turn
from chatbot.core.errors import Friendly, friendly
from chatbot.core.events import ErrorEvent, Event, Idle, ReasoningDelta, TextDelta
from chatbot.core.history import History
from chatbot.core.limits import Visitor
from chatbot.core.provider import make_client
from chatbot.core.reply import ReplyState
from chatbot.core.tokens import counter_for

if TYPE_CHECKING:
    from chatbot.core.upstream import Admission, Upstream

log = logging.getLogger("switchboard.compare")

#: Shortest stretch between a column's first and last token that gives it a speed (a reply that arrives in one
#: burst has none: its tokens per second would only measure the network).
MIN_STREAM = 0.05
#: Seconds a stopped column's task may take to close its upstream connection before it is left behind.
STOP_WAIT = 5.0


@dataclass(frozen=True, slots=True)
class Stopped:
    """The column was stopped (by the visitor, or because the compare was closed)."""


@dataclass(frozen=True, slots=True)
class ColumnEvent:
    """One event of one column (``index`` in the order the models were asked for)."""

    index: int
    model: str
    event: Event | Stopped


@dataclass(frozen=True, slots=True)
class ColumnStats:
    """A column's figures so far: seconds to the first token (text or reasoning), tokens per second of the
    stream after it, tokens in and out (the provider's report once it came; until then the prompt as counted
    before it was sent and the deltas counted), cost in USD (the provider's, else the catalogue's price of
    those tokens; None while unknown)."""

    model: str
    first_token: float | None
    tokens_per_second: float | None
    tokens_in: int | None
    tokens_out: int
    cost: float | None
    finish_reason: str | None
    error: str | None
    stopped: bool
    ended: bool

    @property
    def cut_by_length(self) -> bool:
        """The provider stopped at the token cap, or the app cut the reply at its size caps."""
        return self.finish_reason == "length" or self.error in ("reply_cap", "reply_too_large")


@dataclass(frozen=True, slots=True)
class Summary:
    """After every column ended: which model was best at what (None when no column qualifies)."""

    fastest_first_token: str | None
    fastest_stream: str | None
    cheapest: str | None
    cut_by_length: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Batch:
    """What the columns produced during one tick (Idle ticks carry no events), and the summary at the end."""

    events: tuple[ColumnEvent, ...]
    summary: Summary | None = None


@dataclass
class Column:
    """One model's reply in a compare."""

    index: int
    name: str
    model: str
    state: ReplyState
    started: float = 0.0
    first_at: float | None = None
    last_at: float | None = None
    chars: int = 0
    counted: int | None = None  # the tokens of what streamed, counted once the column ended without a report
    stopped: bool = False
    task: asyncio.Task | None = field(default=None, repr=False)

    def note(self, event: Event, now: float) -> None:
        if isinstance(event, TextDelta | ReasoningDelta):
            self.chars += len(event.text)
            self.first_at = self.first_at if self.first_at is not None else now
            self.last_at = now

    def stats(self, upstream: Upstream) -> ColumnStats:
        state, usage = self.state, self.state.usage
        if usage is not None:
            tokens_out = usage.completion_tokens
        elif self.state.ended:  # no report (a failure, a Stop): what streamed, counted once
            if self.counted is None:
                streamed = "".join(self.state.reasoning) + self.state.reply
                self.counted = counter_for(self.model).count_text(streamed) if streamed else 0
            tokens_out = self.counted
        else:  # live, until the provider reports: about four characters a token
            tokens_out = (self.chars + 3) // 4
        speed = None
        if self.first_at is not None and self.last_at is not None and self.last_at - self.first_at >= MIN_STREAM:
            speed = max(tokens_out - 1, 0) / (self.last_at - self.first_at)
        tokens_in = usage.prompt_tokens if usage is not None else state.prompt_tokens  # live: as counted
        cost = usage.cost if usage is not None else None
        if cost is None and tokens_in is not None:  # the catalogue's price of the tokens known so far
            model = upstream.resolve(self.name)
            cost = model.cost(tokens_in, tokens_out) if model is not None else None
        return ColumnStats(
            model=self.model, first_token=self.first_at - self.started if self.first_at is not None else None,
            tokens_per_second=speed, tokens_in=tokens_in,
            tokens_out=tokens_out, cost=cost, finish_reason=state.finish_reason,
            error=state.error.error.kind if state.error is not None else None, stopped=self.stopped,
            ended=state.ended,
        )


def summarize(stats: list[ColumnStats]) -> Summary:
    """The summary of ended columns (a stopped or failed column is not fastest nor cheapest)."""
    whole = [s for s in stats if not s.stopped and s.error is None]
    timed = [s for s in whole if s.first_token is not None]
    streamed = [s for s in whole if s.tokens_per_second is not None]
    priced = [s for s in whole if s.cost is not None]
    return Summary(
        fastest_first_token=min(timed, key=lambda s: s.first_token or 0.0).model if timed else None,
        fastest_stream=max(streamed, key=lambda s: s.tokens_per_second or 0.0).model if streamed else None,
        cheapest=min(priced, key=lambda s: s.cost or 0.0).model if priced else None,
        cut_by_length=tuple(s.model for s in stats if s.cut_by_length),
    )


class Comparison:
    """One compare: :meth:`admit`, then iterate it (a stream of :class:`Batch`); stop a column or all of them
    from another task meanwhile. Closing the iteration stops every column still running."""

    def __init__(
        self, upstream: Upstream, message: Message, history: History | list[dict], models: list[str], *,
        visitor: Visitor | None = None, api_key: str | None = None, tick: float = 0.04,
    ) -> None:
        self.upstream = upstream
        self.message = message
        self.history = history
        self.names = [name.strip() if isinstance(name, str) else name for name in models]
        self.visitor = visitor or LOCAL_VISITOR
        self.api_key = api_key
        self.tick = tick
        self.columns: list[Column] = []
        self.refused: Friendly | None = None
        self._admissions: list[Admission] | None = None
        self._client: openai.AsyncOpenAI | None = None
        self._queue: asyncio.Queue[ColumnEvent | int] = asyncio.Queue()  # an int: that column ended
        self._ending: set[asyncio.Task] = set()

    async def admit(self) -> Friendly | None:
        """Check the models and admit every column (all or none); why not, or None. Idempotent."""
        if self._admissions is not None or self.refused is not None:
            return self.refused
        self.refused = await self._admit()
        return self.refused

    async def _admit(self) -> Friendly | None:
        from chatbot.core.upstream import Admission

        upstream, limit = self.upstream, self.upstream.settings.compare_max_columns
        if limit < 2:
            return friendly("compare_off")
        if not 2 <= len(self.names) <= limit:
            return friendly("compare_columns", limit=limit, count=len(self.names))
        models = [upstream.resolve(name) if isinstance(name, str) and name.strip() else None for name in self.names]
        for name, model in zip(self.names, models, strict=True):
            if model is None:
                return friendly("unknown_model", model=str(name)[:60])
        if len({m.id for m in models if m is not None}) < len(models):  # the same model twice
            return friendly("compare_columns", limit=limit, count=len({m.id for m in models if m is not None}))
        api_key, refused = upstream.user_key(self.api_key)
        if refused is not None:
            return refused
        self.visitor = replace(self.visitor, own_key=bool(api_key))
        guard = upstream.guard
        if guard is not None:
            if (refused := await guard.precheck(self.visitor)) is not None:
                return refused
            costs = [price(m, 0, upstream.budget(m)[1]) if upstream.has_budget and m else None for m in models]
            tickets = await guard.admit_group(self.visitor, costs)
            if isinstance(tickets, Friendly):
                return tickets
            self._admissions = [Admission(ticket) for ticket in tickets]
        else:
            self._admissions = [Admission(None) for _ in models]
        self._client = make_client(upstream.settings, api_key=api_key) if api_key else None
        pairs = [(str(name), m) for name, m in zip(self.names, models, strict=True) if m is not None]
        self.columns = [Column(i, name, m.id, ReplyState(m.id)) for i, (name, m) in enumerate(pairs)]
        return None

    async def release(self) -> None:
        """Free the admissions and end the columns of a compare that did not run (idempotent)."""
        for admission in self._admissions or []:
            await self.upstream.release(admission)
        for column in self.columns:
            if column.task is None:
                await column.state.end()

    def stop(self, index: int) -> bool:
        """Stop one column (its upstream connection closes; the others go on). False when it had ended."""
        if not 0 <= index < len(self.columns):
            return False
        column = self.columns[index]
        if column.stopped or column.task is None or column.task.done():
            return False
        column.stopped = True
        column.task.cancel()
        return True

    def stop_all(self) -> None:
        for column in self.columns:
            self.stop(column.index)

    def stats(self) -> list[ColumnStats]:
        return [column.stats(self.upstream) for column in self.columns]

    def history_for(self, model: str) -> History | list[dict]:
        """What ``model``'s column is sent of the history: every earlier compared turn with that model's own
        reply (:func:`chatbot.core.compared_turns.thread`)."""
        if isinstance(self.history, History):
            items = thread(self.history.items, model)
            return self.history if items is self.history.items else replace(self.history, items=items)
        items = thread(self.history, model)
        return list(items) if isinstance(items, list | tuple) else []

    def chosen_history(self, index: int) -> list[dict]:
        """The history to continue with column ``index``'s model: its history, the message and that
        column's reply only (the other columns are not sent)."""
        column = self.columns[index]
        history = self.history_for(column.model)
        base = history.messages if isinstance(history, History) else list(history)
        return [*base, {"role": "user", "content": self.message},
                {"role": "assistant", "content": column.state.reply}]

    def __aiter__(self) -> AsyncIterator[Batch]:
        return self.batches()

    async def batches(self) -> AsyncGenerator[Batch, None]:
        """The merged stream (nothing when :meth:`admit` refused the compare: see :attr:`refused`)."""
        if await self.admit() is not None:
            return
        assert self._admissions is not None
        for column, admission in zip(self.columns, self._admissions, strict=True):
            column.started = time.monotonic()
            column.task = asyncio.ensure_future(self._run(column, admission))
            column.task.add_done_callback(functools.partial(self._unstarted, column, admission))
        try:
            async for batch in self._merged():
                yield batch
        finally:
            self.stop_all()
            await self._settled()

    async def _merged(self) -> AsyncGenerator[Batch, None]:
        loop = asyncio.get_running_loop()
        running, last = len(self.columns), loop.time() - self.tick  # the first update at once
        while running:
            items = [await self._queue.get()]
            deadline = last + self.tick
            while (wait := deadline - loop.time()) > 0 and running - items.count(-1) > 0:
                with contextlib.suppress(TimeoutError):
                    items.append(await asyncio.wait_for(self._queue.get(), wait))
            while not self._queue.empty():
                items.append(self._queue.get_nowait())
            running -= sum(1 for item in items if isinstance(item, int))
            events = tuple(i for i in items if isinstance(i, ColumnEvent) and not isinstance(i.event, Idle))
            last = loop.time()
            yield Batch(events, summarize(self.stats()) if not running else None)

    async def _run(self, column: Column, admission: Admission) -> None:
        """One column: its turn's events into the queue, a :class:`Stopped` when it is cancelled, then its
        index (the end marker). Never raises but cancellation's end."""
        queue, now = self._queue, time.monotonic
        events = turn(
            self.upstream, self.message, self.history_for(column.model), column.name, visitor=self.visitor,
            admission=admission, state=column.state, client=self._client, tick=self.tick,
        )
        try:
            async with contextlib.aclosing(events):
                async for event in events:
                    column.note(event, now())
                    queue.put_nowait(ColumnEvent(column.index, column.model, event))
        except asyncio.CancelledError:
            column.stopped = True
            queue.put_nowait(ColumnEvent(column.index, column.model, Stopped()))
        except Exception:  # pragma: no cover - turn() turns every failure into an event
            log.exception("a compared column failed")
            queue.put_nowait(ColumnEvent(column.index, column.model, column.state.fail(friendly("internal"))))
        finally:
            await self.upstream.release(admission)
            await column.state.end()  # a column cancelled before its turn started: its end callbacks still run
            queue.put_nowait(-1)

    def _unstarted(self, column: Column, admission: Admission, task: asyncio.Task) -> None:
        """A column stopped before its task ran (:meth:`_run` never started): it ends as stopped all the same."""
        if not task.cancelled():
            return
        column.stopped = True
        self._queue.put_nowait(ColumnEvent(column.index, column.model, Stopped()))
        self._queue.put_nowait(-1)
        ending = asyncio.ensure_future(self._abandon(column, admission))
        self._ending.add(ending)
        ending.add_done_callback(self._ending.discard)

    async def _abandon(self, column: Column, admission: Admission) -> None:
        await self.upstream.release(admission)
        await column.state.end()

    async def _settled(self) -> None:
        tasks = [column.task for column in self.columns if column.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_WAIT)
        if self._ending:
            await asyncio.wait(set(self._ending), timeout=STOP_WAIT)
        if self._client is not None:
            await self._client.close()


def compare(
    upstream: Upstream, message: Message, history: History | list[dict], models: list[str], *,
    visitor: Visitor | None = None, api_key: str | None = None, tick: float = 0.04,
) -> Comparison:
    """A compare of ``models`` (2..``CHATBOT_COMPARE_MAX_COLUMNS`` aliases or ids) on ``message`` and
    ``history``: iterate it for its :class:`Batch` es (see the module's docstring)."""
    return Comparison(upstream, message, history, models, visitor=visitor, api_key=api_key, tick=tick)


__all__ = ["Batch", "Column", "ColumnEvent", "ColumnStats", "Comparison", "ErrorEvent", "Stopped", "Summary",
           "compare", "summarize"]
