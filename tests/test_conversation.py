"""One conversation turn for every face (chatbot/core/conversation.py): the chat tab, gradio_client's /chat
and the HTTP API all run ``turn`` and read its ReplyState, over real HTTP to the fake upstream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
from conftest import make_settings
from fake_upstream import Behaviour, FakeUpstream

from chatbot.core.conversation import turn
from chatbot.core.events import Done, ErrorEvent
from chatbot.core.limits import Visitor
from chatbot.core.reply import ReplyState
from chatbot.core.store import open_store
from chatbot.core.upstream import Upstream
from chatbot.http.schemas import ChatRequest
from chatbot.http.service import ChatService
from chatbot.web.ui import ChatUI, ReplyView

REPLY = "The same words, whichever door you came in by."
VISITOR = Visitor("ip:127.0.0.1")


async def core_face(upstream: Upstream) -> ReplyState:
    state = ReplyState()
    async for _ in turn(upstream, "Hi", [], "fast", visitor=VISITOR, state=state):
        pass
    return state


async def chat_tab(ui: ChatUI) -> ReplyState:
    view = ReplyView()
    async for _ in ui.respond("Hi", [], "fast", view=view):
        pass
    return view.state


async def gradio_chat(ui: ChatUI) -> str:
    shown = [text async for text in ui.chat_api("Hi", "fast")]
    return shown[-1]


async def http_api(service: ChatService) -> tuple[ReplyState, str]:
    reply = await service.begin("", ChatRequest(message="Hi", model="fast"), VISITOR)
    async for _ in reply.events():
        pass
    stored = await service.store.get(reply.turn.conversation_id, "")
    assert stored is not None
    return reply.state, stored.messages[-1].content


@pytest.fixture
async def faces(fake: FakeUpstream, tmp_path) -> AsyncIterator[tuple[Upstream, ChatUI, ChatService]]:
    """The core, the Gradio face and the HTTP face on one upstream (the API's store is SQLite)."""
    settings = make_settings(fake.base_url, CHATBOT_DB=str(tmp_path / "conversations.db"))
    upstream = Upstream(settings)
    service = ChatService(settings, upstream, open_store(settings))
    yield upstream, ChatUI(settings, upstream), service
    await service.drain()
    await service.store.close()



async def cancel_mid_reply(fake: FakeUpstream, events: Callable[[], AsyncIterator[object]]) -> None:
    """Read ``events()`` in a task, and cancel it once the third request's reply has begun streaming."""

    async def run() -> None:
        async for _ in events():
            pass

    task = asyncio.create_task(run())
    await fake.wait_for_async(lambda: len(fake.requests) == 3 and fake.last.first_byte_at is not None, timeout=20)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=20)

async def test_every_face_gives_the_same_reply_text_and_usage(fake: FakeUpstream, faces) -> None:
    upstream, ui, service = faces
    fake.default = Behaviour(reply=REPLY, chunk_size=5)
    core = await core_face(upstream)
    tab = await chat_tab(ui)
    shown = await gradio_chat(ui)
    api, stored = await http_api(service)
    assert core.complete and core.reply == REPLY and core.usage is not None
    assert [s.reply for s in (tab, api)] == [REPLY, REPLY] and shown == REPLY and stored == REPLY
    assert tab.usage == core.usage == api.usage
    assert tab.finish_reason == core.finish_reason == api.finish_reason == "stop"


async def test_every_face_reports_the_same_failure(fake: FakeUpstream, faces) -> None:
    upstream, ui, service = faces
    fake.default = Behaviour(reply=REPLY, chunk_size=5, cut_after=3)  # the connection drops midway
    core = await core_face(upstream)
    tab = await chat_tab(ui)
    shown = await gradio_chat(ui)
    api, stored = await http_api(service)
    assert core.error is not None and core.error.partial and not core.complete
    kinds = {s.error.error.kind for s in (core, tab, api) if s.error is not None}
    assert kinds == {core.error.error.kind}
    assert tab.failure() == core.failure() == api.failure()
    assert shown.endswith(f"⚠️ {core.failure()}") and shown.startswith(core.reply)
    assert stored == api.reply == core.reply


async def test_a_turn_ends_its_state_once_on_complete_error_and_cancel(fake: FakeUpstream, faces) -> None:
    upstream, _, _ = faces
    ends: list[str] = []

    def counted() -> ReplyState:
        state = ReplyState()
        state.on_end(lambda s: ends.append("complete" if s.complete else "error" if s.error else "cancelled"))
        return state

    fake.push(Behaviour(reply=REPLY), Behaviour(status=500), Behaviour(stall_before_first=30))
    for _ in range(2):
        async for _ in turn(upstream, "Hi", [], "fast", state=counted()):
            pass
    await cancel_mid_reply(fake, lambda: turn(upstream, "Hi", [], "fast", state=counted()))
    assert ends == ["complete", "error", "cancelled"]
    await fake.wait_for_async(lambda: fake.last.disconnected_at is not None, timeout=20)  # the provider is let go


async def test_the_api_stores_a_reply_once_however_it_ends(fake: FakeUpstream, faces) -> None:
    _, _, service = faces
    stored: list[tuple[str, str | None]] = []
    finish = service.checkpoints.finish

    async def counting(turn_, content, status, **fields):
        stored.append((status, fields.get("error")))
        return await finish(turn_, content, status, **fields)

    service.checkpoints.finish = counting  # type: ignore[method-assign]
    fake.push(Behaviour(reply=REPLY), Behaviour(status=500), Behaviour(stall_before_first=30))
    for _ in range(2):
        await http_api(service)
    reply = await service.begin("", ChatRequest(message="Hi", model="fast"), VISITOR)
    await cancel_mid_reply(fake, reply.events)
    await reply.save()  # what the response does after its body: nothing more is stored
    assert [s for s, _ in stored] == ["complete", "interrupted", "interrupted"]
    assert stored[2][1] == "disconnected" and stored[1][1] not in (None, "disconnected")


async def test_the_old_name_is_the_turn(fake: FakeUpstream, faces) -> None:
    upstream, _, _ = faces
    events = [e async for e in upstream.stream("Hi", [], "fast")]
    assert isinstance(events[-1], Done) and not any(isinstance(e, ErrorEvent) for e in events)
