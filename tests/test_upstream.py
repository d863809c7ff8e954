"""The chat core over real HTTP to the fake upstream: events, errors, time-outs, closing."""

from __future__ import annotations

import asyncio

import httpx2
import pytest
from conftest import TEST_KEY, make_settings
from fake_upstream import Behaviour, FakeUpstream

from chatbot.core.chunks import ThinkSplitter, chunk_events, sse_data
from chatbot.core.events import Done, ErrorEvent, HistoryTrimmed, Idle, ReasoningDelta, TextDelta, Usage
from chatbot.core.history import History
from chatbot.core.provider import _stream_timeout
from chatbot.core.reply import drain
from chatbot.core.upstream import Upstream, prepares_inline


def upstream_for(settings_for, **env: str) -> Upstream:
    return Upstream(settings_for(**env))


async def test_reply_streams_in_several_pieces(fake: FakeUpstream, settings_for) -> None:
    # paced: deltas that arrive together are merged into one event (see test_waiting_deltas_are_merged)
    fake.push(Behaviour(reply="one two three four five six", chunk_size=3, delay=0.02))
    events = [e async for e in upstream_for(settings_for).stream("Hi", [], "fast")]
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 3
    assert "".join(d.text for d in deltas) == "one two three four five six"
    assert isinstance(events[-1], Done) and events[-1].finish_reason == "stop"
    body = fake.last.body
    assert body["model"] == "gpt-4.1-mini" and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert fake.last.headers["authorization"] == f"Bearer {TEST_KEY}"


async def test_waiting_deltas_are_merged(fake: FakeUpstream, settings_for) -> None:
    reply = " ".join(f"w{i}" for i in range(400))
    fake.push(Behaviour(reply=reply, chunk_size=2))  # 1,000+ chunks sent as fast as the socket takes them
    events = [e async for e in upstream_for(settings_for).stream("Hi", [], "fast")]
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert "".join(d.text for d in deltas) == reply
    assert len(deltas) < len(reply) // 2  # fewer events than chunks: they came in together
    assert isinstance(events[-1], Done)


async def _bytes(*pieces: bytes):
    for piece in pieces:
        yield piece


async def test_sse_data_parses_events_split_anywhere() -> None:
    body = b': comment\r\nevent: x\r\ndata: {"a":\r\ndata:1}\r\n\r\nid: 3\ndata: two\n\ndata: [DONE]\n\ndata: tail'
    for cut in range(1, len(body)):
        got = [d async for d in sse_data(_bytes(body[:cut], body[cut:]))]
        assert got == ['{"a":\n1}', "two", "[DONE]"], cut  # "tail" never ended: not an event


@pytest.mark.parametrize(
    "chunk",
    [{}, {"choices": None}, {"choices": "x"}, {"choices": [None]}, {"choices": [{"delta": "x"}]},
     {"choices": [{"delta": {"content": 5, "reasoning": ["x"]}, "finish_reason": 3}]},
     {"usage": {"prompt_tokens": "9", "completion_tokens": None, "cost": True}, "choices": []}],
)
def test_malformed_chunks_give_no_error(chunk: dict) -> None:
    model = upstream_model()
    events = list(chunk_events(chunk, ThinkSplitter(), model))
    assert all(isinstance(e, Usage) for e in events)
    assert all(e.prompt_tokens == 0 and e.cost_source != "upstream" for e in events if isinstance(e, Usage))


def upstream_model():
    from chatbot.core.catalogue import Model

    return Model("gpt-4.1-mini", 1_047_576, 32_768, 0.40, 1.60)


async def test_history_and_system_prompt_are_sent(fake: FakeUpstream, settings_for) -> None:
    core = upstream_for(settings_for, CHATBOT_SYSTEM_PROMPT="Be brief.")
    history = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "reply one"}]
    await drain(core.stream("second", history, "smart"))
    assert fake.last.body["model"] == "claude-sonnet-4-6"
    assert fake.last.body["messages"] == [
        {"role": "system", "content": "Be brief."},
        *history,
        {"role": "user", "content": "second"},
    ]


async def test_usage_from_catalogue_and_from_upstream_cost(fake: FakeUpstream, settings_for) -> None:
    core = upstream_for(settings_for)
    fake.push(Behaviour(reply="abc"), Behaviour(reply="abc", cost=0.0123))
    _, events = await drain(core.stream("Hi", [], "fast"))
    usage = next(e for e in events if isinstance(e, Usage))
    assert usage.cost_source == "catalogue" and usage.cost and usage.cost > 0
    _, events = await drain(core.stream("Hi", [], "fast"))
    usage = next(e for e in events if isinstance(e, Usage))
    assert (usage.cost, usage.cost_source) == (0.0123, "upstream")


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
async def test_reasoning_deltas(fake: FakeUpstream, settings_for, field: str) -> None:
    fake.push(Behaviour(reply="Answer.", reasoning="Let me think.", reasoning_field=field))
    events = [e async for e in upstream_for(settings_for).stream("Hi", [], "fast")]
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "Let me think."
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Answer."


