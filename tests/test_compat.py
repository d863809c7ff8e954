"""chatbot/compat.py: one test per use of Gradio's internals, so an upgrade that moves one fails here."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import gradio as gr
import httpx
import pytest
from fastapi import FastAPI
from gradio import processing_utils
from gradio.context import LocalContext
from gradio.exceptions import InvalidPathError
from gradio.utils import get_upload_folder

import app as switchboard
from chatbot.compat import enforce_path_checks, quiet_event_failures, uploaded_by_gradio


def _shout(text: str) -> str:
    if text == "raise":
        raise gr.Error(f"Value: {text} is not in the list of choices")  # as gr.Dropdown's preprocess does
    return text.upper()


def _blocks() -> gr.Blocks:
    with gr.Blocks() as demo:
        box = gr.Textbox()
        out = gr.Textbox()
        box.submit(_shout, box, out, api_name="shout")
    return demo


def test_enforce_path_checks_makes_gradio_refuse_paths_outside_its_upload_folder(tmp_path: Path) -> None:
    """Blocks.has_launched gates processing_utils._check_allowed (a mounted app never sets it)."""
    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    demo = _blocks()
    token = LocalContext.blocks.set(demo)
    try:
        processing_utils._check_allowed(str(secret), True)  # unchecked: what the mounted app did
        enforce_path_checks(demo)
        with pytest.raises(InvalidPathError):
            processing_utils._check_allowed(str(secret), True)
        with pytest.raises(InvalidPathError):
            processing_utils._check_allowed("/etc/passwd", True)
        processing_utils._check_allowed(str(Path(get_upload_folder()) / "x" / "upload.txt"), True)
    finally:
        LocalContext.blocks.reset(token)


async def test_quiet_event_failures_turns_any_failure_into_an_error_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Blocks.process_api is what the queue and /run/predict call for every event."""
    demo = quiet_event_failures(_blocks(), lambda request: "Reload the page.")
    block_fn = demo.fns[0]
    caplog.set_level(logging.INFO)
    for inputs in ([], [None], ["raise"]):  # wrong arity; a value the function cannot take; Gradio's own gr.Error
        caplog.clear()
        with pytest.raises(gr.Error) as failed:
            await demo.process_api(block_fn=block_fn, inputs=inputs, state=None, request=None)
        assert failed.value.message == "Reload the page." and failed.value.print_exception is False
        assert len(caplog.records) == 1 and "shout" in caplog.text and not caplog.records[0].exc_info
    result = await demo.process_api(block_fn=block_fn, inputs=["hi"], state=None, request=None)
    assert result["data"] == ["HI"]


def test_uploaded_by_gradio_knows_the_files_its_upload_route_wrote() -> None:
    """Blocks.upload_file_set is Gradio's record of what POST /gradio_api/upload wrote."""
    demo = _blocks()
    demo.queue()
    uploaded = uploaded_by_gradio(demo)
    app = gr.mount_gradio_app(FastAPI(), demo, path="/")
    server = switchboard.serve_in_thread(app)
    try:
        answer = httpx.post(f"{server.url}gradio_api/upload", files=[("files", ("a.txt", secrets.token_bytes(16)))],
                            timeout=30)
        answer.raise_for_status()
        path = answer.json()[0]
    finally:
        server.stop()
    planted = Path(get_upload_folder()) / secrets.token_hex(16) / "a.txt"
    assert uploaded(path) and Path(path).is_file()
    assert not uploaded(str(planted)) and not uploaded("/etc/passwd")
