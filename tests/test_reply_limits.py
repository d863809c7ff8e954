"""What a reply may take whatever the provider does (issue 12.3), never a silent empty reply (13.6), and the
provider connection kept for the next reply (13.8): the chat core over real HTTP to the fake upstream."""

from __future__ import annotations

import asyncio

import pytest
from fake_upstream import Behaviour, FakeUpstream

from chatbot.core.conversation import price
from chatbot.core.errors import render
from chatbot.core.events import Done, ErrorEvent, HistoryTrimmed
from chatbot.core.reply import drain
from chatbot.core.reply_limits import ReplyCounter, ReplyLimits
from chatbot.core.tokens import counter_for
from chatbot.core.upstream import Upstream

WORDS = " ".join(f"word{i}" for i in range(3_000))


def upstream_for(settings_for, **env: str) -> Upstream:
    return Upstream(settings_for(**env))


def tokens(text: str) -> int:
    return counter_for("gpt-4.1-mini").count_text(text)


# ------------------------------------------------------------------------------------ 12.3: the caps


async def test_a_provider_that_ignores_max_tokens_is_stopped_at_the_cap(fake: FakeUpstream, settings_for) -> None:
    fake.push(Behaviour(reply=WORDS, chunk_size=8, delay=0.002))
    text, events = await drain(upstream_for(settings_for, CHATBOT_MAX_TOKENS="64").stream("Hi", [], "fast"))
    assert fake.last.body["max_tokens"] == 64
    assert 0 < tokens(text) <= 64 + 16  # the cap and its margin
    error = events[-1]
    assert isinstance(error, ErrorEvent) and error.partial and error.error.kind == "reply_cap"
    assert "64 tokens" in error.error.text and "64" in error.error.localized("es")
    await fake.wait_for_async(lambda: fake.last.disconnected_at is not None, timeout=5)
    assert fake.last.finished_at is None and fake.last.chunks_sent < 200  # the provider was stopped


async def test_the_spend_meter_charges_what_streamed_without_a_usage_report(
    fake: FakeUpstream, settings_for
) -> None:
    core = upstream_for(settings_for, CHATBOT_MAX_TOKENS="64", CHATBOT_DAILY_BUDGET_USD="0.01")
    fake.push(Behaviour(reply=WORDS, chunk_size=8, usage=False))
    await drain(core.stream("Hi", [], "fast"))
    model = core.resolve("fast")
    prompt = core.prepare("Hi", [], "fast").prompt_tokens
    spent = await core.guard.spent_today()
    # at least the reservation; at most the cap, its margin and the one 8-byte piece that passed it
    assert price(model, prompt, 64) <= spent <= price(model, prompt, 64 + 16 + 8)


async def test_an_under_reported_usage_is_not_believed(fake: FakeUpstream, settings_for) -> None:
    core = upstream_for(settings_for, CHATBOT_DAILY_BUDGET_USD="5")
    reply = " ".join(f"token{i}" for i in range(600))
    fake.push(Behaviour(reply=reply, chunk_size=40, usage_completion=1))
    text, events = await drain(core.stream("Hi", [], "fast"))
    assert text == reply and isinstance(events[-1], Done)
    prompt = core.prepare("Hi", [], "fast").prompt_tokens
    spent = await core.guard.spent_today()
    assert spent >= price(core.resolve("fast"), prompt, tokens(reply)) * 0.99


async def test_an_endless_stream_stops_at_the_reply_time_limit(fake: FakeUpstream, settings_for) -> None:
    fake.push(Behaviour(reply="more", endless=True, chunk_size=4, delay=0.05))
    core = upstream_for(settings_for, CHATBOT_REPLY_TIMEOUT="1.5")
    text, events = await asyncio.wait_for(drain(core.stream("Hi", [], "fast")), 60)  # bounded if it fails
    assert text.startswith("more more")
    error = events[-1]
    assert error.error.kind == "reply_timeout" and error.partial and "1.5 seconds" in error.error.text
    await fake.wait_for_async(lambda: fake.last.disconnected_at is not None, timeout=5)


async def test_an_endless_stream_stops_at_the_cap_too(fake: FakeUpstream, settings_for) -> None:
    fake.push(Behaviour(reply="more", endless=True, chunk_size=16))
    core = upstream_for(settings_for, CHATBOT_MAX_TOKENS="200")
    text, events = await asyncio.wait_for(drain(core.stream("Hi", [], "fast")), 60)
    assert events[-1].error.kind == "reply_cap" and tokens(text) <= 200 + 16
    await fake.wait_for_async(lambda: fake.last.disconnected_at is not None, timeout=5)


async def test_one_huge_chunk_is_not_relayed_and_costs_no_more_than_the_reservation(
    fake: FakeUpstream, settings_for
) -> None:
    core = upstream_for(settings_for, CHATBOT_DAILY_BUDGET_USD="1")
    fake.push(Behaviour(reply="after", huge_chunk=8_000_000, usage=False))
    text, events = await drain(core.stream("Hi", [], "fast"))
    assert text == "" and events[-1].error.kind == "reply_too_large"
    assert "256 KB" in events[-1].error.text
    prompt = core.prepare("Hi", [], "fast").prompt_tokens
    worst = price(core.resolve("fast"), prompt, core.budget(core.resolve("fast"))[1])
    assert await core.guard.spent_today() <= worst * 1.01


def test_a_reply_under_its_cap_is_never_tokenised_while_it_streams() -> None:
    counter = ReplyCounter(ReplyLimits.for_cap(1_000, 60.0), counter_for("gpt-4.1-mini"))
    for _ in range(200):
        counter.add("four")  # 800 bytes: cannot hold 1,000 tokens
    assert counter.tokens == 0 and counter.bytes == 800
    assert counter.completion_tokens() > 0  # counted once, at the end


