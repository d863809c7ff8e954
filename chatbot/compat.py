"""Every use of Gradio's and the SDK's private internals, one function per touch, each tested in tests/test_compat.py
(a cheaper chat-tab message: compat_chat.py, test_compat_chat.py; the SDK's aiohttp transport: compat_sdk.py).

Each function says which internal it relies on (checked against Gradio 6.31 and openai 3.57, the versions
requirements.txt pins), so an upgrade that moves it fails that function's test rather than silently
reopening what the function closes.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx2
import openai

if TYPE_CHECKING:  # imported where used: chatbot.core.upstream imports this module without needing Gradio
    import gradio as gr

log = logging.getLogger("switchboard.events")


def enforce_path_checks(demo: gr.Blocks) -> gr.Blocks:
    """Make Gradio apply its own path rules to every event input of ``demo``, however it is served.

    Gradio copies any ``FileData`` path found in an event's input into its cache (and serves the copy)
    after ``processing_utils._check_allowed`` has approved it: the path must lie in Gradio's upload folder
    and in none of the ``blocked_paths``. That check returns early unless ``Blocks.has_launched`` is set,
    which only ``Blocks.launch()`` does: an app served through ``gr.mount_gradio_app`` (``build_server``)
    would otherwise copy and serve any file the server can read. Setting it early is harmless:
    ``launch()`` sets it anyway and nothing else in Gradio reads it."""
    demo.has_launched = True
    return demo


def quiet_event_failures(demo: gr.Blocks, message: Callable[[object], str]) -> gr.Blocks:
    """Every failing event of ``demo`` (a malformed payload, a path Gradio refuses, a wrong number of
    inputs, a value a Dropdown does not offer...) ends with a ``gr.Error`` carrying ``message(request)``
    for its caller and one warning line in the log (the event and the exception's type), never a
    traceback. The app itself raises no ``gr.Error``: every one comes from Gradio's processing.

    Relies on ``Blocks.process_api`` being the one method both the queue (``queueing.Queue``) and
    ``/run/predict`` call for every event (preprocessing, the function, postprocessing), looked up on
    the instance; they print a traceback for any exception that is not a ``gr.Error`` with
    ``print_exception`` set, and show the caller nothing useful for it (``show_error=False``)."""
    import gradio as gr

    original = demo.process_api

    @functools.wraps(original)
    async def process_api(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return await original(*args, **kwargs)
        except Exception as exc:  # Gradio's own gr.Error too: it can echo the whole malformed value
            block_fn = kwargs.get("block_fn", args[0] if args else None)
            name = getattr(block_fn, "api_name", None) or getattr(block_fn, "name", None) or block_fn
            cause = exc.__cause__ or exc.__context__
            reason = type(exc).__name__ + (f" ({type(cause).__name__})" if cause is not None else "")
            log.warning("event %s refused: %s", name, reason)
            raise gr.Error(message(kwargs.get("request")), print_exception=False) from None

    demo.process_api = process_api  # type: ignore[method-assign]
    return demo


def upload_folder() -> str:
    """Gradio's upload folder, where its upload route writes visitors' files (and its cache copies).

    Relies on ``gradio.utils.get_upload_folder`` (not part of Gradio's public API): ``GRADIO_TEMP_DIR`` or
    ``<tmp>/gradio``, the folder each ``App`` takes as its ``uploaded_file_dir`` when it is created."""
    from gradio.utils import get_upload_folder

    return get_upload_folder()


def uploaded_by_gradio(demo: gr.Blocks) -> Callable[[str], bool]:
    """Whether Gradio's upload route (``POST /gradio_api/upload``) wrote ``path`` for ``demo``.

    Relies on ``Blocks.upload_file_set``: the route adds the path of every file it writes (and nothing
    else does). It is Gradio's only record of which files in its upload folder visitors uploaded, as
    opposed to copies Gradio made of files an event named."""

    def uploaded(path: str) -> bool:
        record = getattr(demo, "upload_file_set", None)
        return isinstance(record, set) and (path in record or os.path.abspath(path) in record)

    return uploaded


# --- Gradio's queue and server, for the mounted assembly (``build_server``) -----------------------------


def limit_queue_threads(demo: gr.Blocks, count: int) -> gr.Blocks:
    """What ``launch(max_threads=count)`` does, for an app that is mounted instead: Gradio's queue runs at
    most ``count`` jobs at once (and its thread limiter lends as many threads). Call before
    ``Blocks.queue()``.

    Relies on ``Blocks.max_threads``: ``queue()`` builds ``queueing.Queue(concurrency_count=max_threads)``
    and the queue's start sizes its worker slots from it; ``mount_gradio_app`` takes no such option."""
    demo.max_threads = count
    return demo


def gradio_closer(app: Any, demo: gr.Blocks) -> Callable[[], None]:
    """What ``Blocks.close()`` does at shutdown, for ``demo`` mounted into ``app`` (a FastAPI app given to
    ``gr.mount_gradio_app``): the queue takes no more jobs and the heartbeat streams end by themselves.

    ``Blocks.close()`` cannot be called: it signals ``Blocks.app``, which ``queue()`` created and nobody
    serves, not the ``gradio.routes.App`` mounted into ``app`` (found here through Starlette's public
    ``Mount`` routes). Relies on ``Blocks._queue.close()``, ``Blocks.is_running`` (the heartbeat loop's
    condition) and ``App.stop_event`` (the event the heartbeat streams wait on)."""
    from gradio.routes import App
    from starlette.routing import Mount

    mounted = [route.app for route in app.routes if isinstance(route, Mount) and isinstance(route.app, App)
               and route.app.get_blocks() is demo]
    if len(mounted) != 1:
        raise ValueError(f"expected the Blocks mounted once into the app, found {len(mounted)} mounts")
    served, queue = mounted[0], demo._queue

    def close() -> None:
        queue.close()
        demo.is_running = False
        served.stop_event.set()

    return close


# --- Gradio's per-session memory (chatbot/web/sessions.py decides which sessions go) ------------------------


def held_sessions(demo: gr.Blocks) -> dict[str, tuple[bool, datetime.datetime | None]] | None:
    """Every session Gradio holds for ``demo``: whether it is closed and when it was last used (Gradio's
    clock, naive local time; None when not recorded). None before the app is launched or mounted.

    Relies on ``Blocks.state_holder`` (a ``gradio.state_holder.StateHolder``): its ``session_data``
    (session hash -> ``SessionState``, whose ``is_closed`` the heartbeat route sets when the tab goes)
    and its ``time_last_used``."""
    holder = getattr(demo, "state_holder", None)
    if holder is None:
        return None
    used = holder.time_last_used
    return {sid: (bool(state.is_closed), used.get(sid)) for sid, state in list(holder.session_data.items())}


def drop_sessions(demo: gr.Blocks, sessions: list[str]) -> set[str]:
    """Drop ``sessions`` from Gradio's state holder as its own LRU eviction would, running each
    ``gr.State``'s ``delete_callback`` first as an expiring State does; returns the sessions still held.

    Relies on ``StateHolder.delete_state`` (the callbacks), ``StateHolder.lock`` (taken where Gradio
    changes the dicts) and its ``session_data`` / ``time_last_used`` dicts."""
    holder = demo.state_holder
    for sid in sessions:
        try:
            holder.delete_state(sid)
        except Exception:
            logging.getLogger("switchboard.sessions").exception(
                "a State's delete_callback failed; the session is dropped anyway")
    with holder.lock:
        for sid in sessions:
            holder.session_data.pop(sid, None)
            holder.time_last_used.pop(sid, None)
        return set(holder.session_data)


def busy_sessions(demo: gr.Blocks) -> set[str]:
    """Sessions with an event queued, running, or not yet finished in ``demo``'s queue.

    Relies on ``Blocks._queue`` (a ``gradio.queueing.Queue``): ``event_ids_to_events`` (Gradio drops an
    event from it once it has run), ``event_queue_per_concurrency_id`` (each ``EventQueue.queue``) and
    ``active_jobs``, all holding ``queueing.Event`` objects with a ``session_hash``."""
    queue = getattr(demo, "_queue", None)
    if queue is None:
        return set()
    busy = {e.session_hash for e in list(queue.event_ids_to_events.values())}
    for event_queue in list(queue.event_queue_per_concurrency_id.values()):
        busy.update(e.session_hash for e in list(event_queue.queue))
    for job in list(queue.active_jobs):
        if job:
            busy.update(e.session_hash for e in job)
    busy.discard(None)
    return busy


#: Event statuses in Gradio's analytics that mean the event is not finished.
_LIVE_STATUSES = ("queued", "processing")


def drop_queue_leftovers(demo: gr.Blocks, held: set[str], busy: set[str]) -> None:
    """The queue's per-session entries of sessions that are neither ``held`` (every session that joins the
    queue is in the state holder from the join on) nor ``busy``, when nothing is waiting to be read from
    them: the session's message queue and event-id set, and the analytics of its finished events.

    Relies on ``Blocks._queue``'s ``pending_messages_per_session`` (session -> an ``AsyncQueue``),
    ``pending_event_ids_session``, ``event_analytics`` (event id -> a dict with ``session_hash`` and
    ``status``, kept even with monitoring off) and ``event_ids_to_events``."""
    queue = getattr(demo, "_queue", None)
    if queue is None:
        return
    messages = queue.pending_messages_per_session
    event_ids = queue.pending_event_ids_session
    for sid in list(messages):
        if sid not in held and sid not in busy and messages[sid].empty():
            messages.pop(sid, None)
            event_ids.pop(sid, None)
    for sid in list(event_ids):
        if sid not in held and sid not in busy and sid not in messages:
            event_ids.pop(sid, None)
    analytics = queue.event_analytics
    if analytics:
        live = queue.event_ids_to_events
        for event_id, record in list(analytics.items()):
            if (record.get("session_hash") not in held and record.get("status") not in _LIVE_STATUSES
                    and event_id not in live):
                analytics.pop(event_id, None)


# --- Gradio's start-up costs, paid once ------------------------------------------------------------------


def cache_component_signatures() -> int:
    """Give every Gradio block class's ``__init__`` its ``inspect.signature`` once, as ``__signature__``
    (the standard way a callable states its signature; the value is the one inspect computes), process-wide.
    Returns how many classes it did.

    Relies on ``Block.get_config`` calling ``inspect.signature(cls.__init__)`` for every block of the app
    when a visitor's session starts (43 blocks here) and for every component an update returns, and on
    ``gradio.blocks.Block.__subclasses__()`` reaching every block class."""
    from gradio.blocks import Block

    done = 0
    pending, seen = [Block], set()
    while pending:
        cls = pending.pop()
        if cls in seen:
            continue
        seen.add(cls)
        pending.extend(cls.__subclasses__())
        init = cls.__dict__.get("__init__")
        if init is None or "__signature__" in getattr(init, "__dict__", {}):
            continue
        try:
            init.__signature__ = inspect.signature(init)
        except (TypeError, ValueError, AttributeError):  # a built-in __init__ takes no attributes
            continue
        done += 1
    return done


def warm_up_gradio() -> threading.Thread:
    """In the background, what Gradio's first event would otherwise wait for: it enters
    ``MatplotlibBackendMananger`` around every event, and the first entry imports pyplot when matplotlib
    is installed.

    Relies on ``gradio.utils.MatplotlibBackendMananger`` (sic), the context manager
    ``route_utils.call_process_api`` enters around every event."""

    def work() -> None:
        try:
            from gradio.utils import MatplotlibBackendMananger

            with MatplotlibBackendMananger():
                pass
        except Exception as exc:  # a warm-up is never worth an error: the first event does it instead
            log.warning("Gradio warm-up skipped: %s", type(exc).__name__)

    thread = threading.Thread(target=work, name="switchboard-gradio-warm-up", daemon=True)
    thread.start()
    return thread


# --- Gradio's markup, in the browser ---------------------------------------------------------------------

#: Runs in the browser once, at page load, and as Gradio 6.31's front end renders more (a MutationObserver):
#: the message box's textarea gets its label's text; a collapsible message title's nested arrow ``button``
#: becomes ``inert`` and the title gets ``aria-expanded``; labelled chat messages become ``article``s; the
#: example prompts' ``role=list`` (no ``listitem`` children) goes; an inline formula KaTeX made of money
#: ("costs $5 and $10": TeX that ends, but does not start, with a space, or that a digit follows) goes back
#: to its text (Pandoc's rule for ``$``); Gradio's English file refusals are put in the page's language.
PAGE_JS = (Path(__file__).parent / "compat_page.js").read_text(encoding="utf-8")  # the script, as it runs

#: Runs in the browser on each change of the message box's value (``value.files``: Gradio's FileData, with
#: ``orig_name`` and ``size`` for a file picked in this page). Gradio shows a waiting file as a bare
#: ``.thumbnail-wrapper`` with an unnamed ``.delete-button``: the file's name and size go under it, into its
#: accessible name, and into its remove button's ("Remove notes.txt"), in the page's language.
MESSAGE_BOX_JS = """
(value) => {
  const files = (value && value.files) || [];
  const lang = (document.documentElement.lang || navigator.language || "en").slice(0, 2).toLowerCase();
  const remove = (TEXTS[lang] || TEXTS.en).remove;
  const number = new Intl.NumberFormat(lang, {maximumFractionDigits: 1});
  const size = (n) => typeof n !== "number" ? "" : n < 1048576
    ? `${number.format(Math.max(1, Math.round(n / 1024)))} KB` : `${number.format(n / 1048576)} MB`;
  const paint = () => {
    document.querySelectorAll("#message .thumbnail-wrapper").forEach((item, i) => {
      const file = files[i];
      if (!file) return;
      const name = file.orig_name || String(file.path || "").split("/").pop() || "file";
      const shown = size(file.size) ? `${name} · ${size(file.size)}` : name;
      let caption = item.querySelector(".pending-file");
      if (!caption) {
        caption = document.createElement("span");
        caption.className = "pending-file";
        item.append(caption);
      }
      caption.textContent = shown;
      item.setAttribute("aria-label", shown);
      item.title = shown;
      const button = item.querySelector(".delete-button");
      if (button) button.setAttribute("aria-label", `${remove} ${name}`);
    });
  };
  requestAnimationFrame(() => requestAnimationFrame(paint));
  setTimeout(paint, 250);
  return [];
}
"""


def name_unnamed_controls(demo: gr.Blocks, textbox: gr.MultimodalTextbox, texts: dict[str, dict[str, str]]) -> None:
    """Wire :data:`PAGE_JS` (at load) and :data:`MESSAGE_BOX_JS` (on ``textbox``'s changes; its ``elem_id``
    must be ``message``): browser-only listeners, with no function and no request to the server. Register
    them last: every other event keeps its index. ``texts``: per language (``en`` at least), ``remove`` (a
    waiting file's remove button, before its name) and the messages that replace Gradio's English ones for a
    file it refused: ``refused_type`` (``{names}``) and ``refused_size`` (``{names}``, ``{limit}``).

    Relies on the markup of Gradio 6.31's front end that the scripts read (tested in test_compat), and on the
    text of its two refusals (``Invalid file type...``, ``File(s) exceed the maximum allowed size...``)."""
    import json

    quiet: dict[str, Any] = {"queue": False, "show_progress": "hidden", "api_visibility": "private"}
    known = f"const TEXTS = {json.dumps(texts, ensure_ascii=False)};"
    demo.load(None, None, None, js=PAGE_JS.replace("() => {", "() => {" + known, 1), **quiet)
    textbox.change(None, textbox, None, js=MESSAGE_BOX_JS.replace("(value) => {", "(value) => {" + known, 1),
                   **quiet)


# --- The SDK --------------------------------------------------------------------------------------------


class ShortWaitClient(openai.AsyncOpenAI):
    """The SDK's client with one change: a ``Retry-After`` longer than ``max_retry_wait`` seconds is not
    waited out (the caller tells the person when to try again instead). Retries stay the SDK's own, bounded
    by ``max_retries``; the SDK has no public hook for which responses it retries.

    Relies on ``BaseClient._should_retry(response)`` (asked before every retry of a failed response) and
    ``BaseClient._parse_retry_after_header(headers)`` (seconds from ``retry-after-ms`` / ``retry-after``)."""

    max_retry_wait: float = 5.0

    def _should_retry(self, response: httpx2.Response) -> bool:
        wait = self._parse_retry_after_header(response.headers)
        if wait is not None and wait > self.max_retry_wait:
            return False
        return super()._should_retry(response)


def hide_progress(demo: gr.Blocks, components: list[Any]) -> int:
    """Show no progress (no overlay, no timer) for any event of ``demo`` that updates one of ``components``;
    how many events that was. ChatInterface registers some of its steps (unlocking the box after a reply)
    with the default "full" progress and takes no option for them. Relies on ``Blocks.fns`` (BlockFunction
    objects) and their ``outputs`` and ``show_progress`` attributes, which the page's config is built from."""
    ids = {component._id for component in components}
    hidden = 0
    for block_fn in demo.fns.values():
        if any(getattr(output, "_id", None) in ids for output in block_fn.outputs):
            block_fn.show_progress = "hidden"
            hidden += 1
    return hidden


def keep_typed_text(demo: gr.Blocks, box: Any) -> int:
    """ChatInterface ends each reply's chain with a step that empties ``box`` (``update(value=None,
    interactive=True)``): with a box that stays usable while a reply streams (chatbot.web.message_box), it
    wiped what the visitor typed meanwhile, or right after the reply. That step now only unlocks the box (the
    box was emptied when the message was taken). How many steps changed (1 with Gradio 6.31). Relies on
    ``Blocks.fns`` (BlockFunction objects) and their ``fn``, ``inputs`` and ``outputs`` attributes."""
    import gradio as gr

    changed = 0
    for block_fn in demo.fns.values():
        outputs = [getattr(output, "_id", None) for output in block_fn.outputs]
        if (outputs != [box._id] or block_fn.inputs or not callable(block_fn.fn)
                or inspect.iscoroutinefunction(block_fn.fn)):
            continue
        try:
            made = block_fn.fn()
        except TypeError:  # a function that takes arguments: not this step
            continue
        if isinstance(made, dict) and made.get("value", "") is None and made.get("interactive") is True:
            block_fn.fn = lambda: gr.update(interactive=True)
            changed += 1
    return changed
