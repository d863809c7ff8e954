"""The saved-chats panel: the Gradio side of :mod:`chatbot.web.chats` (list, new, rename, delete, export, import).

The store is a ``gr.BrowserState`` with a fixed storage key and secret (see :func:`chatbot.web.chats.browser_secret`),
so it outlives reloads and server restarts. It travels to the server only for the events that change it:
when a message is sent, after a reply (and after Stop), when a chat is opened, renamed, deleted or
imported, and every few seconds while a reply streams (its turn so far, :mod:`chatbot.web.cut_reply`, carried
by the reply's own stream). When a message is sent, the list changes in the request that takes the message, and
after a reply in the one that also updates the session line (:mod:`chatbot.web.message_steps`).

Which chat is on screen is a server-side ``gr.State`` (``shown``): an id, given before the chat's first
message (a new chat is listed as soon as that message is sent, see :func:`chatbot.web.chats.begin`). Every
save names its chat by that id, never "the current one". While a reply is in progress (see
:mod:`chatbot.web.replying`) every change to the list is refused with a message: the reply goes on, and is
saved to its own chat (a change clicked once the reply's text has ended waits for its save instead; every
handler works on the store the tab was last sent, :mod:`chatbot.web.latest_stores`).
Every handler here rebuilds what the browser sends (:func:`chatbot.web.chats.normalize_store`) and never raises:
a bad import is a message in the visitor's language.
"""

from __future__ import annotations

import html
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from cachetools import TTLCache

from chatbot.compat import upload_folder
from chatbot.core.i18n import language_of, text
from chatbot.web import chat_files, chats, cut_reply
from chatbot.web.answers import keep_previous
from chatbot.web.chat_list_view import ChatList
from chatbot.web.chat_settings import ChatSettings
from chatbot.web.export_button import ExportButton
from chatbot.web.labels import ui
from chatbot.web.latest_stores import SAVE_WAIT_S, LatestStores
from chatbot.web.latest_stores import one_at_a_time as _one_at_a_time
from chatbot.web.replying import Replying
from chatbot.web.uploads import SessionFiles

log = logging.getLogger("switchboard.chats")

#: Where exported files are written before Gradio serves them (one folder per content hash).
EXPORT_DIR = Path(tempfile.gettempdir()) / f"switchboard-exports-{os.getuid() if hasattr(os, 'getuid') else 0}"
#: Most export folders kept (the oldest go first), so no visitor can fill the disk with exports.
MAX_EXPORTS = 500
#: The panel's events (and the gauge's) share this many workers: cheap for a person, bounded for a script.
SIDE_CONCURRENCY: dict[str, Any] = {"concurrency_limit": 4, "concurrency_id": "switchboard-side-panels"}
#: How many outputs :meth:`ChatsPanel._view` has (the store, the list's, 7 more), how many of them follow the
#: list's, and how many :meth:`ChatsPanel._shown` has (5, and the 3 chat settings).
VIEW_REST = 7
VIEW = 1 + ChatList.size + VIEW_REST
SHOWN = 8


def _session(request: gr.Request | None) -> str | None:
    return getattr(request, "session_hash", None)


def upload_root() -> str:
    """Gradio's upload folder: the only place an attachment is ever read from."""
    return upload_folder()


def _schema_once(button: gr.UploadButton) -> gr.UploadButton:
    """The button with its API schema computed once. Gradio builds every component's config for each new
    session, and UploadButton (unlike the components with a data model) regenerates its pydantic JSON schema
    three times each time: 11% of the app's CPU with 200 visitors arriving at once (py-spy)."""
    schema = button.api_info()
    button.api_info = lambda: schema  # type: ignore[method-assign]
    return button


