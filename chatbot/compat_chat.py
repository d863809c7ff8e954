"""Private touches of Gradio that make each chat-tab message cheaper for the server (compat.py's companion,
one function per touch, each tested in tests/test_compat_chat.py; checked against Gradio 6.31).

Every server request of a message costs the process CPU (the HTTP stack, the event's processing, a
component rebuilt for each update of the message box), so at a few hundred visitors the chain of steps
ChatInterface registers for a message, not the reply itself, decides what a process can serve. With
these touches a message costs the server three events (take the message, stream the reply, keep the
conversation) instead of eight; the steps that only change the message box's buttons run in the
browser, as Gradio runs any function it could translate to JavaScript (``js=True``).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used, as in compat.py
    import gradio as gr


class _LazyConfigs(dict):
    """``SessionState.config_values`` computed per block when first asked for, not all at once: the same
    values (``BlocksConfig.config_for_block`` of the session's block), in the blocks' order when listed."""

    def __init__(self, blocks_config: Any, ids: list[int]) -> None:
        super().__init__()
        self._blocks_config = blocks_config
        self._order = ids
        self._pending = set(ids)

    def _fill(self, key: int) -> Any:
        self._pending.discard(key)
        value = self._blocks_config.config_for_block(key, [], self._blocks_config.blocks[key])
        dict.__setitem__(self, key, value)
        return value

    def _fill_all(self) -> None:
        if not self._pending:
            return
        for key in [k for k in self._order if k in self._pending]:
            self._fill(key)
        ordered = {k: dict.__getitem__(self, k) for k in self._order if dict.__contains__(self, k)}
        rest = {k: v for k, v in dict.items(self) if k not in ordered}
        dict.clear(self)
        dict.update(self, {**ordered, **rest})

    def __missing__(self, key: int) -> Any:
        if key not in self._pending:
            raise KeyError(key)
        return self._fill(key)

    def __setitem__(self, key: int, value: Any) -> None:
        self._pending.discard(key)
        dict.__setitem__(self, key, value)

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self._pending

    def get(self, key: int, default: Any = None) -> Any:
        return self[key] if key in self else default

    def __iter__(self) -> Iterator[int]:
        self._fill_all()
        return dict.__iter__(self)

    def __len__(self) -> int:
        return dict.__len__(self) + len(self._pending)

    def keys(self):  # noqa: ANN201 - dict's views
        self._fill_all()
        return dict.keys(self)

    def values(self):  # noqa: ANN201
        self._fill_all()
        return dict.values(self)

    def items(self):  # noqa: ANN201
        self._fill_all()
        return dict.items(self)


class _Shell:
    """What ``SessionState.__init__`` reads of a Blocks: its default config, and (for the eager configs)
    its blocks, given as none."""

    def __init__(self, blocks: Any) -> None:
        self.default_config = blocks.default_config
        self.blocks: dict = {}


def lazy_session_configs() -> bool:
    """Gradio builds a configuration of every block of the page (``get_config``, 90 blocks here) for each new
    browser session, at its first event, to serve ``/gradio_api/deep_link`` (which this app does not offer):
    11% of a process's CPU with 200 visitors arriving (py-spy). With this touch (process-wide, once; True
    the first time) each block's configuration is made when Gradio first reads it, which is the same value.

    Relies on ``gradio.state_holder.SessionState.__init__(blocks)`` reading ``blocks.default_config`` and
    ``blocks.blocks`` only, and on ``config_values`` being read by key, ``in`` and ``items()`` (its
    ``_update_value_in_config``, ``__setitem__``, ``_update_config`` and ``components``)."""
    from gradio.state_holder import SessionState

    if getattr(SessionState.__init__, "_switchboard_lazy", False):
        return False
    original = SessionState.__init__

    @functools.wraps(original)
    def __init__(self: Any, blocks: Any) -> None:
        original(self, _Shell(blocks))  # type: ignore[arg-type]
        ids = [k for k in self.blocks_config.blocks if k in blocks.blocks]
        self.config_values = _LazyConfigs(self.blocks_config, ids)

    __init__._switchboard_lazy = True  # type: ignore[attr-defined]
    SessionState.__init__ = __init__  # type: ignore[method-assign]
    return True


# --- The chat tab's submit chain ------------------------------------------------------------------------


def _steps_after(demo: gr.Blocks, fn_id: int) -> list[Any]:
    return [f for f in demo.fns.values() if f.trigger_after == fn_id]


def _box_only(block_fn: Any, box: Any) -> bool:
    return [o._id for o in block_fn.outputs] == [box._id] and not block_fn.inputs and callable(block_fn.fn)


def _update_for_browser(block_fn: Any, box: Any) -> dict[str, Any] | None:
    """The update a constant step of ``box`` sends (as the server would build it), or None when the step's
    result is not a constant change of the box's properties (a value would need the server's processing)."""
    from gradio.blocks import Block, postprocess_update_dict
    from gradio.utils import delete_none, is_prop_update

    try:
        made = inspect.unwrap(block_fn.fn)()
    except TypeError:
        return None
    if inspect.isawaitable(made):
        made.close()  # type: ignore[attr-defined]
        return None
    if isinstance(made, Block):
        update = {**made.constructor_args, "__type__": "update"}
    elif is_prop_update(made):
        update = delete_none(dict(made), skip_value=True)
    else:
        return None
    if "value" in update:
        return None
    kwargs = {**box.constructor_args, **update, "render": False}
    kwargs.pop("value", None)
    kwargs.pop("__type__", None)
    return postprocess_update_dict(type(box)(**kwargs), update, postprocess=False)


def _in_browser(block_fn: Any, update: dict[str, Any]) -> None:
    """Run ``block_fn`` in the browser: its JavaScript returns ``update``; its Python function stays (for a
    caller of the queue by index), as Gradio keeps it for a step it translated itself."""
    server = block_fn.fn

    @functools.wraps(server)
    async def step(*args: Any, **kwargs: Any) -> Any:
        made = server(*args, **kwargs)
        return await made if inspect.isawaitable(made) else made

    step.__js_implementation__ = f"() => ({json.dumps(update)})"  # type: ignore[attr-defined]
    block_fn.fn = step


def _take_and_show(chat: Any, empties_box: bool) -> Callable[..., tuple]:
    """The step that takes a message: what ChatInterface's first two steps did (keep the message, show it in
    the chat; and empty the box, unless the browser does), in one request."""

    def take(message: Any, history: list) -> tuple:
        box, kept = chat._clear_and_save_textbox(message)
        shown = chat._append_message_to_history(kept, history or [], "user")
        return (box, kept, shown) if empties_box else (kept, shown)

    return take


def _emptied(box: Any) -> Any:
    """The box's value once emptied, as the server sends it."""
    value = box.postprocess("")
    return value.model_dump() if hasattr(value, "model_dump") else value


