"""The fake upstream behaves like OpenAI for the real openai SDK, and misbehaves on demand."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import openai
import pytest

try:
    from fake_upstream import Behaviour, FakeUpstream, parse_magic
except ImportError:  # pragma: no cover
    from tests.fake_upstream import Behaviour, FakeUpstream, parse_magic

MESSAGES: list[Any] = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "ping"}]


def client(fake: FakeUpstream, **kwargs: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test-key", max_retries=0, **kwargs)


async def collect(stream: Any) -> list[Any]:
    return [chunk async for chunk in stream]


def contents(chunks: list[Any]) -> list[str]:
    return [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]


@pytest.mark.asyncio
async def test_stream_arrives_in_several_pieces(fake: FakeUpstream) -> None:
    async with client(fake) as c:
        stream = await c.chat.completions.create(model="fake/small", messages=MESSAGES, stream=True)
        chunks = await collect(stream)
    pieces = contents(chunks)
    assert "".join(pieces) == "Hello from fake/small: you said ping"
    assert len(pieces) > 3 and all(len(p) <= 4 for p in pieces)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    rec = fake.last
    assert rec.body["messages"] == MESSAGES and rec.body["stream"] is True
    assert rec.headers["authorization"] == "Bearer sk-test-key"
    assert rec.chunks_sent == len(pieces)
    assert rec.finished_at is not None and rec.disconnected_at is None
    assert rec.received_at <= rec.first_byte_at <= rec.finished_at  # type: ignore[operator]


@pytest.mark.asyncio
async def test_raw_sse_wire_format(fake: FakeUpstream) -> None:
    fake.push(reply="abcdefgh", chunk_size=4)
    async with httpx2.AsyncClient() as http:
        resp = await http.post(
            fake.base_url + "/chat/completions",
            json={"model": "m", "messages": MESSAGES, "stream": True},
        )
    assert resp.headers["content-type"].startswith("text/event-stream")
    events = resp.text.split("\n\n")
    assert events[-2:] == ["data: [DONE]", ""]
    assert all(e.startswith("data: {") for e in events[:-2])
    assert len(events[:-2]) == 4  # role chunk, 2 content chunks, finish chunk


@pytest.mark.parametrize(
    ("status", "exc_class"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (402, openai.APIStatusError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (413, openai.APIStatusError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (502, openai.InternalServerError),
        (503, openai.InternalServerError),
    ],
)
@pytest.mark.parametrize("stream", [True, False])
@pytest.mark.asyncio
async def test_error_status_raises_sdk_class(
    fake: FakeUpstream, status: int, exc_class: type[openai.APIStatusError], stream: bool
) -> None:
    fake.push(status=status, headers={"Retry-After": "2"})
    async with client(fake) as c:
        with pytest.raises(openai.APIStatusError) as info:
            await c.chat.completions.create(model="fake/small", messages=MESSAGES, stream=stream)
    assert type(info.value) is exc_class
    assert info.value.status_code == status
    assert info.value.response.headers["retry-after"] == "2"
    body = info.value.body
    assert isinstance(body, dict) and body["message"] and body["type"]
    assert fake.last.status == status


@pytest.mark.asyncio
async def test_context_length_exceeded_code(fake: FakeUpstream) -> None:
    fake.push(status=400, error_code="context_length_exceeded")
    async with client(fake) as c:
        with pytest.raises(openai.BadRequestError) as info:
            await c.chat.completions.create(model="fake/small", messages=MESSAGES)
    assert info.value.code == "context_length_exceeded"
    assert "maximum context length is 8192 tokens" in info.value.message


@pytest.mark.asyncio
async def test_echo_auth_in_errors(fake: FakeUpstream) -> None:
    fake.push(status=401, echo_auth_in_errors=True)
    async with client(fake) as c:
        with pytest.raises(openai.AuthenticationError) as info:
            await c.chat.completions.create(model="fake/small", messages=MESSAGES)
    assert "sk-test-key" in info.value.message
    fake.push(status=401)
    async with client(fake) as c:
        with pytest.raises(openai.AuthenticationError) as info:
            await c.chat.completions.create(model="fake/small", messages=MESSAGES)
    assert "sk-test-key" not in str(info.value.body)


@pytest.mark.asyncio
async def test_cut_after_raises_mid_iteration(fake: FakeUpstream) -> None:
    fake.push(cut_after=3)
    received: list[str] = []
    async with client(fake) as c:
        stream = await c.chat.completions.create(model="fake/small", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIConnectionError) as info:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    received.append(chunk.choices[0].delta.content)
    assert isinstance(info.value.__cause__, httpx2.RemoteProtocolError)
    assert received == ["Hell", "o fr", "om f"]
    rec = fake.last
    assert rec.chunks_sent == 3 and rec.cut_at is not None
    assert rec.finished_at is None and rec.disconnected_at is None


@pytest.mark.asyncio
async def test_error_chunk_after_raises_api_error(fake: FakeUpstream) -> None:
    fake.push(error_chunk_after=2)
    received: list[str] = []
    async with client(fake) as c:
        stream = await c.chat.completions.create(model="fake/small", messages=MESSAGES, stream=True)
        with pytest.raises(openai.APIError) as info:
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    received.append(chunk.choices[0].delta.content)
    assert type(info.value) is openai.APIError
    assert info.value.body == {"message": "Upstream provider error (fake)", "code": 502}
    assert received == ["Hell", "o fr"]
    assert fake.last.error_chunk_sent and fake.last.finished_at is not None


@pytest.mark.asyncio
async def test_stall_then_close_records_disconnect(fake: FakeUpstream) -> None:
    fake.push(stall_before_first=30)
    async with client(fake) as c:
        # headers are flushed before the 30 s stall: create() returns within a bounded wait
        stream = await asyncio.wait_for(
            c.chat.completions.create(model="fake/small", messages=MESSAGES, stream=True), timeout=5
        )
        async with stream:
            await fake.wait_for_async(lambda: fake.open_streams == 1)
            await asyncio.sleep(0.1)
        await fake.wait_for_async(lambda: fake.last.disconnected_at, timeout=1.0)  # within 1 s of closing
    rec = fake.last
    assert rec.first_byte_at is not None and rec.first_token_at is None
    assert rec.finished_at is None and rec.chunks_sent == 0
    await fake.wait_for_async(lambda: fake.open_streams == 0)


@pytest.mark.asyncio
async def test_close_mid_stream_records_disconnect(fake: FakeUpstream) -> None:
    fake.push(delay=0.2)
    async with client(fake) as c:
        stream = await c.chat.completions.create(model="fake/small", messages=MESSAGES, stream=True)
        async with stream:
            got = [await stream.__anext__() for _ in range(3)]
        await fake.wait_for_async(lambda: fake.last.disconnected_at, timeout=1.0)  # within 1 s of closing
    assert got[2].choices[0].delta.content == "o fr"
    assert fake.last.finished_at is None and fake.last.chunks_sent < 5


@pytest.mark.asyncio
async def test_non_stream_stall_timeout_records_disconnect(fake: FakeUpstream) -> None:
    fake.push(stall_before_first=30)
    async with client(fake, timeout=0.3) as c:
        with pytest.raises(openai.APITimeoutError):
            await c.chat.completions.create(model="fake/small", messages=MESSAGES)
        await fake.wait_for_async(lambda: fake.last.disconnected_at, timeout=1.0)  # within 1 s of giving up


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
@pytest.mark.asyncio
async def test_reasoning_deltas_before_content(fake: FakeUpstream, field: str) -> None:
    fake.push(reasoning="thinking hard", reasoning_field=field, reply="done")
    async with client(fake) as c:
        stream = await c.chat.completions.create(model="fake/small", messages=MESSAGES, stream=True)
        chunks = await collect(stream)
    thoughts = [getattr(c.choices[0].delta, field, None) for c in chunks]
    thoughts = [t for t in thoughts if t]
    assert "".join(thoughts) == "thinking hard" and len(thoughts) > 1
    assert (chunks[1].choices[0].delta.model_extra or {})[field] == "thin"
    first_content = next(i for i, c in enumerate(chunks) if c.choices[0].delta.content)
    last_thought = max(i for i, c in enumerate(chunks) if getattr(c.choices[0].delta, field, None))
    assert last_thought < first_content
    assert "".join(contents(chunks)) == "done"


@pytest.mark.asyncio
async def test_think_tags_inside_content(fake: FakeUpstream) -> None:
    fake.push(reasoning="hmm", think_tags=True, reply="ok")
    async with client(fake) as c:
        stream = await c.chat.completions.create(model="fake/small", messages=MESSAGES, stream=True)
        chunks = await collect(stream)
    assert "".join(contents(chunks)) == "<think>hmm</think>ok"
    assert not any(getattr(c.choices[0].delta, "reasoning_content", None) for c in chunks)


@pytest.mark.asyncio
async def test_usage_chunk_has_empty_choices(fake: FakeUpstream) -> None:
    fake.push(cost=0.00042)
    async with client(fake) as c:
        stream = await c.chat.completions.create(
            model="fake/small", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = await collect(stream)
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == fake.last.chunks_sent
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert (last.usage.model_extra or {})["cost"] == pytest.approx(0.00042)
    assert all(c.usage is None for c in chunks[:-1])

    async with client(fake) as c:  # no include_usage -> no usage chunk
        chunks = await collect(await c.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert all(c.choices for c in chunks)


@pytest.mark.asyncio
async def test_non_stream_completion(fake: FakeUpstream) -> None:
    fake.push(reasoning="why", reply="because")
    async with client(fake) as c:
        resp = await c.chat.completions.create(model="fake/large", messages=MESSAGES)
    assert resp.object == "chat.completion" and resp.model == "fake/large"
    assert resp.choices[0].message.content == "because"
    assert (resp.choices[0].message.model_extra or {})["reasoning_content"] == "why"
    assert resp.usage is not None and resp.usage.total_tokens > 0
    assert fake.last.stream is False and fake.last.finished_at is not None


@pytest.mark.asyncio
async def test_push_is_fifo_then_default(fake: FakeUpstream) -> None:
    fake.push(Behaviour(reply="one"), Behaviour(reply="two"))
    fake.default = Behaviour(reply="default")
    async with client(fake) as c:
        replies = [
            (await c.chat.completions.create(model="m", messages=MESSAGES)).choices[0].message.content
            for _ in range(3)
        ]
    assert replies == ["one", "two", "default"]
    assert [r.index for r in fake.requests] == sorted(r.index for r in fake.requests)
    fake.reset()
    assert fake.requests == [] and fake.queued == 0 and fake.default == Behaviour()


@pytest.mark.asyncio
async def test_magic_tags_in_user_message(fake: FakeUpstream) -> None:
    async with client(fake) as c:
        with pytest.raises(openai.RateLimitError) as info:
            await c.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi [[status=429]] [[retry_after=7]]"}]
            )
        assert info.value.response.headers["retry-after"] == "7"

        resp = await c.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "[[reply_lines=3]] scroll"}]
        )
        assert resp.choices[0].message.content == "Line 1 of 3.\nLine 2 of 3.\nLine 3 of 3."

        stream = await c.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x [[cut=2]] [[delay=0.01]]"}], stream=True
        )
        with pytest.raises(openai.APIConnectionError):
            await collect(stream)

        resp = await c.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "a [[tps=500]]"}]
        )
        assert resp.choices[0].message.content == "Hello from m: you said a"

        with pytest.raises(openai.BadRequestError) as bad:
            await c.chat.completions.create(model="m", messages=[{"role": "user", "content": "[[nope=1]]"}])
        assert "nope" in bad.value.message


def test_parse_magic_conversions() -> None:
    overrides, text = parse_magic("hi [[stall=1.5]] [[cut=3]] [[think=true]] [[reasoning=a, b]] there")
    assert overrides == {"stall_before_first": 1.5, "cut_after": 3, "think_tags": True, "reasoning": "a, b"}
    assert text == "hi there"
    assert parse_magic("[[error_chunk=none]]")[0] == {"error_chunk_after": None}


@pytest.mark.asyncio
async def test_models_endpoint(fake: FakeUpstream) -> None:
    fake.models = [{"id": "a/one", "context_length": 1000}, "b/two"]
    async with client(fake) as c:
        page = await c.models.list()
        assert [m.id for m in page.data] == ["a/one", "b/two"]
        extra = page.data[0].model_extra or {}
        assert extra["context_length"] == 1000
        assert extra["pricing"] == {"prompt": "0.000001", "completion": "0.000002"}

        fake.models_status = 503
        with pytest.raises(openai.InternalServerError):
            await c.models.list()

        fake.models_status = None
        fake.models_delay = 0.3  # a client that waits less than the delay times out; one that waits more does not
        with pytest.raises(openai.APITimeoutError):
            await c.with_options(timeout=0.05, max_retries=0).models.list()
        await c.models.list()
    assert fake.models_calls == 4


@pytest.mark.asyncio
async def test_concurrent_streams_are_counted(fake: FakeUpstream) -> None:
    fake.default = Behaviour(delay=0.05, reply="x" * 16)

    async def one(c: openai.AsyncOpenAI) -> str:
        return "".join(
            contents(
                await collect(await c.chat.completions.create(model="m", messages=MESSAGES, stream=True))
            )
        )

    async with client(fake) as c:
        replies = await asyncio.gather(*(one(c) for _ in range(4)))
    assert replies == ["x" * 16] * 4
    assert fake.max_open_streams == 4
    await fake.wait_for_async(lambda: fake.open_streams == 0)


def test_standalone_start_stop_and_wait_for() -> None:
    fake = FakeUpstream().start()
    try:
        assert fake.base_url.startswith("http://127.0.0.1:") and fake.base_url.endswith("/v1")
        resp = httpx2.get(fake.base_url + "/models")
        assert resp.status_code == 200 and resp.json()["object"] == "list"
        with pytest.raises(TimeoutError):
            fake.wait_for(lambda: fake.last, timeout=0.05)
    finally:
        fake.stop()
    assert not fake.running
    with pytest.raises(httpx2.ConnectError):
        httpx2.get(fake.base_url + "/models")
