"""The chat settings panel (chatbot/web/chat_settings.py): the operator fixes or hides it, presets fill the
system prompt in the visitor's language, and the operator's own prompt never reaches the page."""

from __future__ import annotations

import json

import pytest
from conftest import make_settings

from chatbot.core.i18n import text
from chatbot.core.upstream import Upstream
from chatbot.web.chat_settings import ChatSettings
from chatbot.web.page import build_page
from chatbot.web.ui import ChatUI


def _props(**env: str) -> dict[str, dict]:
    settings = make_settings("http://127.0.0.1:9/v1", CHATBOT_SYSTEM_PROMPT="Operator secret prompt.", **env)
    config = build_page(ChatUI(settings, Upstream(settings))).get_config_file()
    assert "Operator secret prompt." not in json.dumps(config, default=str)
    return {c["props"]["elem_id"]: c["props"] for c in config["components"] if c["props"].get("elem_id")}


@pytest.mark.parametrize(("mode", "visible", "interactive"), [
    ("edit", True, True), ("fixed", True, False), ("hidden", False, False),
])
def test_the_operator_can_fix_or_hide_the_panel(mode: str, visible: bool, interactive: bool | None) -> None:
    props = _props(CHATBOT_CHAT_SETTINGS=mode)
    assert props["chat-settings"].get("visible", True) is visible
    for elem_id in ("chat-preset", "chat-system", "chat-temperature", "chat-max-tokens"):
        assert props[elem_id].get("interactive") is interactive
    assert not props["chat-system"].get("value")  # empty: the app's own prompt, never shown


class Spanish:
    headers = {"accept-language": "es-ES"}


def test_presets_fill_the_prompt_in_the_visitors_language_and_values_round_trip() -> None:
    panel = ChatSettings(make_settings(None))
    assert panel.preset_prompt("teacher", Spanish()) == text("prompt_teacher", "es")  # type: ignore[arg-type]
    assert panel.preset_prompt("default", Spanish()) == "" == panel.preset_prompt("evil", Spanish())  # type: ignore[arg-type]
    params = ChatSettings.params("Be brief.", 0.5, 300)
    assert ChatSettings.values({"settings": params.as_dict()}) == ("Be brief.", 0.5, 300)
    assert ChatSettings.values(None) == ("", None, None)


def _used(gauge: str) -> int:
    return int(gauge.split('data-used="')[1].split('"')[0])


@pytest.mark.parametrize("mode", ["edit", "fixed"])
def test_the_gauge_counts_the_system_prompt_that_will_be_sent(mode: str) -> None:
    """The chat's own prompt where visitors may set it (the operator's is replaced), else the operator's."""
    settings = make_settings("http://127.0.0.1:9/v1", CHATBOT_SYSTEM_PROMPT="Be brief.", CHATBOT_CHAT_SETTINGS=mode)
    chat = ChatUI(settings, Upstream(settings))
    history = [{"role": "user", "content": "Hello"}]
    own = "You are a patient teacher. " * 50
    operator, chosen = _used(chat.gauge("fast", history)), _used(chat.gauge("fast", history, "en", None, own))
    if mode == "edit":
        assert chosen > operator + 200  # the chat's prompt is the one sent
    else:
        assert chosen == operator  # ignored: the operator fixed the settings
    assert _used(chat.gauge("fast", history, "en", None, "")) == operator  # empty: the app's own prompt