def shorten_submit_chain(demo: gr.Blocks, chat: gr.ChatInterface) -> dict[str, int]:
    """The chain ChatInterface registers for a message sent from the box (the box's ``submit``), as cheap
    for the server as it can be, with what the page shows unchanged. How many steps each change touched:

    - ``merged``: keeping the message and showing it in the chat are one request (they were two, one after
      the other, the first also emptying the box);
    - ``in_browser``: the steps that only change the box run in the browser (each was a request): Stop
      shown (and the box emptied) once the message is taken, then Send again, the box unlocked;
    - ``one_state``: after the reply, the conversation is kept in ``chatbot_state`` only: ChatInterface also
      copied it into ``chatbot_value``, whose change the page answered with two more requests that set the
      chat to what it already showed (this app never sets ``chatbot_value``);
    - ``dropped``: the save of the conversation in the browser's storage, which does nothing without
      ChatInterface's ``save_history`` (the saved-chats panel keeps conversations).

    Relies on ``Blocks.fns`` (``BlockFunction``: ``fn``, ``inputs``, ``outputs``, ``targets``,
    ``trigger_after``), on the steps ChatInterface 6.31 registers (``_clear_and_save_textbox`` on the box's
    submit, then ``_append_message_to_history``, then the reply; ``_save_conversation`` last; and its
    ``saved_input``, ``chatbot_state``, ``chatbot_value`` States), and on Gradio's front end running a
    step's ``__js_implementation__`` instead of calling the server (as for ``js=True``)."""
    box = chat.textbox
    counts = {"merged": 0, "in_browser": 0, "one_state": 0, "dropped": 0}
    take = next((f for f in demo.fns.values() if (box._id, "submit") in f.targets
                 and f.fn == chat._clear_and_save_textbox), None)
    if take is None:
        return counts
    show = next((f for f in _steps_after(demo, take._id) if f.fn == chat._append_message_to_history), None)
    if show is not None:
        # Stop shown, when the message is taken: the browser also empties the box then
        stop = next((f for f in _steps_after(demo, take._id) if f.trigger_only_on_success and _box_only(f, box)), None)
        update = _update_for_browser(stop, box) if stop is not None else None
        if stop is not None and update is not None:
            _in_browser(stop, {**update, "value": _emptied(box)})
            counts["in_browser"] += 1
        take.fn = _take_and_show(chat, empties_box=update is None)
        take.inputs = [*take.inputs, chat.chatbot]
        take.outputs = [*(o for o in take.outputs if update is None or o is not box), chat.chatbot]
        for follower in _steps_after(demo, show._id):
            follower.trigger_after = take._id
        show.trigger_after = None  # nothing triggers it any more (it stays callable by index)
        counts["merged"] += 1
    pending, seen = [take._id], set()
    while pending:  # every step of the chain after the message is taken
        fn_id = pending.pop()
        for step in _steps_after(demo, fn_id):
            if step._id in seen:
                continue
            seen.add(step._id)
            pending.append(step._id)
            counts_for(step, box, chat, counts)
    return counts


