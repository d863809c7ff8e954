"""Every use of Gradio's private internals, one function per touch, each tested in tests/test_compat.py.

Each function says which internal it relies on (checked against Gradio 6.31), so an upgrade that moves
it fails that function's test rather than silently reopening what the function closes.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any

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


def uploaded_by_gradio(demo: gr.Blocks) -> Callable[[str], bool]:
    """Whether Gradio's upload route (``POST /gradio_api/upload``) wrote ``path`` for ``demo``.

    Relies on ``Blocks.upload_file_set``: the route adds the path of every file it writes (and nothing
    else does). It is Gradio's only record of which files in its upload folder visitors uploaded, as
    opposed to copies Gradio made of files an event named."""

    def uploaded(path: str) -> bool:
        record = getattr(demo, "upload_file_set", None)
        return isinstance(record, set) and (path in record or os.path.abspath(path) in record)

    return uploaded
