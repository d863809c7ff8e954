"""A chat's own settings (chatbot/core/params.py): cleaned from untrusted input, the operator's rules, and
what reaches the provider over real HTTP (the fake upstream records each request)."""

from __future__ import annotations

import json

import pytest
from conftest import make_settings
from fake_upstream import FakeUpstream

from chatbot.core.conversation import turn
from chatbot.core.params import Params, effective
from chatbot.core.reply import ReplyState
from chatbot.core.upstream import Upstream
from chatbot.web.ui import ChatUI, ReplyView


def test_untrusted_values_are_bounded_or_dropped() -> None:
    assert Params.of(None) == Params()
    assert Params.of({"system": "  Be brief.\x00 ", "temperature": 9, "max_tokens": 300.7}) == Params(
        "Be brief.", 2.0, 300)
    assert Params.of({"system": 5, "temperature": True, "max_tokens": -1}) == Params()
    assert Params.of({"temperature": float("nan"), "max_tokens": "12"}) == Params()
    assert len(Params.of({"system": "x" * 50_000}).system or "") == 8_000
    assert Params.of(Params("a", 0.5, 10).as_dict()) == Params("a", 0.5, 10)
    assert Params(None, 0.0, None).as_dict() == {"temperature": 0.0}


def test_the_operator_can_fix_the_settings() -> None:
    mine = Params("Answer in French.", 0.3, 100)
    editable = make_settings(None, CHATBOT_SYSTEM_PROMPT="Operator prompt.")
    assert effective(mine, editable) == mine
    assert effective(Params(), editable) == Params("Operator prompt.", None, None)
    for mode in ("fixed", "hidden"):
        fixed = make_settings(None, CHATBOT_CHAT_SETTINGS=mode, CHATBOT_SYSTEM_PROMPT="Operator prompt.",
                              CHATBOT_TEMPERATURE="0.7")
        assert effective(mine, fixed) == Params("Operator prompt.", 0.7, None)


async def test_a_chats_settings_reach_the_provider_under_the_owners_cap(fake: FakeUpstream) -> None:
    settings = make_settings(fake.base_url, CHATBOT_MAX_TOKENS="500")
    upstream = Upstream(settings)
    mine = Params("You are a pirate.", 0.25, 200)
    async for _ in turn(upstream, "Hi", [], "fast", state=ReplyState(), params=mine):
        pass
    body = fake.last.body
    assert body["messages"][0] == {"role": "system", "content": "You are a pirate."}
    assert body["temperature"] == 0.25 and body["max_tokens"] == 200
    # A reply length above the owner's ceiling is sent as the ceiling: the spending limit holds.
    async for _ in turn(upstream, "Hi", [], "fast", state=ReplyState(), params=Params(max_tokens=100_000)):
        pass
    assert fake.last.body["max_tokens"] == 500 and "temperature" not in fake.last.body
    assert fake.last.body["messages"][0]["content"] == settings.system_prompt


@pytest.mark.parametrize("mode", ["fixed", "hidden"])
async def test_the_chat_tab_sends_them_unless_the_operator_fixed_them(fake: FakeUpstream, mode: str) -> None:
    chat = ChatUI(make_settings(fake.base_url), Upstream(make_settings(fake.base_url)))
    async for _ in chat.respond("Hi", [], "fast", view=ReplyView(), params=Params("Rhyme.", 1.5, 64)):
        pass
    assert fake.last.body["temperature"] == 1.5 and fake.last.body["messages"][0]["content"] == "Rhyme."
    fixed = make_settings(fake.base_url, CHATBOT_CHAT_SETTINGS=mode)
    chat = ChatUI(fixed, Upstream(fixed))
    async for _ in chat.respond("Hi", [], "fast", view=ReplyView(), params=Params("Rhyme.", 1.5, 64)):
        pass
    assert "temperature" not in fake.last.body and fake.last.body["messages"][0]["content"] != "Rhyme."
    assert fake.last.body["max_tokens"] > 64


async def test_the_http_api_passes_them_too(fake: FakeUpstream, tmp_path) -> None:
    """POST /chat's optional system, temperature and max_tokens (the request schema, then the turn)."""
    from chatbot.core.limits import Visitor
    from chatbot.core.store import open_store
    from chatbot.http.schemas import ChatRequest
    from chatbot.http.service import ChatService

    settings = make_settings(fake.base_url, CHATBOT_DB=str(tmp_path / "api.db"), CHATBOT_MAX_TOKENS="300")
    service = ChatService(settings, Upstream(settings), open_store(settings))
    try:
        body = {"message": "Hi", "system": "Talk like a robot.", "temperature": 0.9, "max_tokens": 9_999}
        reply = await service.begin("", ChatRequest.model_validate_json(json.dumps(body)), Visitor("ip:127.0.0.1"))
        async for _ in reply.events():
            pass
        sent = fake.last.body
        assert sent["messages"][0]["content"] == "Talk like a robot." and sent["temperature"] == 0.9
        assert sent["max_tokens"] == 300  # the owner's cap holds
        with pytest.raises(ValueError):
            ChatRequest.model_validate({"message": "Hi", "temperature": 3})
    finally:
        await service.drain()
        await service.store.close()
