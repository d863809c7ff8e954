"""chatbot/compat_sdk.py: the SDK's aiohttp transport reads every reply and every failure as httpx2's did."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import httpx2
import openai
import pytest
from conftest import make_settings
from fake_upstream import Behaviour, FakeUpstream
from openai._vendor.httpx_aiohttp.transport import AiohttpTransport

from chatbot.compat_sdk import AioHttpClient, MappedTransport, as_httpx_error
from chatbot.core.events import ErrorEvent, Event, ReasoningDelta, TextDelta
from chatbot.core.reply import ReplyState
from chatbot.core.upstream import Upstream, make_client


def _httpx2_upstream(settings) -> Upstream:  # noqa: ANN001 - Settings
    """The app as it was before chatbot.compat_sdk: the SDK's httpx2 client."""
    return Upstream(settings, make_client(settings, http_client=openai.DefaultAsyncHttpxClient()))


async def _read(upstream: Upstream) -> tuple[str, str, list[Event]]:
    """(text, reasoning, every event but the text, reasoning and idle ones) of one reply."""
    state, others = ReplyState(), []
    try:
        async for event in upstream.stream("Hi", [], "fast"):
            if state.apply(event) and not isinstance(event, TextDelta | ReasoningDelta):
                others.append(event)
    finally:
        await upstream.client.close()
    return state.reply, "".join(state.reasoning), others


async def test_every_transport_of_the_client_raises_httpx2s_errors() -> None:
    # touches httpx2.AsyncClient._init_transport / _init_proxy_transport and the SDK's AiohttpTransport
    for client in (AioHttpClient(), AioHttpClient(proxy="http://127.0.0.1:9")):
        transports = [client._transport, *client._mounts.values()]
        assert all(isinstance(t, MappedTransport) and isinstance(t.inner, AiohttpTransport) for t in transports)
        await client.aclose()
    settings = make_settings("http://127.0.0.1:9/v1")
    for app_client in (make_client(settings), make_client(settings, api_key="sk-visitors-own-key")):
        assert isinstance(app_client._client, AioHttpClient)  # the shared client and a visitor's own
        await app_client.close()


@pytest.mark.parametrize("behaviour", [
    Behaviour(reply="one two three four five six seven", chunk_size=3, delay=0.01),
    Behaviour(reply="ação, 中文 and emoji 😀 split anywhere", chunk_size=1),
    Behaviour(reply="the answer", reasoning="first a thought", chunk_size=2),
    Behaviour(reply="after thinking", reasoning="hidden", think_tags=True, chunk_size=3),
    Behaviour(reply=" ".join(f"w{i}" for i in range(300)), chunk_size=2),  # a burst: deltas merge
    Behaviour(reply="half of it and then", cut_after=3),
    Behaviour(reply="cut by an error", error_chunk_after=2),
    Behaviour(status=429, headers={"Retry-After": "120"}),
], ids=["paced", "unicode", "reasoning", "think-tags", "burst", "cut", "error-chunk", "rate-limited"])
async def test_a_reply_reads_the_same_through_aiohttp_as_through_httpx2(
    fake: FakeUpstream, settings_for, behaviour: Behaviour,
) -> None:
    fake.push(behaviour, behaviour)
    settings = settings_for()
    before = await _read(_httpx2_upstream(settings))
    after = await _read(Upstream(settings))
    assert after == before
    assert before[0] or isinstance(before[2][-1], ErrorEvent)


Serve = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _closes(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    writer.close()


async def _not_http(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")
    await writer.drain()
    writer.close()


async def _cut_mid_event(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read(65536)
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                 b'40\r\ndata: {"choices":[{"delta":{"content":"hel')
    await writer.drain()
    writer.close()


async def _server(serve: Serve | None) -> AsyncIterator[str]:
    """A base URL on loopback served by ``serve``; with None, a port nobody listens on."""
    server = await asyncio.start_server(serve or _closes, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    if serve is None:
        server.close()
        await server.wait_closed()
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.close()


@pytest.mark.parametrize(("serve", "kind"), [
    (None, "connection"), (_closes, "cut"), (_not_http, "cut"), (_cut_mid_event, "cut"),
], ids=["refused", "closed-before-answering", "not-http", "cut-mid-event"])
async def test_a_failure_reads_the_same_through_aiohttp_as_through_httpx2(serve: Serve | None, kind: str) -> None:
    # The SDK's adapter alone said "timeout" for the first two and let aiohttp's own error through ("internal")
    # for the third.
    async for url in _server(serve):
        settings = make_settings(url)
        before = await _read(_httpx2_upstream(settings))
        after = await _read(Upstream(settings))
        kinds = [e.error.kind for e in (*before[2], *after[2]) if isinstance(e, ErrorEvent)]
        assert kinds == [kind, kind]


class _Failing(httpx2.AsyncBaseTransport):
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        raise self.exc


async def test_a_translated_error_keeps_aiohttps_as_its_cause() -> None:
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    disconnected = aiohttp.ServerDisconnectedError()
    with pytest.raises(httpx2.RemoteProtocolError) as raised:
        await MappedTransport(_Failing(disconnected)).handle_async_request(request)
    assert raised.value.__cause__ is disconnected
    own = httpx2.ReadTimeout("slow")
    with pytest.raises(httpx2.ReadTimeout) as raised_own:
        await MappedTransport(_Failing(own)).handle_async_request(request)
    assert raised_own.value is own


def test_only_aiohttp_errors_are_translated() -> None:
    other = ValueError("not a transport's")
    assert as_httpx_error(other) is other
    timeout = httpx2.ReadTimeout("slow")
    assert as_httpx_error(timeout) is timeout  # httpx2's own, with no aiohttp cause
    mapped = as_httpx_error(aiohttp.ServerDisconnectedError())
    assert isinstance(mapped, httpx2.RemoteProtocolError) and isinstance(mapped.__cause__, aiohttp.ClientError)
