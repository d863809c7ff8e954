"""Compare models side by side (chatbot/core/compare.py): one message, several models streamed together over
real HTTP to the fake upstream, which serves each model its own speed or failure (``fake.by_model``); the
page's Compare panel (chatbot/web/compare_view.py) in-process. The HTTP API and gradio_client's /compare:
test_compare_api.py; in a browser: test_browser_compare.py."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from conftest import make_settings
from fake_upstream import Behaviour, FakeUpstream

from chatbot.core.compare import Batch, ColumnStats, Comparison, Stopped, Summary, compare, summarize
from chatbot.core.conversation import turn
from chatbot.core.events import ErrorEvent, ReasoningDelta, TextDelta
from chatbot.core.history import History
from chatbot.core.limits import Visitor
from chatbot.core.reply import ReplyState
from chatbot.core.tokens import counter_for
from chatbot.core.upstream import Upstream, price

MODELS = ["fake/fast", "fake/slow", "fake/broken", "fake/thinker"]
VISITOR = Visitor("ip:127.0.0.9")
#: Bounded waits on a loaded machine (never timing targets: those are in bench/).
WAIT = 20.0


def upstream_for(fake: FakeUpstream, **env: str) -> Upstream:
    return Upstream(make_settings(fake.base_url, CHATBOT_MODELS=",".join(MODELS), **env))


def four_models(fake: FakeUpstream) -> None:
    fake.by_model = {
        "fake/fast": Behaviour(reply="Quick, the fast one answers. " * 6, tokens_per_second=400),
        "fake/slow": Behaviour(reply="Slowly, slowly, the slow one gets there in the end.", delay=0.03),
        "fake/broken": Behaviour(reply="This one breaks after two pieces.", error_chunk_after=2),
        "fake/thinker": Behaviour(reply="Forty-two.", reasoning="Let me think it over first.", cost=0.0042,
                                 delay=0.02),
    }


async def run(comparison: Comparison) -> list[Batch]:
    return [batch async for batch in comparison]


def record_of(fake: FakeUpstream, model: str):
    return next(r for r in reversed(fake.requests) if r.model == model)


async def test_four_models_stream_together_each_in_its_column(fake: FakeUpstream) -> None:
    four_models(fake)
    upstream = upstream_for(fake)
    comparison = compare(upstream, "What is the answer?", [], MODELS, visitor=VISITOR, tick=0.02)
    batches = await run(comparison)

    assert comparison.refused is None and len(fake.requests) == 4
    states = {c.model: c.state for c in comparison.columns}
    assert states["fake/fast"].reply == "Quick, the fast one answers. " * 6
    assert states["fake/slow"].reply == "Slowly, slowly, the slow one gets there in the end."
    assert states["fake/thinker"].reply == "Forty-two."
    assert "".join(states["fake/thinker"].reasoning) == "Let me think it over first."
    # the failure stays in its column: the others are whole
    assert states["fake/broken"].error is not None and states["fake/broken"].error.partial
    assert all(states[m].complete for m in ("fake/fast", "fake/slow", "fake/thinker"))
    events = [e for batch in batches for e in batch.events]
    assert any(isinstance(e.event, ErrorEvent) and e.model == "fake/broken" for e in events)
    assert not any(isinstance(e.event, ErrorEvent) and e.model != "fake/broken" for e in events)
    assert any(isinstance(e.event, ReasoningDelta) and e.index == 3 for e in events)
    # one update carries several columns' text while they stream together
    assert any(len({e.index for e in b.events if isinstance(e.event, TextDelta)}) >= 2 for b in batches)

    # the stats are what the fake sent
    stats = {s.model: s for s in comparison.stats()}
    for model in ("fake/fast", "fake/slow", "fake/thinker"):
        record = record_of(fake, model)
        usage = states[model].usage
        assert usage is not None
        assert stats[model].tokens_out == record.chunks_sent + record.reasoning_chunks_sent
        assert stats[model].tokens_in == usage.prompt_tokens > 0
        assert stats[model].first_token is not None and stats[model].tokens_per_second is not None
    assert stats["fake/thinker"].cost == pytest.approx(0.0042)
    assert stats["fake/broken"].error == "upstream_error"
    sent = "This one breaks after two pieces."[: 4 * record_of(fake, "fake/broken").chunks_sent]
    assert states["fake/broken"].reply == sent  # no report: what streamed is counted
    assert stats["fake/broken"].tokens_out == counter_for("fake/broken").count_text(sent) > 0
    summary = batches[-1].summary
    assert summary is not None and all(b.summary is None for b in batches[:-1])
    assert summary.cheapest == "fake/thinker"  # the only price known
    # the fastest stream is the highest measured speed (on a loaded machine a column's chunks may be read in one
    # burst, so which model that is is not fixed: test_summary_names_the_best_whole_column fixes it)
    speeds = {m: stats[m].tokens_per_second or 0.0 for m in ("fake/fast", "fake/slow", "fake/thinker")}
    assert summary.fastest_stream == max(speeds, key=speeds.__getitem__)
    assert summary.fastest_first_token in ("fake/fast", "fake/slow", "fake/thinker")
    assert summary.cut_by_length == ()


def test_summary_names_the_best_whole_column() -> None:
    """Fastest first token, fastest stream, cheapest: of the columns that ended whole (a stopped or failed one
    is none of them, however fast or cheap); None when no column qualifies; every column cut by length."""

    def stats(model: str, first: float | None, speed: float | None, cost: float | None, **over) -> ColumnStats:
        fields = dict(model=model, first_token=first, tokens_per_second=speed, tokens_in=10, tokens_out=20,
                      cost=cost, finish_reason="stop", error=None, stopped=False, ended=True)
        return ColumnStats(**{**fields, **over})

    columns = [stats("fake/fast", 0.5, 400.0, None), stats("fake/slow", 0.2, 30.0, 0.01),
               stats("fake/thinker", 0.9, 50.0, 0.004, finish_reason="length"),
               stats("fake/broken", 0.01, 900.0, 0.0001, error="upstream_error"),
               stats("fake/stopped", 0.01, 800.0, 0.0001, stopped=True)]
    summary = summarize(columns)
    assert (summary.fastest_first_token, summary.fastest_stream, summary.cheapest) == (
        "fake/slow", "fake/fast", "fake/thinker")
    assert summary.cut_by_length == ("fake/thinker",)
    assert summarize([columns[3], stats("fake/x", None, None, None)]) == Summary(None, None, None, ())


async def test_cut_by_length_is_in_the_summary(fake: FakeUpstream) -> None:
    fake.by_model = {"fake/fast": Behaviour(finish_reason="length"), "fake/slow": Behaviour(),
                     "fake/broken": Behaviour(reply="many words " * 2000)}  # past the app's own cap
    comparison = compare(upstream_for(fake, CHATBOT_MAX_TOKENS="64"), "Hi", [], MODELS[:3], visitor=VISITOR)
    batches = await run(comparison)
    assert comparison.columns[2].state.cut
    assert batches[-1].summary is not None and batches[-1].summary.cut_by_length == ("fake/fast", "fake/broken")


async def test_stop_one_column_closes_only_its_connection_and_stop_all_closes_all(fake: FakeUpstream) -> None:
    fake.default = Behaviour(endless=True, delay=0.02)
    upstream = upstream_for(fake)
    comparison = compare(upstream, "Go on forever", [], MODELS[:3], visitor=VISITOR)
    seen: list[Batch] = []

    async def consume() -> None:
        async for batch in comparison:
            seen.append(batch)

    task = asyncio.ensure_future(consume())
    try:
        await fake.wait_for_async(
            lambda: all(any(c.state.text) for c in comparison.columns) and len(fake.requests) == 3, timeout=WAIT
        )
        assert comparison.stop(1)
        slow = record_of(fake, "fake/slow")
        await fake.wait_for_async(lambda: slow.disconnected_at is not None, timeout=WAIT)
        await asyncio.sleep(0.3)  # the others are still streaming
        others = [record_of(fake, m) for m in ("fake/fast", "fake/broken")]
        assert all(r.disconnected_at is None for r in others)
        before = [r.chunks_sent for r in others]
        grew = lambda: all(r.chunks_sent > n for r, n in zip(others, before, strict=True))  # noqa: E731
        await fake.wait_for_async(grew, timeout=WAIT)

        comparison.stop_all()
        await fake.wait_for_async(lambda: all(r.disconnected_at is not None for r in others), timeout=WAIT)
        await asyncio.wait_for(task, WAIT)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    stopped = [e for b in seen for e in b.events if isinstance(e.event, Stopped)]
    assert sorted(e.index for e in stopped) == [0, 1, 2]
    assert [s.stopped for s in comparison.stats()] == [True, True, True]
    assert fake.open_streams == 0


async def test_closing_the_stream_closes_every_upstream_connection(fake: FakeUpstream) -> None:
    fake.default = Behaviour(endless=True, delay=0.02)
    comparison = compare(upstream_for(fake), "Go on", [], MODELS[:2], visitor=VISITOR)
    batches = comparison.batches()
    async for _ in batches:
        if all(any(c.state.text) for c in comparison.columns):
            break
    await batches.aclose()  # a client that left
    await fake.wait_for_async(lambda: all(r.disconnected_at is not None for r in fake.requests), timeout=WAIT)


async def test_picking_a_reply_continues_with_that_model_and_sends_only_that_reply(fake: FakeUpstream) -> None:
    fake.by_model = {m: Behaviour(reply=f"Answer of {m}.") for m in MODELS[:3]}
    upstream = upstream_for(fake)
    comparison = compare(upstream, "Pick me", [], MODELS[:3], visitor=VISITOR)
    await run(comparison)
    history = comparison.chosen_history(1)
    state = ReplyState()
    async for _ in turn(upstream, "And then?", history, comparison.columns[1].name, visitor=VISITOR, state=state):
        pass
    sent = fake.last
    assert sent.model == "fake/slow"
    assert [m["content"] for m in sent.messages if m["role"] != "system"] == [
        "Pick me", "Answer of fake/slow.", "And then?",
    ]


async def test_a_compare_of_four_counts_four_messages(fake: FakeUpstream) -> None:
    upstream = upstream_for(fake, CHATBOT_RATE_LIMIT="5/minute", CHATBOT_STREAMS_PER_VISITOR="1")
    first = compare(upstream, "Hi", [], MODELS, visitor=VISITOR)
    await run(first)
    assert first.refused is None and all(c.state.complete for c in first.columns)
    second = compare(upstream, "Again", [], MODELS[:2], visitor=VISITOR)
    assert await second.admit() is not None and second.refused.kind == "limit_messages"  # 4 + 2 > 5
    assert len(fake.requests) == 4  # refused as a whole: nothing was sent
    state = ReplyState()  # the fifth message is still allowed
    async for _ in turn(upstream, "One more", [], "fake/fast", visitor=VISITOR, state=state):
        pass
    assert state.complete


async def test_a_compare_reserves_every_reply_up_front_against_the_ceiling(fake: FakeUpstream) -> None:
    probe = upstream_for(fake)
    model = probe.resolve("fake/fast")
    assert model is not None
    one_reply = price(model, 0, probe.budget(model)[1])
    budget = f"{one_reply * 3.5:.6f}"  # room for three replies, not four
    upstream = upstream_for(fake, CHATBOT_DAILY_BUDGET_USD=budget, CHATBOT_STREAMS_PER_VISITOR="1")
    four = compare(upstream, "Hi", [], MODELS, visitor=VISITOR)
    assert await four.admit() is not None and four.refused.kind == "limit_budget"
    assert fake.requests == [] and upstream.guard is not None and await upstream.guard.spent_today() == 0
    fake.default = Behaviour(stall_before_first=0.5)
    three = compare(upstream, "Hi", [], MODELS[:3], visitor=VISITOR)
    task = asyncio.ensure_future(run(three))
    await fake.wait_for_async(lambda: len(fake.requests) == 3, timeout=WAIT)
    assert await upstream.guard.spent_today() >= 3 * one_reply  # reserved while they stream
    state = ReplyState()  # one action at a time: the compare holds the visitor's one stream slot
    async for _ in turn(upstream, "Meanwhile", [], "fake/fast", visitor=VISITOR, state=state):
        pass
    assert state.error is not None and state.error.error.kind == "limit_one_at_a_time"
    await asyncio.wait_for(task, WAIT)
    assert all(c.state.complete for c in three.columns)
    assert await upstream.guard.spent_today() < one_reply  # settled at what the replies cost


@pytest.mark.parametrize(
    ("models", "env", "kind"),
    [
        (["fake/fast"], {}, "compare_columns"),
        (MODELS + ["fast"], {}, "compare_columns"),
        (["fake/fast", "fake/fast"], {}, "compare_columns"),
        (["fake/fast", "no/such"], {}, "unknown_model"),
        (MODELS[:3], {"CHATBOT_COMPARE_MAX_COLUMNS": "2"}, "compare_columns"),
        (MODELS[:2], {"CHATBOT_COMPARE_MAX_COLUMNS": "0"}, "compare_off"),
    ],
)
async def test_a_bad_compare_is_refused_with_a_clear_message(
    fake: FakeUpstream, models: list[str], env: dict[str, str], kind: str
) -> None:
    comparison = compare(upstream_for(fake, **env), "Hi", [], models, visitor=VISITOR)
    refused = await comparison.admit()
    assert refused is not None and refused.kind == kind and refused.text
    assert await run(comparison) == [] and fake.requests == []


def test_public_instances_cap_columns_at_two(fake: FakeUpstream) -> None:
    assert make_settings(fake.base_url, GRADIO_SERVER_NAME="0.0.0.0").compare_max_columns == 2
    assert make_settings(fake.base_url).compare_max_columns == 4
    assert make_settings(fake.base_url, GRADIO_SERVER_NAME="0.0.0.0",
                         CHATBOT_COMPARE_MAX_COLUMNS="3").compare_max_columns == 3


# ---------------------------------------------------------------------------------------- the Gradio face


async def test_page_compare_streams_columns_and_picking_continues_with_that_model(fake: FakeUpstream) -> None:
    from chatbot.web.compare_view import CompareView
    from chatbot.web.ui import ChatUI

    fake.by_model = {m: Behaviour(reply=f"Answer of {m}.", delay=0.01) for m in MODELS[:3]}
    upstream = upstream_for(fake)
    view = CompareView(ChatUI(upstream.settings, upstream))
    earlier = [{"role": "user", "content": "Earlier"}, {"role": "assistant", "content": "Before."}]
    updates = [u async for u in view.run("Pick me", MODELS[:3], earlier, "", "chat-1", None)]  # type: ignore[arg-type]
    most = 4
    first = updates[0]
    assert [u["visible"] for u in first[:most]] == [True, True, True, False]
    result = updates[-1][3 * most + 1]  # boxes, heads, bodies, summary, result, then the chat's three
    assert result["columns"][1] == {"name": "fake/slow", "model": "fake/slow", "reply": "Answer of fake/slow."}
    assert "Cheapest" in updates[-1][3 * most]  # the summary line
    # one update carries several columns' new text
    bodies = [u[2 * most: 3 * most] for u in updates[1:]]
    assert any(sum(isinstance(b, str) for b in body) >= 2 for body in bodies)

    messages, state, model, finished = view._picker(1)(result, "chat-1", None)  # type: ignore[arg-type]
    assert model == "fake/slow" and messages == state == finished["messages"] and finished["chat"] == "chat-1"
    assert messages[-1] == {"role": "assistant", "content": "Answer of fake/slow."}
    assert sum(1 for m in messages if m.get("metadata")) == 2  # the other columns, as notes
    from chatbot.web import chats
    from chatbot.web.chat_files import export_markdown

    saved = chats.current(chats.save(chats.empty_store(), messages, model, None))  # the saved chat keeps them
    exported = export_markdown(saved)
    assert "\n### 🔀 fake/fast (compared)\n\nAnswer of fake/fast.\n" in exported  # each column a section
    assert "\n### 🔀 fake/broken (compared)\n" in exported and "Answer of fake/slow." in exported
    reply = ReplyState()
    async for _ in turn(upstream, "And then?", History.of(messages, upstream.settings), model, state=reply):
        pass
    assert [m["content"] for m in fake.last.messages if m["role"] != "system"] == [
        "Earlier", "Before.", "Pick me", "Answer of fake/slow.", "And then?",
    ]
    assert fake.last.model == "fake/slow"


def test_messages_have_the_same_placeholders_in_every_language() -> None:
    import string

    from chatbot.web.compare_view import LABELS, TEXTS

    def fields(template: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name}

    for table in (TEXTS, LABELS):
        assert set(table) == {"en", "es", "pt"}
        for key, template in table["en"].items():
            assert all(fields(table[lang][key]) == fields(template) for lang in ("es", "pt")), key


@pytest.mark.bench
def test_compare_benchmark_runs_and_reports_its_ratio() -> None:
    """``python -m bench.compare_core`` runs end to end (no timing assertion: the target is its own output)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-m", "bench.compare_core", '{"reps": 1, "tokens": 20}'], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["target"] == 1.1 and isinstance(report["pass"], bool) and report["median_ratio"] > 0
    assert 0 < report["reps"][0]["text_deltas"] <= 4 * 20 and report["reps"][0]["updates"] > 0  # a busy loop merges
    assert report["stop_all_max_s"] >= 0 and report["stop_all_target"] == 1.0  # Stop all's bound is in "pass"


