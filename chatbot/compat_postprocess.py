"""A private touch of Gradio that keeps the chat tab's streamed updates on the event loop (compat.py's companion;
tested in tests/test_compat_postprocess.py; checked against Gradio 6.31).

For every update of a step, ``Blocks.postprocess_data`` runs each non-State output's ``postprocess`` in a worker
thread (``anyio.to_thread.run_sync(block.postprocess, value, limiter=...)``) and waits for the thread to hand the
result back to the loop. For the reply's Chatbot holding only text and for a ``BrowserState``, ``postprocess`` is a
little pure CPU (``inspect.cleandoc`` per message, a pydantic wrapper; a pass-through): the hop costs more than the
work. Those run inline, in the reply steps only; a Chatbot value with anything else (a file, an image, a component:
its ``postprocess`` may copy files into Gradio's cache) and every other output keep Gradio's thread.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used, as in compat.py
    import gradio as gr

#: The reply step whose outputs ``postprocess_data`` is working on now (this task only), else None.
_STEP: contextvars.ContextVar[Any] = contextvars.ContextVar("switchboard_inline_postprocess", default=None)


def _text_only(history: Any) -> bool:
    """``history`` (a Chatbot's value) holds only messages whose content is text: its postprocess does no I/O."""
    if history is None:
        return True
    if not isinstance(history, list):
        return False
    for message in history:
        content = message.get("content") if isinstance(message, dict) else None
        parts = content if isinstance(content, list) else [content]
        if not all(isinstance(p, str) or (isinstance(p, dict) and p.get("type") == "text") for p in parts):
            return False
    return True


def _runs_inline(func: Callable[..., Any], args: tuple) -> bool:
    from gradio.components import BrowserState, Chatbot

    owner = getattr(func, "__self__", None)
    if _STEP.get() is None or getattr(func, "__name__", None) != "postprocess" or len(args) != 1:
        return False
    return isinstance(owner, BrowserState) or (isinstance(owner, Chatbot) and _text_only(args[0]))


class _ToThread:
    """``anyio.to_thread`` as ``gradio.blocks`` sees it: ``run_sync`` runs an inline-safe postprocess at once."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    async def run_sync(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if _runs_inline(func, args):
            return func(*args)  # an exception is Gradio's to wrap, as when it comes from the thread
        return await self._real.run_sync(func, *args, **kwargs)


class _Anyio:
    """The ``anyio`` module as ``gradio.blocks`` sees it: all of it, but ``to_thread`` (:class:`_ToThread`)."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self.to_thread = _ToThread(real.to_thread)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def inline_postprocess(demo: gr.Blocks, steps: list[Any]) -> int:
    """The outputs of ``steps`` (``BlockFunction``s of ``demo``: the reply steps) are postprocessed on the event
    loop where that is pure CPU (see the module's doc); nothing changes for other steps or other Blocks. How
    many steps it covers.

    Relies on ``Blocks.postprocess_data(block_fn, predictions, state)`` being looked up on the instance, being
    the one place an output's ``postprocess`` runs, and calling it as ``anyio.to_thread.run_sync(block.postprocess,
    value, limiter=...)`` through ``gradio.blocks``' module global ``anyio`` (an exception there becomes its
    ``ComponentProcessingError``); ``gradio.blocks`` uses ``anyio`` for nothing but ``to_thread.run_sync``."""
    import gradio.blocks

    if not isinstance(gradio.blocks.anyio, _Anyio):  # once per process; inert outside a covered step
        gradio.blocks.anyio = _Anyio(gradio.blocks.anyio)  # type: ignore[assignment]
    covered = {step._id for step in steps}  # a session's copy of a step keeps its id
    original = demo.postprocess_data

    @functools.wraps(original)
    async def postprocess_data(block_fn: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if getattr(block_fn, "_id", None) not in covered:
            return await original(block_fn, *args, **kwargs)
        token = _STEP.set(block_fn)
        try:
            return await original(block_fn, *args, **kwargs)
        finally:
            _STEP.reset(token)

    demo.postprocess_data = postprocess_data  # type: ignore[method-assign]
    return len(steps)