async def test_think_tags_become_reasoning(fake: FakeUpstream, settings_for) -> None:
    fake.push(Behaviour(reply="Answer.", reasoning="Hmm, tags.", think_tags=True, chunk_size=2))
    events = [e async for e in upstream_for(settings_for).stream("Hi", [], "fast")]
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "Hmm, tags."
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Answer."


def test_think_splitter_unit() -> None:
    splitter = ThinkSplitter()
    out = [*splitter.feed("  <th"), *splitter.feed("ink>abc</thi"), *splitter.feed("nk>\nrest"), *splitter.flush()]
    assert out == [ReasoningDelta("abc"), TextDelta("rest")]
    plain = ThinkSplitter()
    assert [*plain.feed("<b>bold"), *plain.flush()] == [TextDelta("<b>bold")]


@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [
        (Behaviour(status=401), "auth"),
        (Behaviour(status=402), "no_balance"),
        (Behaviour(status=403), "refused"),
        (Behaviour(status=404), "model_not_found"),
        (Behaviour(status=400, error_code="context_length_exceeded"), "too_long"),
        (Behaviour(status=413), "too_long"),
        (Behaviour(status=429, headers={"Retry-After": "30"}), "rate_limited"),
        (Behaviour(status=500), "overloaded"),
        (Behaviour(status=503), "overloaded"),
        (Behaviour(error_chunk_after=2), "upstream_error"),
        (Behaviour(cut_after=2), "cut"),
    ],
)
async def test_each_failure_is_one_friendly_error(fake: FakeUpstream, settings_for, behaviour, kind) -> None:
    fake.push(behaviour)
    events = [e async for e in upstream_for(settings_for).stream("Hi", [], "fast")]
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert len(errors) == 1 and events[-1] is errors[0]
    assert errors[0].error.kind == kind
    text = errors[0].error.text
    assert "Traceback" not in text and "Error code" not in text and TEST_KEY not in text
    if kind == "rate_limited":
        assert "30 seconds" in text


async def test_mid_stream_cut_keeps_partial_text(fake: FakeUpstream, settings_for) -> None:
    fake.push(Behaviour(reply="partial answer that is cut", chunk_size=4, cut_after=3))
    text, events = await drain(upstream_for(settings_for).stream("Hi", [], "fast"))
    assert text == "partial answer that is cut"[:12]
    error = events[-1]
    assert isinstance(error, ErrorEvent) and error.partial


async def test_short_retry_after_is_retried_by_the_sdk_once(fake: FakeUpstream, settings_for) -> None:
    fake.push(Behaviour(status=429, headers={"Retry-After": "0.1"}), Behaviour(reply="ok now"))
    text, _ = await drain(upstream_for(settings_for, CHATBOT_MAX_RETRIES="2").stream("Hi", [], "fast"))
    assert text == "ok now" and len(fake.requests) == 2


async def test_long_retry_after_is_not_waited_out(fake: FakeUpstream, settings_for) -> None:
    fake.push(Behaviour(status=429, headers={"Retry-After": "120"}))
    _, events = await drain(upstream_for(settings_for, CHATBOT_MAX_RETRIES="2").stream("Hi", [], "fast"))
    assert len(fake.requests) == 1
    assert events[-1].error.kind == "rate_limited" and "2 minutes" in events[-1].error.text


async def test_first_token_timeout(fake: FakeUpstream, settings_for) -> None:
    fake.push(Behaviour(stall_before_first=30))
    core = upstream_for(settings_for, CHATBOT_FIRST_TOKEN_TIMEOUT="0.5")
    _, events = await drain(core.stream("Hi", [], "fast"))
    assert events[-1].error.kind == "first_token_timeout"
    await fake.wait_for_async(lambda: fake.last.disconnected_at is not None, timeout=2)


async def test_idle_timeout_mid_reply(fake: FakeUpstream, settings_for) -> None:
    fake.push(Behaviour(reply="abcdefgh", chunk_size=4, delay=5))
    core = upstream_for(settings_for, CHATBOT_IDLE_TIMEOUT="0.5")
    text, events = await drain(core.stream("Hi", [], "fast"))
    assert text == "abcd" and events[-1].error.kind == "idle_timeout" and events[-1].partial