async def test_a_visitors_own_key_goes_to_every_column_and_spends_no_quota(fake: FakeUpstream) -> None:
    upstream = upstream_for(fake, CHATBOT_RATE_LIMIT="1/minute", CHATBOT_STREAMS_PER_VISITOR="1")
    for _ in range(2):  # with the owner's key the second compare would be over the message limit
        comparison = compare(upstream, "Hi", [], MODELS[:2], visitor=VISITOR, api_key="sk-visitor-0123456789")
        await run(comparison)
        assert comparison.refused is None and all(c.state.complete for c in comparison.columns)
    assert len(fake.requests) == 4
    assert {r.headers["authorization"] for r in fake.requests} == {"Bearer sk-visitor-0123456789"}


async def test_a_column_stopped_before_its_task_ran_still_ends_the_compare(fake: FakeUpstream) -> None:
    upstream = upstream_for(fake, CHATBOT_STREAMS_PER_VISITOR="1")
    comparison = compare(upstream, "Hi", [], MODELS[:2], visitor=VISITOR)
    batches = comparison.batches()
    first = asyncio.ensure_future(batches.__anext__())
    await asyncio.sleep(0)  # the compare has created its columns' tasks; none has run yet
    assert comparison.stop(0)

    async def rest() -> list[Batch]:
        return [await first] + [batch async for batch in batches]  # ends: the stopped column counts as ended

    seen = await asyncio.wait_for(rest(), WAIT)
    assert comparison.columns[0].stopped and comparison.columns[0].state.ended
    assert comparison.columns[1].state.complete and [r.model for r in fake.requests] == ["fake/slow"]
    assert seen[-1].summary is not None
    assert upstream.guard is not None and not upstream.guard._active  # the shared stream slot is free


