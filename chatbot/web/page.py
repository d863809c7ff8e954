"""The chat page: the Gradio Blocks layout around :class:`~chatbot.web.ui.ChatUI` and the events that wire it.

Layout, top to bottom: the header (and the demo banner), the saved-chats sidebar, the Hugging Face login
button (on a Space with hf_oauth), the model picker, the context gauge, the visitor's own key (when allowed),
the chat with its message box, the session total. The chat logic (replies, history, gauge, visitor)
stays in :mod:`chatbot.web.ui`; this module only lays it out and wires its events (private, but for
gradio_client's ``/chat``), in the order the page has always registered them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import gradio as gr

from chatbot.compat import hide_progress, keep_typed_text, name_unnamed_controls, uploaded_by_gradio
from chatbot.compat_chat import track_states_by_step
from chatbot.compat_postprocess import inline_postprocess
from chatbot.compat_steps import reply_steps
from chatbot.core.attachments import FILE_TYPES
from chatbot.core.catalogue import Catalogue
from chatbot.core.i18n import language_of
from chatbot.core.settings import Settings
from chatbot.core.usage import Totals
from chatbot.web.a11y import BROWSER_TEXTS
from chatbot.web.chat_settings import ChatSettings
from chatbot.web.chats import browser_secret
from chatbot.web.chats_panel import SIDE_CONCURRENCY, ChatsPanel
from chatbot.web.compare_view import CompareView, compare_api
from chatbot.web.first_screen import chat_height, wire_first_screen
from chatbot.web.labels import ui
from chatbot.web.message_box import MessageBox
from chatbot.web.message_steps import cheaper_message
from chatbot.web.stopped import wire_stopped
from chatbot.web.ui import ChatUI

log = logging.getLogger("switchboard.ui")

#: Math in replies: $$…$$ and \[…\] as blocks, $…$ and \(…\) inline (KaTeX, in Gradio's Chatbot).
MATH_DELIMITERS: list[dict[str, str | bool]] = [
    {"left": "$$", "right": "$$", "display": True}, {"left": "\\[", "right": "\\]", "display": True},
    {"left": "$", "right": "$", "display": False}, {"left": "\\(", "right": "\\)", "display": False},
]


def build_page(chat: ChatUI) -> gr.Blocks:
    """The whole page for ``chat`` (not queued, not launched: app.py does that)."""
    settings = chat.settings
    # delete_cache: uploads and exports older than a day leave Gradio's cache (checked hourly).
    with gr.Blocks(
        title="Switchboard", analytics_enabled=False, fill_height=True, delete_cache=(3_600, 86_400)
    ) as demo:
        _header(settings)
        chat.files.uploaded = uploaded_by_gradio(demo)
        panel = ChatsPanel(browser_secret(settings), chat.gauge, chat.model_update, chat.files, chat.replying)
        chat_settings = ChatSettings(settings)  # the chat's own system prompt, temperature, reply length
        with gr.Sidebar(label=ui("conversations"), open=True, elem_id="chats-sidebar"):
            panel.render()
            chat_settings.render()
        if settings.hf_oauth:  # signed-in Hugging Face users get the higher limits
            gr.LoginButton()
        # The model picker, the gauge and the session line sit under the message box (rendered there,
        # after the chat; made here because the chat takes the picker as an input).
        controls, model, gauge, session, user_key = _controls(settings, chat.upstream.catalogue)
        chatbot, textbox = _chat_area(chat_height(banner=settings.demo))
        totals = gr.State(Totals().as_dict())
        finished = gr.State(None)
        chat_interface = gr.ChatInterface(
            _respond(chat),
            multimodal=True,
            chatbot=chatbot,
            textbox=textbox,
            additional_inputs=[model, user_key, totals, panel.shown, *chat_settings.inputs],
            additional_outputs=[totals, finished],
            concurrency_limit=None,
            cache_examples=False,
            api_visibility="private",
            fill_height=True,
            show_progress="hidden",  # no overlay or timer over the chat and the box (the reply streams)
            editable=True,  # a sent message is edited in place, and answered again
        )
        controls.render()
        CompareView(chat).render(chatbot=chatbot, chatbot_state=chat_interface.chatbot_state, model=model,
                                 user_key=user_key, finished=finished, shown=panel.shown)
        _wire_side_views(chat, model=model, chatbot=chatbot, gauge=gauge, finished=finished, session=session,
                         system=chat_settings.system)
        wire_first_screen(chat, demo, model=model, chatbot=chatbot, textbox=textbox, gauge=gauge,
                          session=session, totals=totals)
        stop = wire_stopped(chat, textbox=textbox, chatbot=chatbot, chatbot_state=chat_interface.chatbot_state,
                            model=model, totals=totals, session=session)
        panel.wire(
            demo, chatbot=chatbot, chatbot_state=chat_interface.chatbot_state, model=model, gauge=gauge,
            finished=finished, textbox=textbox, sent=chat_interface.saved_input, settings=chat_settings.inputs,
            stop=stop,
        )
        chat_settings.wire()
        gr.api(_chat_api(chat), api_name="chat", concurrency_limit=None)
        gr.api(compare_api(chat), api_name="compare", concurrency_limit=None)  # Compare: chatbot.web.compare_view
        name_unnamed_controls(demo, textbox, BROWSER_TEXTS)  # browser-only; last: the others keep their indices
    hide_progress(demo, [chatbot, textbox])  # no overlay or timer on the chat and its box, whichever event
    keep_typed_text(demo, textbox)  # the end of a reply's chain no longer empties the (never locked) box
    cheaper_message(demo, chat_interface, panel, finished)  # a message: 3 server requests, not 12 (message_steps.py)
    inline_postprocess(demo, reply_steps(demo, chat_interface))  # a text reply's updates skip the thread hop
    track_states_by_step(demo)  # which States an update may change: worked out once per step, not per update
    return demo


def _header(settings: Settings) -> None:
    """The title, and on the offline demo the banner that says what it is."""
    gr.Markdown(ui("header"), elem_id="sb-header")
    if settings.demo:
        # a visitor of a public demo can set no variable: the banner tells them only what it is
        gr.Markdown(ui("demo_banner_public" if settings.public else "demo_banner"), elem_id="demo-banner")


def _controls(settings: Settings, catalogue: Catalogue) -> tuple[gr.Row, gr.Dropdown, gr.HTML, gr.Markdown, gr.Textbox]:
    """The row under the message box (not rendered yet): the model picker, the gauge and the session line, the
    visitor's own key; (the row, the picker, the gauge, the session line, the key box)."""
    with gr.Row(render=False, elem_id="sb-controls", equal_height=False) as controls:
        model = _model_picker(settings, catalogue)
        with gr.Column(scale=2, min_width=240):
            gauge = gr.HTML("", elem_id="gauge")  # filled on page load, in the visitor's language
            session = gr.Markdown(ui("session_empty"), elem_id="session-total")
        with gr.Column(scale=1, min_width=240, visible=_key_shown(settings)):
            user_key = _user_key_box(settings)
    return controls, model, gauge, session, user_key