def counts_for(step: Any, box: Any, chat: Any, counts: dict[str, int]) -> None:
    """One step of the chain: moved to the browser, narrowed to ``chatbot_state``, dropped, or left."""
    if getattr(step.fn, "__js_implementation__", None):
        return
    if _box_only(step, box):
        update = _update_for_browser(step, box)
        if update is not None:
            _in_browser(step, update)
            counts["in_browser"] += 1
    elif ([o._id for o in step.outputs] == [chat.chatbot_state._id, chat.chatbot_value._id]
          and [i._id for i in step.inputs] == [chat.chatbot._id]):
        step.outputs = [chat.chatbot_state]
        step.fn = _identity
        counts["one_state"] += 1
    elif step.fn == chat._save_conversation and not chat.save_history:
        step.trigger_after = None
        counts["dropped"] += 1


def _identity(value: Any) -> Any:
    return value


def track_states_by_step(demo: gr.Blocks) -> gr.Blocks:
    """Before every event (every update of a streamed reply included), Gradio looks for the outputs whose
    change another event listens to, scanning every event of the page for each State output (~300 checks
    per update of a reply here, 3% of a process's CPU at 200 visitors). The answer depends only on the
    step and on the page's events, which never change in a page without ``gr.render``: it is worked out
    once per step. Each update still hashes those States' values, as Gradio does.

    Relies on ``Blocks.get_state_ids_to_track(block_fn, state)`` (looked up on the instance by
    ``Blocks.process_api``; returns the State ids and ``utils.deep_hash`` of their values), on
    ``Blocks.renderables`` (empty without ``gr.render``) and on ``BlockFunction.targets``."""
    from gradio.utils import deep_hash

    original = demo.get_state_ids_to_track
    by_step: dict[int, list[int]] = {}

    @functools.wraps(original)
    def get_state_ids_to_track(block_fn: Any, state: Any) -> tuple[list[int], list]:
        if state is None or demo.renderables:
            return original(block_fn, state)
        ids = by_step.get(block_fn._id)
        if ids is None:
            ids = by_step[block_fn._id] = original(block_fn, state)[0]
        return ids, [deep_hash(state[i]) for i in ids]

    demo.get_state_ids_to_track = get_state_ids_to_track  # type: ignore[method-assign]
    return demo


#: How long Gradio's queue sleeps between looks while no event waits (Gradio's own: 1 ms; a joined event
#: waits at most this long to start) and between looks for progress to send (Gradio's: 10 ms; the app shows
#: no progress bar).
QUEUE_IDLE_SLEEP = 0.01
PROGRESS_IDLE_SLEEP = 0.1


def calmer_queue(demo: gr.Blocks) -> gr.Blocks:
    """Gradio's queue looks for waiting events every millisecond while none waits, which is most of the time
    even under load: about 0.07 of a core per process, idle or not (measured with psutil on an idle
    replica: 0.7 CPU-s in 10 s), paid once per replica. It looks every QUEUE_IDLE_SLEEP instead (a burst of
    events is still taken without a pause: the queue sleeps only when it found nothing to start), and for
    progress updates every PROGRESS_IDLE_SLEEP. Call after ``Blocks.queue()``.

    Relies on ``Blocks._queue`` (``queueing.Queue``, made by ``queue()``) and its ``sleep_when_free`` and
    ``progress_update_sleep_when_free``, read at each turn of ``start_processing`` and
    ``start_progress_updates``."""
    queue = demo._queue
    queue.sleep_when_free = max(queue.sleep_when_free, QUEUE_IDLE_SLEEP)
    queue.progress_update_sleep_when_free = max(queue.progress_update_sleep_when_free, PROGRESS_IDLE_SLEEP)
    return demo
