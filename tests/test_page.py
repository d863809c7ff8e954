"""The chat page's layout and wiring (chatbot/web/page.py), read from the built Blocks without serving it:
what is on the page in which order for each setting, and that gradio_client's /chat is the only public
endpoint. The chat itself is driven through the running app in test_ui.py and test_browser.py."""

from __future__ import annotations

import gradio as gr
from conftest import make_settings

from chatbot.core.settings import Settings
from chatbot.core.upstream import Upstream
from chatbot.web.page import build_page
from chatbot.web.ui import ChatUI


def _page(settings: Settings | None = None, **env: str) -> gr.Blocks:
    settings = settings or make_settings("http://127.0.0.1:9/v1", **env)
    return build_page(ChatUI(settings, Upstream(settings)))


def _shown(demo: gr.Blocks) -> list[str]:
    """The elem_ids (else types) of the components a visitor sees, top to bottom, as the layout renders them."""
    config = demo.get_config_file()
    components = {c["id"]: c for c in config["components"]}
    order: list[str] = []

    def walk(node: dict) -> None:
        component = components.get(node["id"])  # the page itself is not a component
        if component is not None:
            if component["props"].get("visible") is False:
                return
            order.append(component["props"].get("elem_id") or component["type"])
        for child in node.get("children", []):
            walk(child)

    walk(config["layout"])
    return order


def _position(order: list[str], name: str) -> int:
    return order.index(name) if name in order else -1


def test_the_page_reads_top_to_bottom() -> None:
    """The chat and its box first; the model picker, the gauge and the session line right under the box."""
    order = _shown(_page())
    places = [_position(order, name) for name in ("chats-sidebar", "chatbot", "message", "model", "gauge",
                                                  "session-total", "user-key")]
    assert -1 not in places and places == sorted(places), order
    assert "demo-banner" not in order and "loginbutton" not in order


def test_the_settings_add_the_demo_banner_and_take_the_key_box_away() -> None:
    """Without CHATBOT_ALLOW_USER_KEY (and in the offline demo) the key box is nowhere on the page: before,
    ChatInterface put it in an "Additional inputs" accordion of its own, a box that did nothing."""
    no_key = _shown(_page(CHATBOT_ALLOW_USER_KEY="0"))
    assert "user-key" not in no_key and "accordion" not in no_key
    demo = _shown(_page(Settings.load([], environ={"CHATBOT_LIVE_MODELS": "0"}, env_file=None)))
    assert demo[0] == "sb-header" and demo[1] == "demo-banner"
    assert "user-key" not in demo and "accordion" not in demo  # the offline demo takes no key


def test_chat_and_compare_are_the_only_public_endpoints_and_document_their_parameters() -> None:
    info = _page().get_api_info()
    assert list(info["named_endpoints"]) == ["/chat", "/compare"] and not info.get("unnamed_endpoints")
    chat = info["named_endpoints"]["/chat"]
    assert [p["parameter_name"] for p in chat["parameters"]] == ["message", "model", "history", "api_key"]
    compare = info["named_endpoints"]["/compare"]  # Compare (chatbot/web/compare_view.py)
    assert [p["parameter_name"] for p in compare["parameters"]] == ["message", "models", "history", "api_key"]