def own_threads(fake: FakeUpstream, since: int, message: str) -> dict[str, list[str]]:
    """What each model was sent (system left out) in the requests from ``since`` on that end with ``message``."""
    return {r.model: [m["content"] for m in r.messages if m["role"] != "system"]
            for r in fake.requests[since:] if r.messages and r.messages[-1]["content"] == message}


async def test_page_keeps_comparing_each_column_with_its_own_models_reply(fake: FakeUpstream) -> None:
    """A second compare with no reply picked: the first compared turn is in the chat (and its saved chat, and
    the Markdown export), and each column is sent its own model's reply in it (a model that was not compared
    there: the first column's); a plain message in the chat tab continues the picker's model's thread."""
    from chatbot.web import chats
    from chatbot.web.chat_files import export_markdown
    from chatbot.web.compare_view import CompareView
    from chatbot.web.ui import ChatUI

    fake.by_model = {m: Behaviour(reply=f"Answer of {m}.") for m in MODELS}
    upstream = upstream_for(fake)
    chat = ChatUI(upstream.settings, upstream)
    view = CompareView(chat)
    earlier = [{"role": "user", "content": "Earlier"}, {"role": "assistant", "content": "Before."}]
    first = [u async for u in view.run("One", MODELS[:2], earlier, "", "chat-1", None)]  # type: ignore[arg-type]
    messages, state, finished = first[-1][-3:]
    assert messages == state == finished["messages"] and finished["chat"] == "chat-1"
    assert chats.answered(messages)  # a chat of compared turns only is kept
    exported = export_markdown(chats.current(chats.save(chats.empty_store(), messages, None, None)))
    assert "\n### 🔀 fake/slow (compared)\n\nAnswer of fake/slow.\n" in exported

    since = len(fake.requests)
    _ = [u async for u in view.run("Two", ["fake/slow", "fake/thinker"], messages, "", "chat-1", None)]  # type: ignore[arg-type]
    assert own_threads(fake, since, "Two") == {
        "fake/slow": ["Earlier", "Before.", "One", "Answer of fake/slow.", "Two"],
        "fake/thinker": ["Earlier", "Before.", "One", "Answer of fake/fast.", "Two"],
    }
    reply = ReplyState()
    async for _ in turn(upstream, "Three", chat.history(messages, upstream.resolve("fake/slow")), "fake/slow",
                        state=reply):
        pass
    assert [m["content"] for m in fake.last.messages if m["role"] != "system"] == [
        "Earlier", "Before.", "One", "Answer of fake/slow.", "Three",
    ]
