"""The targets that are not a chat page: the upstream floor (:class:`SDKTarget`), a queued Gradio API
endpoint (:class:`GradioAPITarget`) and Switchboard's HTTP API (:class:`HTTPStreamTarget`, ``POST
/chat/stream``). The chat page's target (the browser submit chain) is bench/clients.py's."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import orjson

from bench.gradio_queue import run_queued
from bench.procs import MODEL_ALIAS, MODEL_ID
from bench.raw_stream import RawStream, sse_data
from bench.visit import Target, Visit, perf


class SDKTarget(Target):
    """Baseline (a), the floor: the fake upstream's chat completion stream read straight, with no front end.

    It is read the way every other path is (:class:`RawStream`, one connection per stream, each ``data:``
    line parsed with orjson), not with the openai SDK: the SDK builds a pydantic model per chunk, which
    made the "floor" slower than Switchboard's HTTP API read raw on top of it. The request is the one the
    SDK sends (``POST {base_url}/chat/completions``, bearer key, ``stream: true``)."""

    def __init__(self, base_url: str, name: str = "Upstream floor") -> None:
        self.name = name
        self.url = base_url.rstrip("/") + "/chat/completions"

    async def visit(self, message, history=None, expected=None, v=None) -> Visit:
        messages = [*(history or []), {"role": "user", "content": message}]
        v = v if v is not None else Visit(perf())
        parts: list[str] = []
        try:
            body = orjson.dumps({"model": MODEL_ID, "messages": messages, "stream": True})
            async with RawStream(self.url, "POST", body, {"Authorization": "Bearer sk-bench"}) as resp:
                if resp.status != 200:
                    v.error = f"upstream answered {resp.status}"
                    return v.finish(None)
                async for data in sse_data(resp):
                    if data == b"[DONE]":
                        v.text = "".join(parts)
                        return v.finish(expected)
                    choices = orjson.loads(data).get("choices")
                    content = choices[0].get("delta", {}).get("content") if choices else None
                    if content:
                        now = perf()
                        parts.append(content)
                        if v.ttft is None:
                            v.ttft = now - v.t0
                        v.updates.append(now)
            v.text = "".join(parts)
            v.error = "stream ended without [DONE]"
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:  # orjson's error is a ValueError
            v.error = f"{type(exc).__name__}: {exc}"[:200]
        return v.finish(expected)



class GradioAPITarget(Target):
    """A queued Gradio endpoint called as an API client does (one new session per visit).

    Switchboard: ``gr.api`` ``chat(message, model, history)`` yielding the reply text.
    gr.load_chat: its ChatInterface API function (``open_api_stream``) taking ``{"text", "files"}``."""

    def __init__(self, name: str, app, client: httpx.AsyncClient, config: dict, kind: str,
                 info: dict | None = None) -> None:
        self.name, self.app, self.client, self.kind = name, app, client, kind
        self.url = app.url
        deps = config["dependencies"]
        if kind == "switchboard":
            matches = [d for d in deps if d.get("api_name") == "chat"]
        else:
            matches = [d for d in deps if d.get("api_visibility") == "public" and d.get("queue")]
        if not matches:
            raise LookupError(f"{name}: no queued API endpoint found in /config")
        self.fn_index = matches[0]["id"]
        # Parameters by name from /gradio_api/info, so added optional parameters get their defaults.
        endpoint = (info or {}).get("named_endpoints", {}).get("/" + str(matches[0].get("api_name")), {})
        self.params = [(p.get("parameter_name"), p.get("parameter_default")) for p in endpoint.get("parameters", [])]

    def payload(self, message: str, history: list[dict] | None) -> list:
        if self.kind != "switchboard":
            return [{"text": message, "files": []}, None]  # load_chat's history is a session State
        if not self.params:
            return [message, MODEL_ALIAS, history]
        given = {"message": message, "model": MODEL_ALIAS, "history": history}
        return [given.get(name, default) if name in given else default for name, default in self.params]

    async def visit(self, message, history=None, expected=None, v=None, session_hash: str | None = None) -> Visit:
        """One call; ``session_hash`` reuses an API client's session (gradio_client keeps one per Client),
        else each call is a new client."""
        v = v if v is not None else Visit(perf())

        def seen(outputs: list, now: float) -> None:
            value = outputs[0] if outputs else None
            v.saw(value if isinstance(value, str) else "", now)

        try:
            _, v.error = await run_queued(self.client, self.url, self.fn_index, self.payload(message, history),
                                          session_hash or uuid.uuid4().hex[:12], seen)
        except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            v.error = f"{type(exc).__name__}: {exc}"[:200]
        return v.finish(expected)



class HTTPStreamTarget(Target):
    """Switchboard's HTTP API: ``POST /chat/stream`` (SSE, ``data: [DONE]`` last)."""

    def __init__(self, name: str, app, client: httpx.AsyncClient) -> None:
        self.name, self.app, self.client, self.url = name, app, client, app.url

    async def visit(self, message, history=None, expected=None, v=None, conversation_id: str | None = None) -> Visit:
        """One message; with ``conversation_id``, a turn of that stored conversation (the server holds the
        history, the request carries only the message)."""
        v = v if v is not None else Visit(perf())
        parts: list[str] = []
        try:
            fields = {"message": message, "model": MODEL_ALIAS}
            if conversation_id is not None:
                fields["conversation_id"] = conversation_id
            body = orjson.dumps(fields)
            async with RawStream(f"{self.url}/chat/stream", "POST", body) as resp:
                if resp.status != 200:
                    v.error = f"/chat/stream answered {resp.status}"
                    return v.finish(None)
                buf = ""
                async for chunk in resp.aiter_text():
                    buf += chunk
                    while "\n\n" in buf:
                        block, buf = buf.split("\n\n", 1)
                        lines = [ln[5:].removeprefix(" ") for ln in block.split("\n") if ln.startswith("data:")]
                        if not lines:
                            continue
                        data = "\n".join(lines)
                        if data == "[DONE]":
                            v.text = "".join(parts)
                            return v.finish(expected)
                        if data.startswith("[ERROR]"):
                            v.error = data[:200]
                            continue
                        parts.append(data)
                        now = perf()
                        if v.ttft is None:
                            v.ttft = now - v.t0
                        v.updates.append(now)
            v.text = "".join(parts)
            v.error = v.error or "stream ended without [DONE]"
        except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            v.error = f"{type(exc).__name__}: {exc}"[:200]
        return v.finish(expected)


async def probe_http_api(client: httpx.AsyncClient, url: str) -> str | None:
    """None when ``POST /chat/stream`` answers a stream; otherwise why the scenario is skipped."""
    try:
        async with client.stream("POST", f"{url}/chat/stream", json={"message": "ping", "model": MODEL_ALIAS},
                                 timeout=15) as resp:
            if resp.status_code != 200:
                return f"POST /chat/stream answered {resp.status_code} (the HTTP API is not there yet)"
            if "text/event-stream" not in resp.headers.get("content-type", ""):
                return f"POST /chat/stream answered {resp.headers.get('content-type')!r}, not an event stream"
            async for _ in resp.aiter_bytes():
                pass
    except (httpx.HTTPError, OSError) as exc:
        return f"POST /chat/stream failed: {type(exc).__name__}"
    return None

