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
import time
from collections.abc import AsyncIterator
from typing import Any

import gradio as gr

from chatbot.core.advice import Reader, for_reader
from chatbot.core.attachments import AttachmentRefused, compose, display_name, read_part
from chatbot.core.catalogue import Model
from chatbot.core.compared_turns import thread
from chatbot.core.conversation import turn
from chatbot.core.errors import Friendly, failure_text, friendly, render, store_failure
from chatbot.core.events import Event, Idle, Usage
from chatbot.core.history import History, clean_history
from chatbot.core.i18n import DEFAULT_LANGUAGE, language_of, text
from chatbot.core.limits import Visitor, visitor_from
from chatbot.core.params import Params, effective
from chatbot.core.reply import ReplyState
from chatbot.core.settings import Settings
from chatbot.core.upstream import Upstream
from chatbot.core.usage import Totals, measure, reply_detail, reply_line
from chatbot.web.chats import ATTACHMENT_SEAL, browser_secret
from chatbot.web.chats_panel import upload_root
from chatbot.web.gradio_request import headers as _headers
from chatbot.web.gradio_request import username as _username
from chatbot.web.replying import Replying
from chatbot.web.uploads import SessionFiles
from chatbot.web.visitor_message import files_of as _files_of
from chatbot.web.visitor_message import text_only as _text_only
from chatbot.web.visitor_message import user_message as _user_message
from chatbot.web.visitor_message import words as _words

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

    def __init__(self, lang: str = DEFAULT_LANGUAGE, model: Model | None = None, *, simulated: bool = False,
                 reader: Reader | None = None) -> None:
        self.lang = lang
        self.model = model  # for the cost line's list prices and its name
        self.simulated = simulated  # demo mode: the cost line shows no price
        self.reader = reader or Reader()  # whom the failure's advice is for
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
            out.append(_note(f"ℹ️ {note}", "", status="done"))
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
        name = self.model.id if self.model is not None else None
        if state.usage is not None:  # one light line (which model, tokens, price); where the price came from inside
            line = reply_line(state.usage, self.lang, name, self.simulated)
            detail = "" if self.simulated else reply_detail(state.usage, self.model, self.lang)
            out.append(_note(line, detail, "done", COST_ID))
        elif name and reply and state.finished:  # no usage reported: still which model wrote it
            out.append(_note(f"`{name}`", "", "done", COST_ID))
        failure = self.failure()
        if failure is not None:  # one notice: the whole message in its title, shown as a warning
            out.append(_note(f"⚠️ {failure}", "", "done"))
        return out

    def failure(self) -> str | None:
        """What the reply's failure says to this view's reader, or None."""
        error = self.state.error
        if error is None:
            return None
        return failure_text(for_reader(error.error, self.reader), error.partial, self.lang)

    def as_text(self) -> str:
        """The reply for API callers: the text, then any notes."""
        parts = [self.reply] if self.reply else []
        failure = self.failure()
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

    Every update costs the process about 1 ms of CPU whatever its size (Gradio's processing, the event
    stream's write), so 200 streams at 25 updates a second would need 5 CPU-seconds a second. While few
    streams run, each gets UPDATE_INTERVAL; when many do, each gets an equal share of ``budget`` updates a
    second (a quarter of a core), but never less than one update per MAX_INTERVAL: from 100 streams on, a
    process (each replica of several on one machine too) updates each stream every MAX_INTERVAL. (A budget of
    125 saved CPU but widened the chat tab's longest gap at 50 visitors from 344 to 456 ms: docs/benchmarks.)"""

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

    def view(self, lang: str, user_key: object = None) -> ReplyView:
        """A reply's view for a visitor in ``lang`` who sent ``user_key`` (demo mode: no price)."""
        return ReplyView(lang, simulated=self.settings.demo, reader=Reader.of(self.settings, user_key))

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
            thread(history, model.id if model else None), self.settings.max_history_messages,
            self.settings.max_history_chars,
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
        return History.of(thread(history, model.id if model else None), self.settings, files)  # compared turns

    def offered(self, name: str) -> bool:
        return self.upstream.resolve(name) is not None

    def gauge(self, model_name: str | None, history: object, lang: str = DEFAULT_LANGUAGE,
              session: str | None = None, system: object = None) -> str:
        """The context gauge (HTML) for a conversation on a model: the system prompt that will be sent (the
        chat's own ``system``, else the operator's: chatbot.core.params.effective) and the history (with the
        attachments ``session`` may read) as they would be sent, against the model's prompt budget.
        Cheap: token counts are cached per message."""
        model = self.upstream.resolve(model_name)
        if model is None:
            return ""
        try:
            budget, reserve = self.upstream.budget(model)
            plain = self.history_for_upstream(history, model, images="estimate" if model.vision else "skip",
                                              session=session)
            prompt = effective(Params.of({"system": system}), self.settings).system
            sent = [{"role": "system", "content": prompt}] if prompt else []
            return measure(sent + plain, model, budget, reserve).render(lang)
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
        totals: object, lang: str, session_hash: str | None = None, system: object = None,
    ) -> tuple[Any, ...]:
        """(session totals, session line, gauge, finished conversation) once a reply has ended."""
        session = Totals.from_dict(totals)
        if view.usage is not None:
            session = session.add(view.usage)
        conversation = [*(history or []), _user_message(message), *shown]
        gauge = await asyncio.to_thread(self.gauge, model, conversation, lang, session_hash, system)
        finished = {"messages": conversation, "at": time.time()}
        return session.as_dict(), session.render(lang, self.settings.demo), gauge, finished

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
        params: Params | None = None,
    ) -> AsyncIterator[list[dict]]:
        """The ChatInterface function (also behind retry, edit and every internal route to it). ``message``
        is text, or the multimodal box's ``{"text", "files"}``; ``params`` the chat's own settings."""
        view = view if view is not None else self.view(language_of(request), user_key)
        try:
            view.model = self.upstream.resolve(model)
            key = getattr(request, "session_hash", None)
            if _text_only(message):  # no file to read
                content = self.compose(message, view.model, key)
            else:
                content = await asyncio.to_thread(self.compose, message, view.model, key)
            plain = self.history(history, view.model, key)
            events = turn(self.upstream, content, plain, model, visitor=self.visitor(request), api_key=user_key,
                          state=view.state, tick=self.pacer.interval(), params=params)
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
        view = self.view(language_of(request), api_key)
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