def _model_picker(settings: Settings, catalogue: Catalogue) -> gr.Dropdown:
    return gr.Dropdown(
        choices=catalogue.choices(),
        value=catalogue.default,
        label=ui("model"),
        info=ui("model_info"),
        filterable=True,
        allow_custom_value=settings.allow_any_model,
        elem_id="model",
    )


def _chat_area(height: str) -> tuple[gr.Chatbot, MessageBox]:
    chatbot = gr.Chatbot(
        label=ui("chat"), elem_id="chatbot", height=height, buttons=["copy"], layout="bubble", editable="user",
        sanitize_html=True,  # model output and imported chats are text: never unsanitized HTML
        placeholder=ui("welcome"),  # an empty chat: a short welcome (and the example prompts)
        latex_delimiters=MATH_DELIMITERS,
    )
    # autofocus off: the page's script focuses the box without scrolling the page (chatbot/web/assets.py)
    textbox = MessageBox(
        placeholder=ui("placeholder"), label=ui("message_label"), file_count="multiple", sources=["upload"],
        show_label=False, autofocus=False, submit_btn=True, stop_btn=True, elem_id="message",
        file_types=list(FILE_TYPES),  # the types the app reads
    )
    return chatbot, textbox


def _key_shown(settings: Settings) -> bool:
    """Whether the page offers the visitor's own key (never in the offline demo: the simulator takes none)."""
    return settings.allow_user_key and not settings.demo