async def test_a_provider_that_never_answers_is_cut_at_the_first_token_timeout() -> None:
    """A reply's request has no read time-out of the transport's (provider._stream_timeout keeps the client's
    others): the turn's own first-token time-out ends a request whose answer never starts, and closes it."""
    closed = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # no answer, not even a status line; until the app closes the connection
        closed.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v1"
        core = Upstream(make_settings(url, CHATBOT_FIRST_TOKEN_TIMEOUT="0.5"))
        _, events = await drain(core.stream("Hi", [], None))
        assert events[-1].error.kind == "first_token_timeout"
        await asyncio.wait_for(closed.wait(), 10)
    finally:
        server.close()
    timeout = _stream_timeout(httpx2.Timeout(30.0, connect=5.0))
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (5.0, None, 30.0, 30.0)


async def test_idle_events_while_silent(fake: FakeUpstream, settings_for) -> None:
    fake.push(Behaviour(stall_before_first=0.5, reply="late"))
    events = [e async for e in upstream_for(settings_for).stream("Hi", [], "fast", tick=0.05)]
    assert sum(isinstance(e, Idle) for e in events) >= 3
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "late"


@pytest.mark.parametrize("stall", [0.0, 30.0])
async def test_closing_the_stream_closes_the_upstream(fake: FakeUpstream, settings_for, stall: float) -> None:
    """Mid-stream and while the upstream has sent headers but no token: closing the consumer's generator
    (what Gradio does on Stop or a closed tab) closes the HTTP connection to the upstream."""
    fake.push(Behaviour(reply="x" * 4000, chunk_size=4, delay=0.05, stall_before_first=stall))
    events = upstream_for(settings_for).stream("Hi", [], "fast", tick=0.05)
    async for event in events:
        if (stall and isinstance(event, Idle)) or isinstance(event, TextDelta):
            break
    await fake.wait_for_async(lambda: fake.last.first_byte_at is not None, timeout=2)
    await events.aclose()
    await fake.wait_for_async(lambda: fake.last.disconnected_at is not None, timeout=1)
    assert fake.last.finished_at is None


