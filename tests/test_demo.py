"""Demo mode (chatbot/core/demo.py and the chat's view of it): a simulated reply shows no price, and the
reasoning model thinks first, as a real one does (issue 15, item 7)."""

from __future__ import annotations

import pytest

from chatbot.core import demo
from chatbot.core.demo import demo_http_client
from chatbot.core.settings import Settings
from chatbot.core.upstream import Upstream, make_client
from chatbot.core.usage import Totals
from chatbot.web.ui import COST_ID, ChatUI


def _demo() -> ChatUI:
    settings = Settings.load([], environ={"CHATBOT_LIVE_MODELS": "0"}, env_file=None)
    assert settings.demo
    return ChatUI(settings, Upstream(settings, make_client(settings, http_client=demo_http_client(settings))))


async def test_the_reasoning_model_thinks_and_no_simulated_reply_has_a_price(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "WORD_DELAY", 0.0)
    chat = _demo()
    for model, thinks in (("reasoning", True), ("fast", False)):
        view = chat.view("en")
        shown = [u async for u in chat.respond("Is 91 prime?", [], model, view=view)][-1]
        titles = [(m.get("metadata") or {}).get("title") for m in shown]
        assert ("Thinking" in titles) is thinks, titles
        assert "demo simulator" in view.reply
        cost = next(m for m in shown if (m.get("metadata") or {}).get("id") == COST_ID)
        assert "$" not in cost["metadata"]["title"] and "simulated" in cost["metadata"]["title"]
        assert cost["content"]["text"] == ""  # no list price to explain
        session = Totals().add(view.usage)
        assert "$" not in session.render("en", simulated=True) and "simulated" in session.render("en", True)


async def test_a_public_demo_does_not_tell_visitors_to_set_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "WORD_DELAY", 0.0)
    for public, told in (("1", False), ("0", True)):
        settings = Settings.load([], environ={"CHATBOT_LIVE_MODELS": "0", "CHATBOT_SHARE": public}, env_file=None)
        chat = ChatUI(settings, Upstream(settings, make_client(settings, http_client=demo_http_client(settings))))
        view = chat.view("en")
        [u async for u in chat.respond("Hi", [], "fast", view=view)]
        assert "demo simulator" in view.reply and ("OPENAI_API_KEY" in view.reply) is told