def _user_key_box(settings: Settings) -> gr.Textbox:
    """The visitor's own API key box, an input of the chat either way: shown in an accordion when the
    settings allow a key, else rendered hidden (an input left unrendered, ChatInterface would show in an
    "Additional inputs" accordion of its own; the core ignores the value then anyway)."""
    shown = _key_shown(settings)
    user_key = gr.Textbox(
        value="", type="password", label=ui("user_key_label"), max_lines=1, render=False,
        info=ui("user_key_info"),
        elem_id="user-key", visible=shown,
    )
    if shown:
        with gr.Accordion(ui("user_key"), open=settings.require_user_key):
            user_key.render()
    else:
        user_key.render()
    return user_key


def _respond(chat: ChatUI) -> Callable[..., AsyncIterator[tuple]]:
    """The ChatInterface's function: the reply as it streams, then the session totals and what the side
    views show once it has ended (``finished``)."""

    async def respond(
        message: dict, history: list[dict], model: str | None, user_key: str | None, totals: dict,
        chat_id: str | None, system: str | None, temperature: float | None, max_tokens: int | None,
        request: gr.Request,
    ) -> AsyncIterator[tuple]:
        lang = language_of(request)
        params = ChatSettings.params(system, temperature, max_tokens)  # the chat's own (saved with it)
        view = chat.view(lang, user_key)
        update: list[dict] = []
        # A browser tab's saved-chats list waits for this reply (see chatbot/web/replying.py) until it is
        # saved to chat `chat_id`, the chat on screen when it started (panel.saved, or Stop, ends it).
        tab = getattr(request, "session_hash", None) if chat_id else None
        chat.replying.mark(tab)
        # While streaming only the chat changes: a gr.skip() sent to a component output makes
        # Gradio build a new component and its config on every update (to a State it costs nothing).
        async for update in chat.respond(message, history, model, user_key, request, view=view, params=params):
            chat.replying.mark(tab)
            yield update, gr.skip(), gr.skip()
        try:
            session_totals, line, gauge_html, done = await chat.after_reply(
                message, history, update, model, view, totals, lang, request.session_hash, params.system
            )
        except Exception:  # the reply is shown; nothing may escape (the chat would lock)
            log.exception("after-reply bookkeeping failed")
            chat.replying.end(tab)
            yield update, gr.skip(), gr.skip()
            return
        # the session line and the gauge follow from `finished` (see _wire_side_views)
        yield update, session_totals, {**done, "session_line": line, "gauge": gauge_html, "chat": chat_id,
                                       "settings": params.as_dict()}

    return respond


def _wire_side_views(
    chat: ChatUI, *, model: gr.Dropdown, chatbot: gr.Chatbot, gauge: gr.HTML, finished: gr.State,
    session: gr.Markdown, system: gr.Textbox,
) -> None:
    """The session line and the gauge follow a finished reply; the gauge follows the model picked and the
    chat's system prompt."""

    def gauge_for(model: str | None, history: list, prompt: str | None, request: gr.Request) -> str:
        return chat.gauge(model, history, language_of(request), request.session_hash, prompt)

    quiet: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden", **SIDE_CONCURRENCY}
    finished.change(
        _after_reply_view, finished, [session, gauge], api_visibility="private", show_progress="hidden",
        queue=False,
    )
    for changed in (model.change, system.change):
        changed(gauge_for, [model, chatbot, system], gauge, trigger_mode="always_last", **quiet)


def _chat_api(chat_ui: ChatUI) -> Callable[..., AsyncIterator[str]]:
    """gradio_client's ``/chat``: its name, signature and docstring are what the API page shows."""

    async def chat(
        message: str, model: str = "", history: list[dict] | None = None, api_key: str = "",
        request: gr.Request = None,  # type: ignore[assignment]
    ) -> AsyncIterator[str]:
        """Send one message (with an optional earlier history and your own API key) and get the reply."""
        async for text in chat_ui.chat_api(message, model or None, history, api_key or None, request):
            yield text

    return chat


def _after_reply_view(finished: object) -> tuple[Any, Any]:
    """(session line, gauge) once a reply has ended, from what :meth:`ChatUI.after_reply` put in ``finished``."""
    if isinstance(finished, dict) and "gauge" in finished:
        return finished.get("session_line", ""), finished.get("gauge", "")
    return gr.skip(), gr.skip()