async def test_cancelling_the_task_closes_the_upstream(fake: FakeUpstream, settings_for) -> None:
    fake.push(Behaviour(stall_before_first=30))

    async def consume() -> None:
        async for _ in upstream_for(settings_for).stream("Hi", [], "fast"):
            pass

    task = asyncio.create_task(consume())
    await fake.wait_for_async(lambda: fake.requests and fake.last.first_byte_at is not None, timeout=2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await fake.wait_for_async(lambda: fake.last.disconnected_at is not None, timeout=1)


async def test_unknown_model_never_reaches_the_upstream(fake: FakeUpstream, settings_for) -> None:
    _, events = await drain(upstream_for(settings_for).stream("Hi", [], "gpt-evil"))
    assert events[-1].error.kind == "unknown_model" and not fake.requests
    _, events = await drain(upstream_for(settings_for, CHATBOT_ALLOW_ANY_MODEL="1").stream("Hi", [], "gpt-evil"))
    assert fake.last.body["model"] == "gpt-evil"


async def test_empty_message_is_refused(fake: FakeUpstream, settings_for) -> None:
    _, events = await drain(upstream_for(settings_for).stream("   ", [], "fast"))
    assert events[-1].error.kind == "empty_message" and not fake.requests


async def test_oversized_message_is_refused_not_cut(fake: FakeUpstream, settings_for) -> None:
    core = upstream_for(settings_for, CHATBOT_CONTEXT_TOKENS="1000")
    _, events = await drain(core.stream("word " * 5000, [], "fast"))
    assert events[-1].error.kind == "message_too_long" and not fake.requests
    assert "1,000" in events[-1].error.text or "1000" in events[-1].error.text


async def test_trimming_over_200_turns_stays_within_budget(fake: FakeUpstream, settings_for) -> None:
    """End to end: the upstream never receives more prompt tokens than the budget."""
    from chatbot.core.tokens import counter_for

    budget = 2000
    core = upstream_for(settings_for, CHATBOT_CONTEXT_TOKENS=str(budget))
    counter = counter_for("gpt-4.1-mini")
    history: list[dict] = []
    trimmed_seen = 0
    for turn in range(200):
        fake.push(Behaviour(reply=f"Reply number {turn} " + "lorem ipsum " * 10))
        text, events = await drain(core.stream(f"Question {turn} " + "dolor sit amet " * 5, history, "fast"))
        sent = fake.last.body["messages"]
        assert counter.count_messages(sent) <= budget
        assert sent[0]["role"] == "system" and sent[-1]["content"].startswith(f"Question {turn}")
        assert sent[1]["role"] == "user"  # only whole turns go
        trimmed_seen += any(isinstance(e, HistoryTrimmed) for e in events)
        history += [{"role": "user", "content": sent[-1]["content"]}, {"role": "assistant", "content": text}]
    assert trimmed_seen > 100


async def test_twenty_simultaneous_streams(fake: FakeUpstream, settings_for) -> None:
    fake.default = Behaviour(reply="y" * 40, chunk_size=2, delay=0.05)
    core = upstream_for(settings_for)
    results = await asyncio.gather(*(drain(core.stream(f"Hi {i}", [], "fast")) for i in range(20)))
    assert all(text == "y" * 40 for text, _ in results)
    assert fake.max_open_streams >= 10  # they ran side by side, not one after another


def test_content_parts_are_checked_before_anything_is_sent(settings_for) -> None:
    core = upstream_for(settings_for, CHATBOT_MODELS="fast=gpt-4.1-mini,budget=deepseek-chat")
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    prepared = core.prepare([{"type": "text", "text": "What is it?\x00"}, image], [], "fast")
    assert prepared.messages[-1] == {"role": "user", "content": [{"type": "text", "text": "What is it?"}, image]}
    assert prepared.prompt_tokens > 765  # the image counts at its fixed estimate
    assert core.prepare([{"type": "text", "text": "x"}, image], [], "budget").kind == "no_vision"
    assert core.prepare([{"type": "text", "text": "  "}], [], "fast").kind == "empty_message"
    foreign = {"type": "image_url", "image_url": {"url": "file:///etc/passwd"}}
    assert core.prepare([{"type": "text", "text": "hi"}, foreign, {"type": "audio"}, "junk"], [], "fast").messages[
        -1
    ]["content"] == [{"type": "text", "text": "hi"}]
    assert core.prepare([{"type": "text", "text": "x" * 300_000}], [], "fast").kind == "input_too_long"
    assert core.prepare([image] * 21, [], "fast").kind == "too_many_attachments"


async def test_an_image_part_reaches_the_upstream(fake: FakeUpstream, settings_for) -> None:
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    text, _ = await drain(upstream_for(settings_for).stream([{"type": "text", "text": "look"}, image], [], "fast"))
    assert text.endswith("you said look")
    assert fake.last.body["messages"][-1]["content"] == [{"type": "text", "text": "look"}, image]


def test_only_small_text_prompts_are_prepared_on_the_event_loop(settings_for) -> None:
    turn = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert prepares_inline("Hi", [])
    assert prepares_inline("Hi", turn * 4)  # 8 short messages
    assert not prepares_inline("Hi", turn * 5)  # more messages: counting them may be real work
    assert not prepares_inline("x" * 4_001, [])  # a long paste is tokenised in a thread
    assert not prepares_inline("Hi", [{"role": "user", "content": "y" * 4_000}])  # so is a long history
    assert not prepares_inline([{"type": "text", "text": "look"}], [])  # attachments
    assert prepares_inline("Hi", [{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}
    assert not prepares_inline("Hi", [{"role": "user", "content": [image]}])
    assert prepares_inline("Hi", History.of(turn, settings_for()))
    assert not prepares_inline("Hi", History.of(turn * 5, settings_for()))


async def test_inline_and_threaded_prepare_send_the_same_request(fake: FakeUpstream, settings_for) -> None:
    core = upstream_for(settings_for)
    turn = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    for history in (turn, turn * 5):  # the first is prepared inline, the second in a thread
        await drain(core.stream("again", history, "fast"))
        assert fake.last.body["messages"][1:] == [*history, {"role": "user", "content": "again"}]


def test_a_tokeniser_not_loaded_yet_keeps_prepare_off_the_event_loop(settings_for) -> None:
    from chatbot.core import tokens

    core = upstream_for(settings_for)
    name = tokens.counter_for("gpt-4.1-mini").encoding_name
    saved = tokens._encodings.pop(name, None)
    try:
        assert not core._counter_ready("fast")  # its first load reads a file: a thread does it
        core.prepare("a message not counted before: tokenised now", [], "fast")
        assert core._counter_ready("fast") and tokens.encoding_loaded(name)
    finally:
        if saved is not None:
            tokens._encodings[name] = saved


def test_warm_up_loads_the_offered_models_tokenisers(settings_for) -> None:
    from chatbot.core import tokens

    core = upstream_for(settings_for, CHATBOT_MODELS="fast=gpt-4.1-mini,old=gpt-4")
    names = {tokens.counter_for(m).encoding_name for m in ("gpt-4.1-mini", "gpt-4")}
    assert names == {"o200k_base", "cl100k_base"}
    saved = {n: tokens._encodings.pop(n) for n in names if n in tokens._encodings}
    try:
        core.warm_up_in_background().join(timeout=60)
        assert all(tokens.encoding_loaded(n) for n in names)
        assert core._counter_ready("fast") and core._counter_ready("old")
    finally:
        tokens._encodings.update(saved)
