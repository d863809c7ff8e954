"""The Gradio interface: a ChatInterface whose generator reshapes the core's events into chat messages.

Rules this module keeps (each one a Gradio 6.31 trap, see DEVELOPERS.md):
- nothing escapes the generator: a failure is an assistant message, so the textbox never locks;
- updates are coalesced to at most ~25 a second, the first token shown at once;
- while the upstream is silent the generator still yields about twice a second, so a closed tab is
  noticed and the upstream closed;
- text is yielded as ``{"type": "text", "text": ...}`` parts, which Gradio does not pass through
  ``inspect.cleandoc`` (a plain string would lose code indentation and tabs);
- the history Gradio passes in is rebuilt on the server from user and assistant text only;
- an attached file is read only when the visitor's session may have it read (chatbot.web.uploads).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from chatbot.compat import uploaded_by_gradio
from chatbot.core.attachments import AttachmentRefused, compose, display_name, read_part
from chatbot.core.catalogue import Model
from chatbot.core.conversation import turn
from chatbot.core.errors import Friendly, friendly, render, store_failure
from chatbot.core.events import Event, Idle, Usage
from chatbot.core.history import History, clean_history
from chatbot.core.i18n import DEFAULT_LANGUAGE, language_of, text
from chatbot.core.limits import Visitor, visitor_from
from chatbot.core.reply import ReplyState
from chatbot.core.settings import Settings
from chatbot.core.upstream import Upstream
from chatbot.core.usage import Totals, measure, reply_detail, reply_line
from chatbot.web.chats import ATTACHMENT_SEAL, browser_secret
from chatbot.web.chats_panel import SIDE_CONCURRENCY, ChatsPanel, upload_root
from chatbot.web.labels import ui
from chatbot.web.message_box import MessageBox
from chatbot.web.replying import Replying
from chatbot.web.uploads import SessionFiles

log = logging.getLogger("switchboard.ui")

#: Shortest gap between two updates of one stream (25 a second at most).
UPDATE_INTERVAL = 0.04
#: Longest gap between two yields while the upstream is silent, so Gradio notices a closed tab.
KEEPALIVE_INTERVAL = 0.5
#: Longest gap between two updates of a stream that is receiving text, however many streams run.
MAX_INTERVAL = 0.4

NOTE_ID = "switchboard-note"
COST_ID = "switchboard-cost"


def _text(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


class ReplyView:
    """What one reply looks like in the chat, in the visitor's language: a rendering of the core's
    :class:`ReplyState` (the thinking block, open while the model thinks and closed when the answer starts;
    the answer; the cost line, when the upstream reports usage; and any notes)."""

    def __init__(self, lang: str = DEFAULT_LANGUAGE, model: Model | None = None) -> None:
        self.lang = lang
        self.model = model  # for the cost line's list prices
        self.state = ReplyState()

    def apply(self, event: Event) -> bool:
        """Take one event (into the state); True when what is shown changed."""
        return self.state.apply(event)

    @property
    def reply(self) -> str:
        return self.state.reply

    @property
    def usage(self) -> Usage | None:
        return self.state.usage

    def messages(self) -> list[dict[str, Any]]:
        state = self.state
        out: list[dict[str, Any]] = []
        if state.trimmed:
            note = render("trimmed_note", self.lang, turns=state.trimmed)
            out.append(_note(f"ℹ️ {note}", note, status="done"))
        if state.reasoning:
            status = "done" if (state.text or state.finished) else "pending"
            out.append(
                {
                    "role": "assistant",
                    "content": _text("".join(state.reasoning)),
                    "metadata": {"title": text("thinking", self.lang), "status": status, "id": "thinking"},
                }
            )
        reply = state.reply
        if reply:
            out.append({"role": "assistant", "content": _text(reply)})
        if state.usage is not None:
            line = reply_line(state.usage, self.lang)
            out.append(_note(line, reply_detail(state.usage, self.model, self.lang), "done", COST_ID))
        failure = state.failure(self.lang)
        if failure is not None:
            out.append(_note(f"⚠️ {failure}", failure))
        return out

    def as_text(self) -> str:
        """The reply for API callers: the text, then any notes."""
        parts = [self.reply] if self.reply else []
        failure = self.state.failure(self.lang)
        if failure is not None:
            parts.append(f"⚠️ {failure}")
        return "\n\n".join(parts)


def _failure(exc: Exception) -> Friendly:
    """What the chat says for a failure of the app itself: the shared store (Redis) down says so (nothing
    was sent or kept), anything else is ``internal``."""
    return friendly("store_unavailable" if store_failure(exc) else "internal")


def _note(title: str, body: str, status: str | None = None, note_id: str = NOTE_ID) -> dict[str, Any]:
    """An app note: shown in the chat, never sent upstream (it carries a title, which marks it)."""
    metadata: dict[str, Any] = {"title": title, "id": note_id}
    if status:
        metadata["status"] = status
    return {"role": "assistant", "content": _text(body), "metadata": metadata}


class Pacer:
    """Shares one budget of screen updates among all the streams of the app.

    Every update costs Gradio about 2 ms of CPU whatever its size, so 200 streams at 25 updates a second
    would need 10 CPU-seconds a second. While few streams run, each gets UPDATE_INTERVAL; when many do,
    each gets an equal share of UPDATE_BUDGET, but never less than one update per MAX_INTERVAL."""

    def __init__(self, budget: float = 250.0) -> None:
        self.budget = budget
        self.active = 0

    def interval(self) -> float:
        return min(max(UPDATE_INTERVAL, self.active / self.budget), MAX_INTERVAL)


async def coalesce(
    events: AsyncIterator[Event], view: ReplyView, pacer: Pacer | None = None
) -> AsyncIterator[ReplyView]:
    """Yield ``view`` at most every ``pacer.interval()`` (the first change at once), and at least every
    KEEPALIVE_INTERVAL while the upstream is silent. ``events`` are a turn's on ``view.state`` (the turn
    applies them: any event but :class:`Idle` changed the view)."""
    pacer = pacer or Pacer()
    pacer.active += 1
    try:
        last = 0.0
        dirty = False
        async for event in events:
            if not isinstance(event, Idle):
                dirty = True
            now = time.monotonic()
            if dirty and now - last >= (pacer.interval() if last else 0.0):
                last, dirty = now, False
                yield view
            elif isinstance(event, Idle) and now - last >= KEEPALIVE_INTERVAL:
                last = now
                yield view
        if dirty or last == 0.0:
            yield view
    finally:
        pacer.active -= 1


class ChatUI:
    """Builds the Blocks app around one :class:`Upstream`."""

    def __init__(self, settings: Settings, upstream: Upstream) -> None:
        self.settings = settings
        self.upstream = upstream
        self.pacer = Pacer()  # one budget of screen updates for all streams
        # The attachments each session may have read (build() tells it which files Gradio's upload wrote).
        self.files = SessionFiles(upload_root, browser_secret(settings, purpose=ATTACHMENT_SEAL).encode())
        self.replying = Replying()  # tabs with a reply in progress: their saved-chats list waits for it

    def history_for_upstream(self, history: object, model: Model | None = None, images: str = "",
                             session: str | None = None) -> list[dict]:
        """The history as it goes upstream. With ``model`` (the UI's path), attached files ``session`` may
        read come along: text files inlined, images as image parts for a vision model (``images``
        overrides: "estimate" for counting); without it (the API's path), text only."""
        files = None
        if model is not None:
            mode = images or ("encode" if model.vision else "skip")
            files = functools.partial(self._history_file, images=mode, session=session)
        return clean_history(
            history, self.settings.max_history_messages, self.settings.max_history_chars,
            self.settings.max_message_chars, files=files,
        )

    @property
    def _max_upload_bytes(self) -> int:
        return int(self.settings.max_upload_mb * 1024 * 1024)

    def _history_file(self, path: str, name: str | None, images: str, session: str | None = None) -> dict | None:
        """An earlier attachment as a content part, or None (gone, not this session's, or not for this model)."""
        if not self.files.may_read(session, path):
            return None
        try:
            return read_part(path, name, allowed_root=upload_root(), max_bytes=self._max_upload_bytes,
                             max_text_chars=self.settings.max_message_chars, images=images)
        except (AttachmentRefused, OSError):
            return None

    def compose(self, message: object, model: Model | None, session: str | None = None) -> str | list[dict]:
        """The new message as it goes upstream: the text (a ChatInterface dict or a string), with the
        attached files (each one uploaded in ``session``). Raises AttachmentRefused (blocking work: call
        it from a thread)."""
        words = _words(message)
        if not isinstance(message, dict):
            return words
        files = _files_of(message)
        if not files or model is None:
            return words
        for path, name in files:
            if not self.files.attach(session, path):
                raise AttachmentRefused(friendly("attachment_unsupported", name=display_name(path, name)))
        return compose(
            words, files, vision=model.vision, model=model.id,
            allowed_root=upload_root(), max_bytes=self._max_upload_bytes,
            max_text_chars=self.settings.max_message_chars,
        )

    def history(self, history: object, model: Model | None, session: str | None = None) -> History:
        """The chat tab's history as it goes upstream (cleaned as far as the budget reaches, when the
        request is prepared), with the attachments ``session`` may read."""
        mode = "encode" if model is not None and model.vision else "skip"
        files = functools.partial(self._history_file, images=mode, session=session) if model is not None else None
        return History.of(history, self.settings, files)

    def offered(self, name: str) -> bool:
        return self.upstream.resolve(name) is not None

    def gauge(self, model_name: str | None, history: object, lang: str = DEFAULT_LANGUAGE,
              session: str | None = None) -> str:
        """The context gauge (HTML) for a conversation on a model: system prompt and history (with the
        attachments ``session`` may read) as they would be sent, against the model's prompt budget.
        Cheap: token counts are cached per message."""
        model = self.upstream.resolve(model_name)
        if model is None:
            return ""
        try:
            budget, reserve = self.upstream.budget(model)
            plain = self.history_for_upstream(history, model, images="estimate" if model.vision else "skip",
                                              session=session)
            prompt = self.settings.system_prompt
            system = [{"role": "system", "content": prompt}] if prompt else []
            return measure(system + plain, model, budget, reserve).render(lang)
        except Exception as exc:  # a gauge is never worth an error
            log.warning("context gauge failed", exc_info=exc)
            return ""

    def model_update(self, saved: str | None, current: str | None) -> tuple[Any, str | None]:
        """(dropdown update, model now chosen): the live choices, with ``saved`` chosen when offered."""
        if saved and self.offered(saved):
            return gr.Dropdown(choices=self.upstream.catalogue.choices(), value=saved), saved
        return gr.Dropdown(choices=self.upstream.catalogue.choices()), current

    async def after_reply(
        self, message: object, history: list, shown: list[dict], model: str | None, view: ReplyView,
        totals: object, lang: str, session_hash: str | None = None,
    ) -> tuple[Any, ...]:
        """(session totals, session line, gauge, finished conversation) once a reply has ended."""
        session = Totals.from_dict(totals)
        if view.usage is not None:
            session = session.add(view.usage)
        conversation = [*(history or []), _user_message(message), *shown]
        gauge = await asyncio.to_thread(self.gauge, model, conversation, lang, session_hash)
        finished = {"messages": conversation, "at": time.time()}
        return session.as_dict(), session.render(lang), gauge, finished

    def visitor(self, request: gr.Request | None, own_key: bool = False) -> Visitor:
        """Whom a request's limits count: the signed-in user, else the client address (see limits.py)."""
        if request is None:
            return Visitor("unknown", own_key=own_key)
        client = getattr(request, "client", None)
        return visitor_from(  # the one rule for every face
            getattr(client, "host", None), _headers(request), self.settings.trusted_proxies,
            username=_username(request), own_key=own_key,
        )

    async def respond(
        self,
        message: str | dict[str, Any],
        history: list[dict],
        model: str | None,
        user_key: str | None = None,
        request: gr.Request | None = None,
        *,
        view: ReplyView | None = None,
    ) -> AsyncIterator[list[dict]]:
        """The ChatInterface function (also behind retry, edit and every internal route to it). ``message``
        is text, or the multimodal box's ``{"text", "files"}``."""
        view = view if view is not None else ReplyView(language_of(request))
        try:
            view.model = self.upstream.resolve(model)
            key = getattr(request, "session_hash", None)
            if _text_only(message):  # no file to read
                content = self.compose(message, view.model, key)
            else:
                content = await asyncio.to_thread(self.compose, message, view.model, key)
            plain = self.history(history, view.model, key)
            events = turn(self.upstream, content, plain, model, visitor=self.visitor(request), api_key=user_key,
                          state=view.state, tick=self.pacer.interval())
            async with contextlib.aclosing(events):
                async for current in coalesce(events, view, self.pacer):
                    yield current.messages()
        except AttachmentRefused as exc:  # too large, unsupported, or an image for a model without vision
            view.state.fail(exc.friendly)
            yield view.messages()
        except Exception as exc:  # the chat must never lock: no exception leaves this generator
            log.exception("chat handler failed")
            view.state.fail(_failure(exc))
            yield view.messages()

    async def chat_api(
        self,
        message: str,
        model: str | None = None,
        history: list[dict] | None = None,
        api_key: str | None = None,
        request: gr.Request | None = None,
    ) -> AsyncIterator[str]:
        """Programmatic chat: the reply text (streamed when called with ``submit``)."""
        view = ReplyView(language_of(request))
        try:
            plain = History.of(history or [], self.settings)  # text only
            events = turn(self.upstream, message, plain, model, visitor=self.visitor(request), api_key=api_key,
                          state=view.state, tick=self.pacer.interval())
            async with contextlib.aclosing(events):
                async for current in coalesce(events, view, self.pacer):
                    yield current.as_text()
        except Exception as exc:
            log.exception("chat API failed")
            view.state.fail(_failure(exc))
            yield view.as_text()

    def build(self) -> gr.Blocks:
        settings = self.settings
        catalogue = self.upstream.catalogue
        # delete_cache: uploads and exports older than a day leave Gradio's cache (checked hourly).
        with gr.Blocks(
            title="Switchboard", analytics_enabled=False, fill_height=True, delete_cache=(3_600, 86_400)
        ) as demo:
            gr.Markdown(ui("header"))
            if settings.demo:
                gr.Markdown(ui("demo_banner"), elem_id="demo-banner")
            self.files.uploaded = uploaded_by_gradio(demo)
            panel = ChatsPanel(browser_secret(settings), self.gauge, self.model_update, self.files, self.replying)
            with gr.Sidebar(label=ui("conversations"), open=True, elem_id="chats-sidebar"):
                panel.render()
            if settings.hf_oauth:  # signed-in Hugging Face users get the higher limits
                gr.LoginButton()
            model = gr.Dropdown(
                choices=catalogue.choices(),
                value=catalogue.default,
                label=ui("model"),
                info=ui("model_info"),
                filterable=True,
                allow_custom_value=settings.allow_any_model,
                elem_id="model",
            )
            gauge = gr.HTML("", elem_id="gauge")  # filled on page load, in the visitor's language
            chatbot = gr.Chatbot(
                label=ui("chat"), elem_id="chatbot", height="70vh", buttons=["copy"], layout="bubble",
                sanitize_html=True,  # model output and imported chats are text: never unsanitized HTML
            )
            textbox = MessageBox(
                placeholder=ui("placeholder"), file_count="multiple", sources=["upload"], show_label=False,
                autofocus=True, submit_btn=True, stop_btn=True, elem_id="message",
            )
            totals = gr.State(Totals().as_dict())
            finished = gr.State(None)
            session = gr.Markdown(ui("session_empty"), elem_id="session-total", render=False)

            user_key = gr.Textbox(
                value="", type="password", label=ui("user_key_label"), max_lines=1, render=False,
                info=ui("user_key_info"),
                elem_id="user-key",
            )
            if settings.allow_user_key and not settings.demo:
                with gr.Accordion(ui("user_key"), open=settings.require_user_key):
                    user_key.render()

            async def respond(
                message: dict, history: list[dict], model: str | None, user_key: str | None, totals: dict,
                chat_id: str | None, request: gr.Request,
            ) -> AsyncIterator[tuple]:
                lang = language_of(request)
                view = ReplyView(lang)
                update: list[dict] = []
                # A browser tab's saved-chats list waits for this reply (see chatbot/web/replying.py) until it is
                # saved to chat `chat_id`, the chat on screen when it started (panel.saved, or Stop, ends it).
                tab = getattr(request, "session_hash", None) if chat_id else None
                self.replying.mark(tab)
                # While streaming only the chat changes: a gr.skip() sent to a component output makes
                # Gradio build a new component and its config on every update (to a State it costs nothing).
                async for update in self.respond(message, history, model, user_key, request, view=view):
                    self.replying.mark(tab)
                    yield update, gr.skip(), gr.skip()
                try:
                    session_totals, line, gauge_html, done = await self.after_reply(
                        message, history, update, model, view, totals, lang, request.session_hash
                    )
                except Exception:  # the reply is shown; nothing may escape (the chat would lock)
                    log.exception("after-reply bookkeeping failed")
                    self.replying.end(tab)
                    yield update, gr.skip(), gr.skip()
                    return
                # the session line and the gauge follow from `finished` (see finished.change below)
                yield update, session_totals, {**done, "session_line": line, "gauge": gauge_html, "chat": chat_id}

            chat_interface = gr.ChatInterface(
                respond,
                multimodal=True,
                chatbot=chatbot,
                textbox=textbox,
                additional_inputs=[model, user_key, totals, panel.shown],
                additional_outputs=[totals, finished],
                concurrency_limit=None,
                cache_examples=False,
                api_visibility="private",
                fill_height=True,
            )
            session.render()

            def gauge_for(model: str | None, history: list, request: gr.Request) -> str:
                return self.gauge(model, history, language_of(request), request.session_hash)

            quiet: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden", **SIDE_CONCURRENCY}
            finished.change(
                _after_reply_view, finished, [session, gauge], api_visibility="private", show_progress="hidden",
                queue=False,
            )
            model.change(gauge_for, [model, chatbot], gauge, trigger_mode="always_last", **quiet)
            panel.wire(
                demo, chatbot=chatbot, chatbot_state=chat_interface.chatbot_state, model=model, gauge=gauge,
                finished=finished, textbox=textbox, sent=chat_interface.saved_input,
            )

            async def chat(
                message: str, model: str = "", history: list[dict] | None = None, api_key: str = "",
                request: gr.Request = None,  # type: ignore[assignment]
            ) -> AsyncIterator[str]:
                """Send one message (with an optional earlier history and your own API key) and get the reply."""
                async for text in self.chat_api(message, model or None, history, api_key or None, request):
                    yield text

            gr.api(chat, api_name="chat", concurrency_limit=None)
        return demo


def _after_reply_view(finished: object) -> tuple[Any, Any]:
    """(session line, gauge) once a reply has ended, from what :meth:`ChatUI.after_reply` put in ``finished``."""
    if isinstance(finished, dict) and "gauge" in finished:
        return finished.get("session_line", ""), finished.get("gauge", "")
    return gr.skip(), gr.skip()


def _headers(request: gr.Request) -> Any:
    """The request's headers, every line of a repeated one included (the underlying Starlette request's
    ``Headers``: ``dict(request.headers)`` keeps one ``X-Forwarded-For`` line of several)."""
    headers = getattr(getattr(request, "request", None), "headers", None)
    if callable(getattr(headers, "getlist", None)):
        return headers
    try:
        return {k.lower(): v for k, v in dict(request.headers).items()}
    except Exception:
        return {}


def _username(request: gr.Request) -> str | None:
    """The Gradio login's user, or the Hugging Face user signed in with the Spaces login button."""
    if getattr(request, "username", None):
        return str(request.username)
    raw = getattr(request, "request", None)
    try:
        info = raw.session.get("oauth_info") if raw is not None and "session" in raw.scope else None
        return str(info["userinfo"]["preferred_username"]) if info else None
    except Exception:
        return None


def _files_of(message: dict) -> list[tuple[str, str | None]]:
    """(path, name) of the files of a multimodal message: paths from the box, or file dicts on a retry."""
    found: list[tuple[str, str | None]] = []
    for item in message.get("files") or []:
        if isinstance(item, str) and item:
            found.append((item, None))
        elif isinstance(item, dict) and isinstance(item.get("path"), str) and item["path"]:
            name = item.get("orig_name")
            found.append((item["path"], name if isinstance(name, str) else None))
    return found


def _words(message: object) -> str:
    """The text of a message (a multimodal box's dict or a string)."""
    words = message.get("text") if isinstance(message, dict) else message
    return words if isinstance(words, str) else ""


def _text_only(message: object) -> bool:
    """Whether a message has no attached files (nothing to read from disk)."""
    return not (isinstance(message, dict) and _files_of(message))


def _user_message(message: object) -> dict[str, Any]:
    """The visitor's message as the chat shows it: attached files, then the text."""
    if not isinstance(message, dict):
        return {"role": "user", "content": [_text(message if isinstance(message, str) else "")]}
    parts: list[dict[str, Any]] = [
        {"type": "file", "file": {"path": path, "orig_name": name or os.path.basename(path)}}
        for path, name in _files_of(message)
    ]
    words = _words(message)
    if words:
        parts.append(_text(words))
    return {"role": "user", "content": parts}
