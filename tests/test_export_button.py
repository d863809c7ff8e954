"""chatbot/web/export_button.py: the panel's download buttons build their API schema once for the class, and
the page still gets Gradio's own download button."""

from __future__ import annotations

import gradio as gr
import pytest

from chatbot.web.export_button import ExportButton


def test_an_export_button_builds_its_schema_once_and_is_a_download_button(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    original = gr.DownloadButton.api_info
    monkeypatch.setattr(gr.DownloadButton, "api_info", lambda self: built.append("x") or original(self))
    monkeypatch.setattr(ExportButton, "_class_schema", None)
    with gr.Blocks() as demo:
        first = ExportButton("Export", value=None)
    again = ExportButton(value=None, render=False)  # what Gradio builds for every update of the button
    assert first.api_info() == again.api_info() == original(gr.DownloadButton(render=False))
    assert len(built) == 1  # gr.DownloadButton builds it at every call
    config = next(c for c in demo.get_config_file()["components"] if c["id"] == first._id)
    assert config["type"] == "downloadbutton" and config["props"]["label"] == "Export"
