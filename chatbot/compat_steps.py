"""Private touches of Gradio that run several of a page's steps in one server request (compat_chat.py's
companion: one function per touch, each tested in tests/test_compat_chat.py; checked against Gradio 6.31).

Each step a page sends is a request the server answers on its one event loop (a queue join, its stream,
pre- and postprocessing): two steps that one trigger starts, or a step that only copies what another one
just computed, cost less as one. What the page shows, and the order in which it changes, stay the same.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used, as in compat.py
    import gradio as gr


def _as_tuple(value: Any, count: int) -> tuple:
    from gradio.utils import is_prop_update

    if count == 1:
        return (value,)
    if isinstance(value, dict) and is_prop_update(value) and len(value) == 1:  # one gr.skip() for all
        return (value,) * count
    return tuple(value)


def _with_request(fn: Callable[..., Any], values: list[Any], request: Any) -> list[Any]:
    """``values`` with the request where ``fn`` asks for it, as Gradio gives it (``helpers.special_args``)."""
    from gradio.helpers import special_args

    return special_args(fn, list(values), request)[0]


def _asks_for_request(step: Callable[..., Any]) -> None:
    from gradio.route_utils import Request

    step.__annotations__ = {"request": Request}  # Gradio puts the event's request in the first parameter


def fold(host: Any, guest: Any) -> None:
    """Run step ``guest`` (which the same trigger starts, or nothing) inside step ``host``'s request: host's
    function, then guest's, on host's inputs then guest's, answering host's outputs then guest's (a State that
    host outputs and guest reads is read as host left it). Nothing triggers ``guest`` any more (it stays
    callable by index). Both functions are plain (not async, not generators); their outputs are disjoint.

    Relies on ``BlockFunction`` (``fn``, ``inputs``, ``outputs``, ``targets``, ``trigger_after``), on Gradio
    giving a function's ``gr.Request`` parameter the event's request (``helpers.special_args``, as for any
    event), and on one function's outputs being returned as one tuple (a lone ``gr.skip()`` for all)."""
    for fn in (host.fn, guest.fn):
        if inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(f"fold takes plain functions, not {fn!r}")
    if {o._id for o in host.outputs} & {o._id for o in guest.outputs}:
        raise ValueError("fold: the two steps share an output")
    first, second = host.fn, guest.fn
    own, outs = len(host.inputs), len(host.outputs)
    handed = [i for i, block in enumerate(guest.inputs) if block.stateful and block in host.outputs]
    host_outputs = list(host.outputs)

    def both(request: Any, *values: Any) -> tuple:
        made = _as_tuple(first(*_with_request(first, list(values[:own]), request)), outs)
        theirs = list(values[own:])
        for i in handed:  # what host just put in a State guest reads
            theirs[i] = made[host_outputs.index(guest.inputs[i])]
        return (*made, *_as_tuple(second(*_with_request(second, theirs, request)), len(guest.outputs)))

    _asks_for_request(both)
    host.fn = both
    host.inputs = [*host.inputs, *guest.inputs]
    host.outputs = [*host.outputs, *guest.outputs]
    guest.targets = []
    guest.trigger_after = None


def reply_steps(demo: gr.Blocks, chat: gr.ChatInterface) -> list[Any]:
    """The steps that stream ChatInterface's reply (the box's submit, retry, edit, an option's click): their
    outputs begin with its ``null_component`` and its chat (``ChatInterface._setup_events``)."""
    return [f for f in demo.fns.values() if f.outputs[:2] == [chat.null_component, chat.chatbot]
            and inspect.isasyncgenfunction(f.fn)]


def extend_reply_steps(
    demo: gr.Blocks, chat: gr.ChatInterface, inputs: list[Any], outputs: list[Any],
    along: Callable[[AsyncIterator[tuple], list[Any], Any], AsyncIterator[tuple]],
) -> int:
    """Every step that streams ChatInterface's reply also reads ``inputs`` (after its own) and answers
    ``outputs`` (after its own): ``along(updates, values, request)`` turns the reply's updates (tuples of the
    step's own outputs) into updates of all its outputs, ``values`` being those of ``inputs``. It closes
    ``updates`` when it ends (Stop closes it). How many steps it extended.

    Relies on what :func:`reply_steps` does, on ``BlockFunction.fn`` being an async generator called with the
    inputs' values, and on Gradio's request injection (as :func:`fold`)."""
    steps = reply_steps(demo, chat)
    for block_fn in steps:
        server, own = block_fn.fn, len(block_fn.inputs)

        def step(request: Any, *values: Any, server: Any = server, own: int = own) -> AsyncIterator[tuple]:
            updates = server(*_with_request(server, list(values[:own]), request))
            return along(updates, list(values[own:]), request)

        async def reply(request: Any, *values: Any, step: Any = step) -> AsyncIterator[tuple]:
            async with contextlib.aclosing(step(request, *values)) as updates:
                async for update in updates:
                    yield update

        _asks_for_request(reply)
        block_fn.fn = reply
        block_fn.inputs = [*block_fn.inputs, *inputs]
        block_fn.outputs = [*block_fn.outputs, *outputs]
    return len(steps)


def drop_after(demo: gr.Blocks, step: Any, follower: Any) -> None:
    """``follower`` (a step that runs after ``step``) no longer runs: what followed it follows ``step``.

    Relies on ``BlockFunction.trigger_after`` (the step a ``.then()``/``.success()`` follows) and ``targets``."""
    for after in demo.fns.values():
        if after.trigger_after == follower._id:
            after.trigger_after = step._id
    follower.trigger_after = None
    follower.targets = []
