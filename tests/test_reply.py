"""The one fold of a reply's events (chatbot/core/reply.py): what every face reads, and its end callbacks."""

from __future__ import annotations

import logging

import pytest

from chatbot.core.errors import friendly, render
from chatbot.core.events import IDLE, Done, ErrorEvent, HistoryTrimmed, ReasoningDelta, TextDelta, Usage
from chatbot.core.reply import ReplyState, drain

USAGE = Usage(12, 3, 0.001, "catalogue")


def test_the_state_folds_every_kind_of_event() -> None:
    state = ReplyState("gpt-test")
    events = [HistoryTrimmed(2), ReasoningDelta("hm"), TextDelta("Hel"), TextDelta("lo"), USAGE, Done("stop")]
    assert [state.apply(e) for e in events] == [True] * len(events)
    assert state.apply(IDLE) is False  # nothing changed
    assert (state.reply, "".join(state.reasoning), state.trimmed, state.usage) == ("Hello", "hm", 2, USAGE)
    assert state.finish_reason == "stop" and state.finished and state.complete and state.partial
    assert state.failure() is None and not state.cut and state.model == "gpt-test"


def test_a_failure_after_some_text_carries_the_one_cut_off_note_in_each_language() -> None:
    state = ReplyState()
    state.apply(TextDelta("half an"))
    event = state.fail(friendly("idle_timeout", seconds=5))
    assert event.partial and state.error is event and state.finished and not state.complete
    for lang in ("en", "es", "pt"):
        assert state.failure(lang).startswith(render("cut_note", lang))
    assert not ReplyState().fail(friendly("empty_reply")).partial


def test_a_reply_stopped_at_a_limit_is_cut() -> None:
    state = ReplyState()
    state.apply(ErrorEvent(friendly("reply_cap", limit=64), partial=True))
    assert state.cut and not state.complete
    other = ReplyState()
    other.apply(ErrorEvent(friendly("timeout"), partial=False))
    assert not other.cut


async def test_end_callbacks_run_once_in_order_sync_and_async() -> None:
    state, seen = ReplyState(), []

    async def stored(s: ReplyState) -> None:
        seen.append(("stored", s.reply))

    state.on_end(lambda s: seen.append(("released", s.complete)))
    state.on_end(stored)
    state.apply(TextDelta("ok"))
    state.apply(Done("stop"))
    await state.end()
    await state.end()
    assert seen == [("released", True), ("stored", "ok")] and state.ended


async def test_a_failing_callback_is_logged_and_the_next_still_runs(caplog: pytest.LogCaptureFixture) -> None:
    state, seen = ReplyState(), []

    def broken(_: ReplyState) -> None:
        raise RuntimeError("release failed")

    state.on_end(broken)
    state.on_end(lambda s: seen.append("stored"))
    with caplog.at_level(logging.ERROR, logger="switchboard.reply"):
        await state.end()
    assert seen == ["stored"]
    assert "end callback failed" in caplog.text and "release failed" in caplog.text


async def test_drain_is_the_state_text_and_the_other_events() -> None:
    async def events():
        for event in (TextDelta("a"), IDLE, ReasoningDelta("r"), TextDelta("b"), USAGE, Done("stop")):
            yield event

    text, others = await drain(events())
    assert text == "ab" and others == [ReasoningDelta("r"), USAGE, Done("stop")]
