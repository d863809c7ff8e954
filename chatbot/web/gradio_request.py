"""What the chat reads from Gradio's request about who is asking: every header line, the signed-in user.

A ``gr.Request`` wraps the Starlette request while an event runs, or only the dicts Gradio kept of it
(after queueing or pickling); both are read here, and nothing raises.
"""

from __future__ import annotations

from typing import Any

import gradio as gr


def headers(request: gr.Request) -> Any:
    """The request's headers, every line of a repeated one included (the underlying Starlette request's
    ``Headers``: ``dict(request.headers)`` keeps one ``X-Forwarded-For`` line of several)."""
    found = getattr(getattr(request, "request", None), "headers", None)
    if callable(getattr(found, "getlist", None)):
        return found
    try:
        return {k.lower(): v for k, v in dict(request.headers).items()}
    except Exception:
        return {}


def username(request: gr.Request) -> str | None:
    """The Gradio login's user, or the Hugging Face user signed in with the Spaces login button."""
    if getattr(request, "username", None):
        return str(request.username)
    raw = getattr(request, "request", None)
    try:
        info = raw.session.get("oauth_info") if raw is not None and "session" in raw.scope else None
        return str(info["userinfo"]["preferred_username"]) if info else None
    except Exception:
        return None