class ChatsPanel:
    """Renders the panel (call :meth:`render` inside the sidebar) and wires its events (:meth:`wire`).

    Every handler returns :meth:`_view`'s outputs (the store, the list, the selected chat's actions, the
    search box, the undo button and what it would bring back), and those that change the chat on screen
    also :meth:`_shown`'s (the chat, the model, the gauge, the chat's id and its settings)."""

    def __init__(
        self,
        secret: str,
        gauge: Callable[..., str],
        model_update: Callable[[str | None, str | None], tuple[Any, str | None]],
        files: SessionFiles | None = None,
        replying: Replying | None = None,
    ) -> None:
        self.secret = secret
        self.gauge = gauge  # (model, chat messages, language, session, the chat's system prompt) -> gauge HTML
        self.model_update = model_update  # (saved model, current) -> (dropdown update, model chosen)
        self.files = files  # which attachments a session may have read; None: any in Gradio's upload folder
        self.replying = replying if replying is not None else Replying()  # marked by the chat function
        self.list = ChatList()
        self.latest = LatestStores()  # the store each tab was last sent
        # tab -> the chat whose failed attempt was settled before its start was listed (see started)
        self.discarded: TTLCache[str, str] = TTLCache(10_000, ttl=60.0)
        self._held = threading.local()  # how deep this thread is in its tab's turn
        self.save_wait_s = SAVE_WAIT_S
        self.exports = chat_files.Exports(EXPORT_DIR, MAX_EXPORTS)  # pruned now and then, not at every write
        # a streaming reply, saved as it goes
        self.saver = cut_reply.ReplySaver(self.replying, self._store, self.latest, self._root)

    def _root(self, request: gr.Request | None, *, saving: bool = False) -> chats.Root:
        """Where a store's attachments may be, for this request's session (see SessionFiles.keeper)."""
        if self.files is None:
            return upload_root()
        return self.files.keeper(_session(request), saving=saving)

    def _store(self, raw: object, request: gr.Request | None) -> dict[str, Any]:
        """The store a tab sent, cleaned; or the newer one it was sent since (chatbot.web.latest_stores)."""
        return self.latest.fresh(_session(request), chats.normalize_store(raw, self._root(request)))

    # --- layout ---------------------------------------------------------------------------------------

    def render(self) -> None:
        self.store = gr.BrowserState(chats.empty_store(), storage_key=chats.STORAGE_KEY, secret=self.secret)
        self.shown = gr.State(None)  # the id of the chat on screen (also one not saved yet)
        self.removed = gr.State(None)  # the chat the last Delete or Clear took away (its Undo brings it back)
        self.new = gr.Button(ui("new_chat"), variant="primary", size="md", elem_id="new-chat")
        self.restore_button = gr.Button(ui("restore_chat"), size="sm", visible=False, elem_id="restore-chat")
        self.list.render()
        with gr.Column(visible=False, elem_id="chat-actions") as self.actions:  # the selected chat's
            with gr.Row():
                self.title = gr.Textbox(label=ui("title"), max_lines=1, scale=3, elem_id="chat-title")
                self.rename = gr.Button(ui("rename"), size="sm", scale=1, elem_id="rename-chat")
            self.delete = gr.Button(ui("delete"), variant="stop", size="sm", elem_id="delete-chat")
            self.export_md = ExportButton(ui("export_markdown"), value=None, size="sm", elem_id="export-md")
            self.export_json = ExportButton(ui("export_json"), value=None, size="sm", elem_id="export-json")
        self.import_json = _schema_once(gr.UploadButton(
            ui("import_json"), file_types=[".json"], file_count="single", size="sm", elem_id="import-json"
        ))
        gr.Markdown(ui("saved_note"))

    # --- what every handler returns -------------------------------------------------------------------

    def _view(self, store: dict[str, Any], lang: str, removed: dict[str, Any] | None = None,
              query: object = None) -> tuple[Any, ...]:
        """(store, *list (groups, note), actions, title, export_md, export_json, search, undo button, removed);
        the search is cleared, unless the ``query`` it holds is given (then the list shows what it matches)."""
        chat = chats.current(store)
        md = json_path = None
        if chat is not None:
            try:
                md, json_path = self.exports.write(chat, "md", lang), self.exports.write(chat, "json", lang)
            except OSError as exc:
                log.warning("could not write an export: %s", exc)
        return (
            store,
            *self.list.updates(store, query if isinstance(query, str) else ""),
            gr.Column(visible=chat is not None),
            gr.Textbox(value=chat["title"] if chat else ""),
            gr.DownloadButton(value=md),
            gr.DownloadButton(value=json_path),
            "" if query is None else gr.skip(),  # cleared: the list shows every chat again
            gr.Button(visible=removed is not None),
            removed,
        )

    def _shown(self, store: dict[str, Any], model: str | None, lang: str, session: str | None = None,
               shown: str | None = None) -> tuple[Any, ...]:
        """(chatbot, chatbot state, model, gauge, chat id, *chat settings) for the store's current chat
        (none: a new chat, with id ``shown`` or a fresh one); the model it was last answered by comes back
        into the dropdown when it is still offered."""
        chat = chats.current(store)
        messages = cut_reply.conversation(chat, lang)  # a turn cut off says so
        update, chosen = self.model_update(chat.get("model") if chat else None, model)
        chat_id = chat["id"] if chat else (shown or chats.new_id())
        values = ChatSettings.values(chat)
        return (messages, messages, update, self.gauge(chosen, messages, lang, session, values[0]), chat_id, *values)

    # --- handlers -------------------------------------------------------------------------------------

    def _busy(self, request: gr.Request) -> bool:
        """Whether this tab has a reply in progress; then the visitor is told to wait or press Stop."""
        if not self.replying.busy(_session(request)):
            return False
        gr.Warning(text("reply_in_progress", language_of(request)))
        return True

    def _refused(self, shown: str | None, skipped: int) -> tuple[Any, ...]:
        """The list's choice back on the chat on screen; nothing else changes (the store the browser sent
        may be older than the one it holds by now, so it is never written back)."""
        return (gr.skip(), *self.list.chosen(shown), *[gr.skip()] * (VIEW_REST + skipped))

    @_one_at_a_time
    def restore(self, raw: object, model: str | None, request: gr.Request) -> tuple[Any, ...]:
        """Page load: the saved chats, and the current one in the chat (with no current chat, nothing the
        visitor may already have done is overwritten: only the model list is refreshed)."""
        lang = language_of(request)
        store = self._store(raw, request)
        if chats.current(store) is None:
            update, _ = self.model_update(None, model)
            return (*self._view(store, lang), gr.skip(), gr.skip(), update, self.gauge(model, [], lang),
                    chats.new_id(), gr.skip(), gr.skip(), gr.skip())
        return (*self._view(store, lang), *self._shown(store, model, lang, _session(request)))

    @_one_at_a_time
    def started(self, raw: object, shown: str | None, message: object, model: str | None, system: object,
                temperature: object, max_tokens: object, request: gr.Request) -> tuple[Any, ...]:
        """A message is sent: its chat is listed (and chosen) now, with the question and the chat's settings,
        under its id."""
        lang = language_of(request)
        store = self._store(raw, request)
        if shown is not None and self.discarded.pop(_session(request) or "", None) == shown:
            return self._view(store, lang)  # its reply failed and was settled first: nothing to list
        if chats.valid_id(shown):
            self.replying.mark(_session(request))  # from now on the list waits for the reply
        params = ChatSettings.params(system, temperature, max_tokens).as_dict()
        root, asked = self._root(request, saving=True), cut_reply.question(message)
        started = chats.begin(store, shown, asked, model, root, lang, settings=params)
        return self._view(cut_reply.started(store, started, shown, asked, root, lang), lang)

    @_one_at_a_time
    def saved(self, raw: object, finished: object, model: str | None, request: gr.Request,
              query: object = None) -> tuple[Any, ...]:
        """After a reply: the conversation as it now stands is saved to the chat the reply belongs to (an
        answer asked again keeps the one it replaces, see :mod:`chatbot.web.answers`); then (chatbot,
        chatbot state): the chat with the earlier answer, when one was kept. The visitor's search (``query``)
        stays as it is."""
        try:
            lang = language_of(request)
            store = self._store(raw, request)
            given = finished if isinstance(finished, dict) else {"messages": finished}
            root = self._root(request, saving=True)
            target = chats.valid_id(given.get("chat")) or store.get("current")
            messages = chats.clean_messages(given.get("messages"), root, lang)
            before = chats.find(store, target)
            kept = keep_previous(before["messages"], messages, lang) if before and "at" in given else None
            if chats.answered(messages):
                store = chats.save(store, kept or messages, model, root, lang, chat_id=target,
                                   settings=given.get("settings"))
            elif target:  # a failed attempt is not kept by itself
                if chats.find(store, target) is None and (tab := _session(request)):  # its start is not
                    self.discarded[tab] = target  # listed yet (the two run apart): started lists nothing
                store = chats.delete(store, target)
            shown = (kept, kept) if kept else (gr.skip(), gr.skip())
            query = self.latest.search(_session(request), query)  # the box's latest, not the one sent
            return (*self._view(store, lang, query=query), *shown)
        finally:
            self.replying.end(_session(request))

    @_one_at_a_time
    def stopped(self, raw: object, messages: list, shown: str | None, model: str | None,
                request: gr.Request) -> tuple[Any, ...]:
        """Stop: keep what was shown (the question and the partial answer) in the chat on screen."""
        lang = language_of(request)
        view = self.saved(raw, {"messages": messages, "chat": shown}, model, request)[:VIEW]
        system = ChatSettings.values(chats.find(view[0], shown))[0]  # the chat's own, saved when it was sent
        return (*view, self.gauge(model, messages, lang, _session(request), system))

    @_one_at_a_time
    def undone(self, raw: object, messages: list, shown: str | None, model: str | None,
               request: gr.Request) -> tuple[Any, ...]:
        """Undo (the chat's ↶ button) takes back the last question and its answer: so does the saved chat."""
        last_user = max((i for i, m in enumerate(messages or []) if isinstance(m, dict) and m.get("role") == "user"),
                        default=None)
        kept = list(messages or [])[:last_user] if last_user is not None else []
        return self.stopped(raw, kept, shown, model, request)

    @_one_at_a_time
    def open(self, raw: object, chat_id: str | None, shown: str | None, model: str | None,
             request: gr.Request) -> tuple[Any, ...]:
        lang = language_of(request)
        if self._busy(request):
            return self._refused(shown, SHOWN)
        store = chats.select(self._store(raw, request), chat_id)
        return (*self._view(store, lang), *self._shown(store, model, lang, _session(request)))

    @_one_at_a_time
    def start_new(self, raw: object, shown: str | None, model: str | None, request: gr.Request,
                  removed: dict[str, Any] | None = None) -> tuple[Any, ...]:
        lang = language_of(request)
        if self._busy(request):
            return self._refused(shown, SHOWN)
        store = chats.select(self._store(raw, request), None)
        return (*self._view(store, lang, removed), *self._shown(store, model, lang))

    @_one_at_a_time
    def cleared(self, raw: object, shown: str | None, model: str | None, request: gr.Request) -> tuple[Any, ...]:
        """The chat box's Clear: a new chat; the one that was on screen stays saved, and Undo reopens it."""
        if self.replying.busy(_session(request)):
            return self.start_new(raw, shown, model, request)  # refused, with the message
        chat = chats.find(self._store(raw, request), shown)
        return self.start_new(raw, shown, model, request, chat)

    @_one_at_a_time
    def renamed(self, raw: object, shown: str | None, title: str, request: gr.Request) -> tuple[Any, ...]:
        lang = language_of(request)
        if self._busy(request):
            return self._refused(shown, 0)
        store = self._store(raw, request)
        return self._view(chats.rename(store, shown, title), lang)

    @_one_at_a_time
    def deleted(self, raw: object, shown: str | None, model: str | None, request: gr.Request) -> tuple[Any, ...]:
        """Delete: the chat leaves the list; Undo brings it back until the next change to the list."""
        lang = language_of(request)
        if self._busy(request):
            return self._refused(shown, SHOWN)
        store = self._store(raw, request)
        removed = chats.find(store, shown)
        store = chats.delete(store, shown)
        return (*self._view(store, lang, removed), *self._shown(store, model, lang))

    @_one_at_a_time
    def restored(self, raw: object, removed: object, shown: str | None, model: str | None,
                 request: gr.Request) -> tuple[Any, ...]:
        """Undo of a Delete or a Clear: the chat it took away is back in the list, and on screen."""
        lang = language_of(request)
        if self._busy(request):
            return self._refused(shown, SHOWN)
        store = self._store(raw, request)
        if isinstance(removed, dict) and chats.valid_id(removed.get("id")):
            back = chats.normalize_store({"chats": [removed, *store["chats"]], "current": removed["id"]},
                                         self._root(request))
            store = back if back["current"] else store
        return (*self._view(store, lang), *self._shown(store, model, lang, _session(request), shown))

    @_one_at_a_time
    def searched(self, raw: object, query: object, request: gr.Request) -> tuple[Any, ...]:
        """The list with only the chats whose title matches the search (kept for the tab's next save). One at a
        time with the tab's saves: a save that read the search before it changed never answers after it."""
        store = self._store(raw, request)
        query = self.latest.searched(_session(request), query if isinstance(query, str) else "")
        return tuple(self.list.updates(store, query))

    @_one_at_a_time
    def imported(self, raw: object, file: object, shown: str | None, model: str | None,
                 request: gr.Request) -> tuple[Any, ...]:
        lang = language_of(request)
        if self._busy(request):
            return self._refused(shown, SHOWN)
        store = self._store(raw, request)
        path = file if isinstance(file, str) else getattr(file, "name", None)
        try:
            if not path or os.path.getsize(path) > chats.MAX_STORE_CHARS:
                raise ValueError(text("import_failed", lang))
            chat = chat_files.import_json(Path(path).read_bytes(), lang)
        except (ValueError, OSError) as exc:
            gr.Warning(str(exc) if isinstance(exc, ValueError) else text("import_failed", lang))
            return (*self._view(store, lang), *[gr.skip()] * SHOWN)
        store = chats.add(store, chat)
        gr.Info(text("imported", lang, title=html.escape(chat["title"])))  # a toast renders HTML: the title is text
        return (*self._view(store, lang), *self._shown(store, model, lang, _session(request)))

    # --- events ---------------------------------------------------------------------------------------

    def wire(
        self,
        demo: gr.Blocks,
        *,
        chatbot: gr.Chatbot,
        chatbot_state: gr.State,
        model: gr.Dropdown,
        gauge: gr.HTML,
        finished: gr.State,
        textbox: gr.MultimodalTextbox,
        sent: gr.State,
        settings: list[gr.components.Component],
        stop: Any = None,
    ) -> None:
        """``sent``: the ChatInterface's state holding the message just sent (the box is cleared by then);
        ``settings``: the chat settings panel's inputs (:attr:`ChatSettings.inputs`); ``stop``: the event that
        adds the "Stopped" note (the chat is saved after it, note included), else the box's Stop."""
        view = [self.store, *self.list.groups, self.list.empty, self.actions, self.title, self.export_md,
                self.export_json, self.list.search, self.restore_button, self.removed]
        shown = [chatbot, chatbot_state, model, gauge, self.shown, *settings]
        quiet: dict[str, Any] = {"api_visibility": "private", "show_progress": "hidden", **SIDE_CONCURRENCY}
        demo.load(self.restore, [self.store, model], view + shown, **quiet)
        textbox.submit(self.started, [self.store, self.shown, sent, model, *settings], view, **quiet)
        finished.change(self.saved, [self.store, finished, model, self.list.search], [*view, chatbot, chatbot_state],
                        **quiet)
        (stop.then if stop is not None else textbox.stop)(self.stopped, [self.store, chatbot, self.shown, model],
                                                          [*view, gauge], **quiet)
        chatbot.undo(self.undone, [self.store, chatbot, self.shown, model], [*view, gauge], **quiet)
        for group in self.list.groups:
            group.input(self.open, [self.store, group, self.shown, model], view + shown, **quiet)
        self.list.search.change(self.searched, [self.store, self.list.search], [*self.list.groups, self.list.empty],
                               trigger_mode="always_last", **quiet)
        self.new.click(self.start_new, [self.store, self.shown, model], view + shown, **quiet)
        chatbot.clear(self.cleared, [self.store, self.shown, model], view + shown, **quiet)
        self.restore_button.click(self.restored, [self.store, self.removed, self.shown, model], view + shown,
                                  **quiet)
        self.rename.click(self.renamed, [self.store, self.shown, self.title], view, **quiet)
        self.title.submit(self.renamed, [self.store, self.shown, self.title], view, **quiet)
        self.delete.click(self.deleted, [self.store, self.shown, model], view + shown, **quiet)
        self.import_json.upload(self.imported, [self.store, self.import_json, self.shown, model], view + shown,
                                **quiet)

