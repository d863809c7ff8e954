"""What the chat reads from Gradio's request: every header line, the signed-in user; nothing raises."""

from __future__ import annotations

import gradio as gr
from starlette.requests import Request

from chatbot.web.gradio_request import headers, username


def _starlette(raw_headers: list[tuple[bytes, bytes]], session: dict | None = None) -> Request:
    scope: dict = {"type": "http", "method": "POST", "path": "/", "headers": raw_headers, "query_string": b""}
    if session is not None:
        scope["session"] = session
    return Request(scope)


def test_every_line_of_a_repeated_header_is_kept() -> None:
    """A proxy appends its own X-Forwarded-For line: both lines reach the visitor's identity."""
    raw = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"203.0.113.7"), (b"host", b"app")]
    found = headers(gr.Request(_starlette(raw)))
    assert found.getlist("x-forwarded-for") == ["6.6.6.6", "203.0.113.7"]


def test_headers_of_a_request_gradio_kept_as_a_dict_and_of_none() -> None:
    kept = gr.Request(headers={"X-Forwarded-For": "203.0.113.7", "Host": "app"})
    assert headers(kept) == {"x-forwarded-for": "203.0.113.7", "host": "app"}
    assert headers(gr.Request()) == {}


def test_username_from_the_login_or_the_spaces_oauth_session() -> None:
    assert username(gr.Request(_starlette([]), username="ana")) == "ana"
    oauth = {"oauth_info": {"userinfo": {"preferred_username": "hf-user"}}}
    assert username(gr.Request(_starlette([], session=oauth))) == "hf-user"
    assert username(gr.Request(_starlette([], session={}))) is None
    assert username(gr.Request(_starlette([]))) is None  # no session middleware
    assert username(gr.Request(_starlette([], session={"oauth_info": {"userinfo": "garbled"}}))) is None
    assert username(gr.Request()) is None
