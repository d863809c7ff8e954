"""The HTTP API's rendering of a reply (chatbot/http/sse.py): FastAPI's SSE encoding and response class."""

from __future__ import annotations

import re

import httpx
from conftest import make_settings
from fake_upstream import Behaviour, FakeUpstream
from fastapi import FastAPI

from chatbot.core.limits import Visitor
from chatbot.core.store import open_store
from chatbot.core.upstream import Upstream
from chatbot.http.schemas import ChatRequest
from chatbot.http.service import ChatService
from chatbot.http.sse import EventStream, sse_data


def test_text_events_keep_every_line_end() -> None:
    assert sse_data("a\r\nb\rc\n") == b"data: a\ndata: b\ndata: c\ndata: \n\n"


async def test_the_event_stream_sends_the_reply_and_stores_it_once(fake: FakeUpstream, tmp_path) -> None:
    settings = make_settings(fake.base_url, CHATBOT_DB=str(tmp_path / "c.db"))
    service = ChatService(settings, Upstream(settings), open_store(settings))
    fake.default = Behaviour(reply="one\ntwo", chunk_size=50)
    app = FastAPI()
    replies = []

    @app.post("/stream")
    async def stream(format: str = "text") -> EventStream:
        reply = await service.begin("", ChatRequest(message="Hi", model="fast"), Visitor("ip:127.0.0.1"))
        replies.append(reply)
        return EventStream(reply, format == "json", headers={"X-Conversation-ID": reply.turn.conversation_id})

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        plain = await client.post("/stream")
        typed = await client.post("/stream", params={"format": "json"})
    assert plain.headers["content-type"].startswith("text/event-stream")
    assert plain.content.endswith(b"data: one\ndata: two\n\ndata: [DONE]\n\n")
    assert re.search(rb'data: \{"type":"done".*"saved":true', typed.content)
    stored = [await service.store.get(r.turn.conversation_id, "") for r in replies]
    assert [c.messages[-1].content for c in stored if c] == ["one\ntwo", "one\ntwo"]
    assert all(r.saved and r.stored == "stored" for r in replies)
    await service.drain()
    await service.store.close()
