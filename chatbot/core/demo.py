"""Demo mode: an offline simulator that speaks the OpenAI streaming protocol.

With no key configured, the app still works: the SDK client is given an in-process transport that answers
``/chat/completions`` with real server-sent events, so the whole path (SDK, parsing, coalescing, UI) is the
one a real provider uses. Nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import AsyncIterator

import httpx2

from chatbot.core.catalogue import KNOWN_MODELS
from chatbot.core.settings import Settings

WORD_DELAY = 0.02

HOW_TO_CONNECT = (
    "**Demo mode**: no API key is configured, so replies come from a built-in offline simulator. "
    "To talk to real models, set `OPENAI_API_KEY` (or `LEMONDATA_API_KEY`, `OPENROUTER_API_KEY`, …) "
    "in the environment or in a `.env` file and restart; see README.md."
)


def demo_reply(message: str, model: str, public: bool = False) -> str:
    """The simulator's answer; on a ``public`` instance it does not tell the visitor (who can set no variable)
    how to connect a provider."""
    said = " ".join(message.split())
    if len(said) > 200:
        said = said[:199] + "…"
    return (
        f"This is the **demo simulator** answering as `{model}`: no API key is configured, so nothing was "
        f"sent to a real model.\n\nYou said: “{said}”\n\n"
        "Replies stream in word by word, exactly as a real provider's would. Code keeps its indentation:\n\n"
        "```python\ndef greet(name):\n    if name:\n        return f\"Hello, {name}!\"\n    return \"Hello!\"\n```"
        + ("" if public else
           "\n\nTo connect a real provider, set `OPENAI_API_KEY` (or your provider's own key variable) and restart.")
    )


def demo_thought(message: str) -> str:
    """What the simulator's reasoning models "think" before they answer."""
    words = len(message.split())
    return (f"The visitor wrote {words} word(s). This is the demo simulator, so no model is thinking here: "
            "a real reasoning model would work through the question step by step in this block, then answer.")


def _reasons(model: str) -> bool:
    """Whether ``model`` is one of the catalogue's reasoning models (o3, deepseek-reasoner, …)."""
    return any(known.id == model and known.reasoning for known in KNOWN_MODELS)


def _sse(payload: dict) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


async def _events(body: dict, public: bool = False) -> AsyncIterator[bytes]:
    model = str(body.get("model", "demo"))
    messages = body.get("messages") or [{}]
    last = messages[-1].get("content") if isinstance(messages[-1], dict) else ""
    if isinstance(last, list):  # content parts: text, and images (attachments)
        texts = [p.get("text", "") for p in last if isinstance(p, dict) and p.get("type") == "text"]
        images = sum(1 for p in last if isinstance(p, dict) and p.get("type") == "image_url")
        last = " ".join(t for t in texts if isinstance(t, str)) + (f" [+ {images} image(s)]" if images else "")
    text = demo_reply(last if isinstance(last, str) else "", model, public)
    base = {"id": "demo", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
    yield _sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})
    if _reasons(model):  # a reasoning model thinks first, as the real one's stream does
        for i, word in enumerate(demo_thought(last if isinstance(last, str) else "").split(" ")):
            piece = word if i == 0 else " " + word
            yield _sse({**base, "choices": [{"index": 0, "delta": {"reasoning_content": piece},
                                             "finish_reason": None}]})
            await asyncio.sleep(WORD_DELAY)
    words = text.split(" ")
    for i, word in enumerate(words):
        piece = word if i == 0 else " " + word
        yield _sse({**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
        await asyncio.sleep(WORD_DELAY)
    yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    prompt = sum(len(str(m.get("content", ""))) for m in messages if isinstance(m, dict)) // 4
    usage = {"prompt_tokens": prompt, "completion_tokens": len(words), "total_tokens": prompt + len(words)}
    yield _sse({**base, "choices": [], "usage": usage})
    yield b"data: [DONE]\n\n"


async def _handle(request: httpx2.Request, public: bool = False) -> httpx2.Response:
    if request.url.path.endswith("/chat/completions"):
        body = json.loads(await request.aread() or b"{}")
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=_events(body, public))
    if request.url.path.endswith("/models"):
        return httpx2.Response(200, json={"object": "list", "data": []})
    return httpx2.Response(404, json={"error": {"message": "not found", "code": 404}})


def demo_http_client(settings: Settings) -> httpx2.AsyncClient:
    """An httpx2 client whose transport is the simulator (for ``AsyncOpenAI(http_client=...)``)."""
    handle = functools.partial(_handle, public=settings.public)
    return httpx2.AsyncClient(transport=httpx2.MockTransport(handle), base_url=settings.base_url)