def test_the_counter_stops_a_reply_one_piece_past_its_cap() -> None:
    from chatbot.core.errors import StreamProblem

    counter = ReplyCounter(ReplyLimits.for_cap(100, 60.0), counter_for("gpt-4.1-mini"))
    sent = 0
    with pytest.raises(StreamProblem) as stopped:
        for _ in range(10_000):
            counter.add(" x")
            sent += 1
    assert stopped.value.kind == "reply_cap" and 100 < sent <= 100 + 16 + 1 and counter.cut


# -------------------------------------------------------------------- 13.6: never a silent empty reply


@pytest.mark.parametrize(
    ("behaviour", "kind", "partial"),
    [
        (Behaviour(raw_body="<html><body><h1>Welcome to nginx!</h1></body></html>"), "not_event_stream", False),
        (Behaviour(raw_body='{"choices": []}', raw_content_type="application/json"), "not_event_stream", False),
        (Behaviour(reply="", finish_reason=None, usage=False), "server_interrupted", False),  # llama.cpp
        (Behaviour(raw_body="", raw_content_type="text/event-stream"), "empty_reply", False),  # short prompt
        (Behaviour(reply="half an ans", finish_reason=None), "unfinished", True),
        (Behaviour(reply="", reasoning="hmm", finish_reason="length"), "empty_reply", False),
    ],
    ids=["html", "json", "role-then-done", "empty-body", "no-finish-reason", "thinking-only"],
)
async def test_an_answer_without_a_reply_is_an_error(fake, settings_for, behaviour, kind, partial) -> None:
    fake.push(behaviour)
    text, events = await drain(upstream_for(settings_for).stream("Hi", [], "fast"))
    error = events[-1]
    assert isinstance(error, ErrorEvent) and error.error.kind == kind and error.partial is partial
    assert error.error.text == render(kind) and not any(isinstance(e, Done) for e in events)
    assert len(fake.requests) == 1
    if partial:
        assert text == "half an ans"


def _long_history(turns: int = 40) -> list[dict]:
    history = []
    for i in range(turns):
        history += [{"role": "user", "content": f"question {i} " + "padding " * 20},
                    {"role": "assistant", "content": f"answer {i} " + "padding " * 20}]
    return history


async def test_an_empty_answer_to_a_long_prompt_is_retried_once_trimmed(fake: FakeUpstream, settings_for) -> None:
    fake.push(Behaviour(raw_body="", raw_content_type="text/event-stream"), Behaviour(reply="fits now"))
    core = upstream_for(settings_for)
    text, events = await drain(core.stream("Hi", _long_history(), "fast"))
    assert text == "fits now" and isinstance(events[-1], Done)
    first, second = fake.requests
    assert len(second.messages) < len(first.messages) / 2 + 2
    assert [e.dropped_turns for e in events if isinstance(e, HistoryTrimmed)] == [
        (len(first.messages) - len(second.messages)) // 2
    ]
    text, _ = await drain(core.stream("Next", _long_history(), "fast"))  # learned: trimmed at once
    assert len(fake.requests) == 3 and len(fake.last.messages) == len(second.messages)


async def test_a_body_cut_before_its_first_byte_after_a_long_prompt_is_a_length_refusal_too(
    fake: FakeUpstream, settings_for
) -> None:  # llama-cpp-python's server: 200, then the connection closes (ValueError: exceed context window)
    fake.push(Behaviour(cut_before_first=True), Behaviour(reply="fits now"))
    core = upstream_for(settings_for)
    text, events = await drain(core.stream("Hi", _long_history(), "fast"))
    assert text == "fits now" and isinstance(events[-1], Done) and len(fake.requests) == 2
    fake.push(Behaviour(cut_before_first=True))  # a short prompt: the cut is a cut, not a refusal
    text, events = await drain(core.stream("Hi", [], "fast"))
    assert text == "" and events[-1].error.kind == "cut"


async def test_a_length_refusal_says_so_when_the_trimmed_retry_is_refused_too(
    fake: FakeUpstream, settings_for
) -> None:
    empty = Behaviour(raw_body="", raw_content_type="text/event-stream")
    fake.push(empty, empty, Behaviour(reply="never asked"))
    text, events = await drain(upstream_for(settings_for).stream("Hi", _long_history(), "fast"))
    assert text == "" and events[-1].error.kind == "too_long_empty" and len(fake.requests) == 2
    assert "context window" in events[-1].error.text


# ------------------------------------------------------------------- 13.8: the connection is reused


async def test_consecutive_replies_share_one_connection(fake: FakeUpstream, settings_for) -> None:
    core = upstream_for(settings_for)
    for i in range(5):
        text, events = await drain(core.stream(f"Hi {i}", [], "fast"))
        assert isinstance(events[-1], Done) and text
    ports = [r.client_port for r in fake.requests]
    assert len(ports) == 5 and ports[0] is not None and len(set(ports)) == 1, ports
    await core.client.close()


async def test_the_chat_tab_shows_why_a_reply_is_empty(fake: FakeUpstream, settings_for) -> None:
    from chatbot.web.ui import ReplyView

    fake.push(Behaviour(reply="", finish_reason=None, usage=False))
    view = ReplyView("es")
    async for event in upstream_for(settings_for).stream("Hola", [], "fast"):
        view.apply(event)
    shown = view.messages()
    assert [m["metadata"]["title"] for m in shown] == [f"⚠️ {render('server_interrupted', 'es')}"]
