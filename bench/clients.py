"""Clients that play visitors: the upstream floor, Gradio's queue over raw HTTP (API endpoint or the full
browser submit chain of a ChatInterface), and Switchboard's HTTP API (``POST /chat/stream``).

All are asyncio + httpx, so hundreds of simultaneous visitors cost the benchmark little CPU (gradio_client
runs a thread per job and polls its message queue every 50 ms, which would distort the timings).

Gradio's queue protocol (sse_v3, Gradio 6.31, see gradio/routes.py and gradio_client/utils.py):
``POST /gradio_api/queue/join`` ``{"data", "fn_index", "session_hash", ...}`` answers ``{"event_id"}``;
``GET /gradio_api/queue/data?session_hash=...`` is one SSE stream per session carrying ``estimation``,
``process_starts``, ``process_generating`` (the first carries full output values, later ones carry
diffs: lists of ``[action, path, value]``), ``process_completed`` (full values) and ``close_stream``.
Functions with ``queue: false`` are called with ``POST /gradio_api/run/predict`` and the same body.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from .procs import MODEL_ALIAS, MODEL_ID

perf = time.perf_counter


@dataclass
class Visit:
    """What one visitor saw for one message."""

    t0: float
    ttft: float | None = None  # seconds from sending to the first visible reply text
    end: float | None = None  # absolute perf_counter time the reply was complete
    reply_step: float | None = None  # seconds from sending to the reply step's request (chat UI chain only)
    updates: list[float] = field(default_factory=list)  # times the visible text changed
    text: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.end is not None

    @property
    def total(self) -> float | None:
        return None if self.end is None else self.end - self.t0

    @property
    def max_gap(self) -> float | None:
        """Longest wait between two consecutive updates after the first text (None if fewer than 2)."""
        if len(self.updates) < 2:
            return None
        return max(b - a for a, b in zip(self.updates, self.updates[1:], strict=False))

    def saw(self, text: str, now: float) -> None:
        if text != self.text:
            if text and self.ttft is None:
                self.ttft = now - self.t0
            if text:
                self.updates.append(now)
            self.text = text

    def finish(self, expected: str | None) -> Visit:
        self.end = self.end or perf()
        if self.error is None and expected is not None and self.text != expected:
            got = self.text if len(self.text) < 120 else self.text[:60] + "…" + self.text[-40:]
            self.error = f"wrong reply ({len(self.text)} chars, expected {len(expected)}): {got!r}"
        return self


def make_http_client(limit: int = 2000) -> httpx.AsyncClient:
    # keep-alive expiry below uvicorn's 5 s, so a pooled connection is never reused as the server closes it
    return httpx.AsyncClient(
        timeout=httpx.Timeout(120.0, connect=30.0, read=None, pool=None),
        limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit, keepalive_expiry=2.0),
    )


class PageClients:
    """httpx clients of a few connections each, one per page in flight, as each browser tab keeps its own.

    One shared pool of hundreds of connections costs this process more than the app it measures: before
    every request httpcore asks each pooled connection whether it has expired (a ``getpeername`` and a
    poll each), which py-spy put at a fifth of the benchmark's CPU with 200 chat-UI visitors."""

    def __init__(self, connections: int = 6) -> None:
        self.connections = connections
        self.free: list[httpx.AsyncClient] = []
        self.made: list[httpx.AsyncClient] = []
        self._ssl = httpx.create_ssl_context()  # built once: loading the CA bundle per client costs ms

    @contextlib.asynccontextmanager
    async def page(self):
        client = self.free.pop() if self.free else self._new()
        try:
            yield client
        finally:
            self.free.append(client)

    def _new(self) -> httpx.AsyncClient:
        n = self.connections
        client = httpx.AsyncClient(
            timeout=httpx.Timeout(120.0, connect=30.0, read=None, pool=None), verify=self._ssl,
            limits=httpx.Limits(max_connections=n, max_keepalive_connections=n, keepalive_expiry=2.0),
        )
        self.made.append(client)
        return client

    async def aclose(self) -> None:
        for client in self.made:
            await client.aclose()
        self.made.clear()
        self.free.clear()


# --------------------------------------------------------------------------- Gradio diffs


def apply_diff(value: Any, diff: Any) -> Any:
    """Apply one Gradio output diff (a list of ``[action, path, value]``) to ``value``."""
    for edit in diff:
        action, path = edit[0], edit[1]
        new = edit[2] if len(edit) > 2 else None
        if not path:
            if action == "replace":
                value = new
            elif action == "append":
                value = value + new
            continue
        target = value
        for key in path[:-1]:
            target = target[key]
        last = path[-1]
        if action == "replace":
            target[last] = new
        elif action == "append":
            target[last] += new
        elif action == "add":
            if isinstance(target, list):
                target.insert(int(last), new)
            else:
                target[last] = new
        elif action == "delete":
            del target[int(last) if isinstance(target, list) else last]
    return value


def _is_diff(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(e, list) and len(e) >= 2 and e[0] in ("replace", "append", "add", "delete") for e in value
    )


class RawStream:
    """One HTTP/1.1 request whose streamed response body is read with bare asyncio streams.

    Hundreds of simultaneous SSE streams through httpx cost the benchmark process about as much CPU as
    the app under test spends (measured: 20 CPU-s for 200 chat-UI visitors), and on a 2-core machine that
    CPU is taken from the app. This reader does the minimum: status line, headers, chunked or
    length-delimited or read-to-close body. ``Connection: close``, so every stream is its own TCP
    connection (no keep-alive races) and closing it is what the server sees as the visitor leaving."""

    def __init__(self, url: str, method: str = "GET", body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.target = parts.path + (f"?{parts.query}" if parts.query else "")
        self.method, self.body, self.headers = method, body, headers or {}
        self.status = 0
        self.response_headers: dict[str, str] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawStream:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=2**22)
        lines = [f"{self.method} {self.target} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 "Accept: text/event-stream", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        if self.body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(self.body)}"]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (self.body or b""))
        status = await self._reader.readline()
        self.status = int(status.split()[1]) if len(status.split()) > 1 else 0
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            self.response_headers[name.strip().lower()] = value.strip()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()

    async def aiter_bytes(self):
        reader = self._reader
        assert reader is not None
        if self.response_headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = await reader.readline()
                if not size_line:
                    return
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    return
                data = await reader.readexactly(size + 2)
                yield data[:-2]
        elif "content-length" in self.response_headers:
            left = int(self.response_headers["content-length"])
            while left > 0:
                data = await reader.read(min(left, 65536))
                if not data:
                    return
                left -= len(data)
                yield data
        else:
            while data := await reader.read(65536):
                yield data

    async def aiter_text(self):
        async for chunk in self.aiter_bytes():
            yield chunk.decode()


async def sse_data(response):
    """The raw ``data:`` payloads (bytes, one per line) of an SSE stream, as they arrive."""
    buf = b""
    async for chunk in response.aiter_bytes():
        buf += chunk
        while True:
            i = buf.find(b"\n\n")
            if i < 0:
                break
            block, buf = buf[:i], buf[i + 2:]
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    yield line[5:].strip()


async def _sse_events(response):
    """Parsed ``data:`` payloads of a Gradio SSE stream, as they arrive."""
    async for data in sse_data(response):
        try:
            yield orjson.loads(data)
        except orjson.JSONDecodeError:
            continue


class SessionStream:
    """A page's one ``queue/data`` stream, as Gradio's front end keeps it: opened after a ``queue/join``
    when none is open, shared by every event of the session (messages are routed by ``event_id``), read
    until the server's ``close_stream`` (sent once the session has no event pending), and reopened if an
    event is still waiting then. Two streams of one session would take each other's messages from the
    server's per-session queue, and hanging up before ``close_stream`` makes the server drop that queue."""

    _open: dict[tuple[str, str], SessionStream] = {}
    #: Streams that ended before ``close_stream`` with events still waiting (the server hung up, e.g. a
    #: replica that does not hold the session answers 404 inside the stream); they are reopened, which
    #: Gradio's own front end does not do, so a balancer's misrouting shows here, not as an error.
    cut = 0

    def __init__(self, url: str, session_hash: str, headers: dict[str, str] | None = None) -> None:
        self.url, self.session_hash, self.headers = url, session_hash, headers
        self.waiting: dict[str, asyncio.Queue] = {}
        self.early: dict[str, list[dict]] = {}  # messages that came before their join's answer
        self.reader: asyncio.Task | None = None

    @classmethod
    def of(cls, url: str, session_hash: str, headers: dict[str, str] | None = None) -> SessionStream:
        """The page's stream; ``headers`` (e.g. the page's cookie) go with each of its requests."""
        key = (url, session_hash)
        if key not in cls._open:
            cls._open[key] = cls(url, session_hash, headers)
        return cls._open[key]

    def listen(self, event_id: str) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue()
        for msg in self.early.pop(event_id, []):
            q.put_nowait(msg)
        self.waiting[event_id] = q
        if self.reader is None:
            self.reader = asyncio.create_task(self._read())
        return q

    def done(self, event_id: str) -> None:
        self.waiting.pop(event_id, None)

    async def _read(self) -> None:
        try:
            while self.waiting:
                async with RawStream(f"{self.url}/gradio_api/queue/data?session_hash={self.session_hash}",
                                     headers=self.headers) as resp:
                    if resp.status != 200:
                        self._fail(f"queue/data answered {resp.status}")
                        return
                    closed = False
                    async for msg in _sse_events(resp):
                        if msg.get("msg") == "close_stream":
                            closed = True
                            break
                        eid = msg.get("event_id")
                        if eid is None:
                            continue
                        if eid in self.waiting:
                            self.waiting[eid].put_nowait(msg)
                        else:
                            self.early.setdefault(eid, []).append(msg)
                if not closed and self.waiting:
                    SessionStream.cut += 1
                for q in self.waiting.values():  # closed with events still waiting: reopen if none ends
                    q.put_nowait({"msg": "_stream_ended"})
                await asyncio.sleep(0)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self._fail(f"{type(exc).__name__}: {exc}"[:200])
        finally:
            self.reader = None
            if not self.waiting:
                SessionStream._open.pop((self.url, self.session_hash), None)
                self.early.clear()

    def _fail(self, error: str) -> None:
        for q in self.waiting.values():
            q.put_nowait({"msg": "_failed", "error": error})


async def run_queued(
    client: httpx.AsyncClient, url: str, fn_index: int, data: list, session_hash: str,
    on_outputs: Callable[[list, float], None], headers: dict[str, str] | None = None,
) -> tuple[list | None, str | None]:
    """Join the queue and follow this event on the session's stream (:class:`SessionStream`) to its end.

    ``on_outputs(values, now)`` is called with the full output values after every update; ``headers`` go
    with every request (a page's cookie). Returns (final outputs, error)."""
    body = {"data": data, "fn_index": fn_index, "session_hash": session_hash, "event_data": None,
            "trigger_id": None}
    r = await client.post(f"{url}/gradio_api/queue/join", json=body, headers=headers)
    if r.status_code != 200:
        return None, f"queue/join answered {r.status_code}: {r.text[:200]}"
    event_id = r.json().get("event_id")
    stream = SessionStream.of(url, session_hash, headers)
    messages = stream.listen(event_id)
    outputs: list | None = None
    stalls = 0
    try:
        while True:
            msg = await messages.get()
            kind = msg.get("msg")
            if kind == "process_generating":
                now = perf()
                data_out = (msg.get("output") or {}).get("data") or []
                if outputs is None:
                    outputs = list(data_out)
                else:
                    for i, value in enumerate(data_out):
                        while i >= len(outputs):
                            outputs.append(None)
                        outputs[i] = apply_diff(outputs[i], value) if _is_diff(value) else value
                on_outputs(outputs, now)
            elif kind == "process_completed":
                now = perf()
                output = msg.get("output") or {}
                if not msg.get("success", True):
                    return outputs, f"process_completed with an error: {str(output.get('error'))[:200]}"
                outputs = list(output.get("data") or [])
                on_outputs(outputs, now)
                return outputs, None
            elif kind == "unexpected_error":
                return outputs, f"unexpected_error: {msg.get('message')}"
            elif kind == "_failed":
                return outputs, msg["error"]
            elif kind == "_stream_ended":
                stalls += 1
                if stalls > 3:
                    return outputs, "stream closed before process_completed"
    finally:
        stream.done(event_id)


async def run_direct(client: httpx.AsyncClient, url: str, fn_index: int, data: list,
                     session_hash: str, headers: dict[str, str] | None = None) -> tuple[list | None, str | None]:
    body = {"data": data, "fn_index": fn_index, "session_hash": session_hash, "event_data": None,
            "trigger_id": None}
    r = await client.post(f"{url}/gradio_api/run/predict", json=body, headers=headers)
    if r.status_code != 200:
        return None, f"run/predict answered {r.status_code}: {r.text[:200]}"
    return list(r.json().get("data") or []), None


# --------------------------------------------------------------------------- targets


class Target:
    """Something a visitor sends a message to and watches the reply of."""

    name: str = "target"
    app: Any = None  # the AppProcess serving it, if any

    async def visit(self, message: str, history: list[dict] | None = None,
                    expected: str | None = None, v: Visit | None = None) -> Visit:
        """Send ``message`` (after ``history``) and follow the reply; ``v`` collects what was seen (pass
        one in to keep partial observations of a visit that gets cancelled)."""
        raise NotImplementedError

    async def close(self) -> None:
        pass


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


async def fetch_config(client: httpx.AsyncClient, url: str) -> dict:
    r = await client.get(f"{url}/config")
    r.raise_for_status()
    return r.json()


async def fetch_info(client: httpx.AsyncClient, url: str) -> dict:
    r = await client.get(f"{url}/gradio_api/info")
    return r.json() if r.status_code == 200 else {}


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


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text") or "" if content.get("type", "text") == "text" else ""
    if isinstance(content, list):
        return "".join(_message_text(c) for c in content)
    return ""


def reply_text_of(chat: Any) -> str:
    """The visible reply in a Chatbot value: assistant text after the last user message, app notes
    (messages with a metadata title) excluded."""
    if not isinstance(chat, list):
        return ""
    out: list[str] = []
    for message in chat:
        if not isinstance(message, dict):
            continue
        if message.get("role") == "user":
            out = []
        elif not (message.get("metadata") or {}).get("title"):
            out.append(_message_text(message.get("content")))
    return "".join(out)


class BrowserChatTarget(Target):
    """A visitor typing into a ChatInterface: the textbox's submit chain run as Gradio's front end runs
    it (``queue: false`` steps through ``run/predict``, queued ones through the queue, State inputs sent
    as null, other inputs from the values the page holds). Works for any ChatInterface from /config."""

    def __init__(self, name: str, app, client: httpx.AsyncClient, config: dict, whole_page: bool = True) -> None:
        from .page_steps import PageSteps  # every step the page sends for a message, not only the box's chain

        self.page_steps = PageSteps(self, config) if whole_page else None
        self.name, self.app, self.client, self.url = name, app, client, app.url
        self.pages = PageClients()
        comps = {c["id"]: c for c in config["components"]}
        self.initial = {cid: c.get("props", {}).get("value") for cid, c in comps.items()}
        self.types = {cid: c["type"] for cid, c in comps.items()}
        deps = {d["id"]: d for d in config["dependencies"]}
        start = [d for d in deps.values() if any(
            t[0] is not None and t[1] == "submit" and self.types.get(t[0]) in ("textbox", "multimodaltextbox")
            for t in d.get("targets", []))]
        if not start:
            raise LookupError(f"{name}: no textbox submit chain in /config")
        first = min(start, key=lambda d: d["id"])
        self.textbox = next(t[0] for t in first["targets"] if t[1] == "submit")
        chain, frontier = [first], [first["id"]]
        while frontier:  # breadth-first over .then()/.success() followers
            nxt = sorted((d for d in deps.values() if d.get("trigger_after") in frontier
                          and any(t[0] is None for t in d.get("targets", []))), key=lambda d: d["id"])
            chain.extend(nxt)
            frontier = [d["id"] for d in nxt]
        self.chain = chain
        self.chatbot = next(cid for cid, t in self.types.items() if t == "chatbot")

    def new_page(self) -> dict[int, Any]:
        return copy.deepcopy(self.initial)

    async def visit(self, message, history=None, expected=None, v=None, page: dict | None = None,
                    session_hash: str | None = None, headers: dict[str, str] | None = None) -> Visit:
        """``headers``: sent with every request of the page (its cookie, which a balancer routes by)."""
        values = page if page is not None else self.new_page()
        session_hash = session_hash or uuid.uuid4().hex[:12]
        if history is not None:
            values[self.chatbot] = history
        multimodal = self.types[self.textbox] == "multimodaltextbox"
        values[self.textbox] = {"text": message, "files": []} if multimodal else message
        v = v if v is not None else Visit(perf())
        try:
            async with self.pages.page() as client:
                if self.page_steps is not None:
                    await self.page_steps.message(values, session_hash, v, client, headers)
                else:
                    await self._run_step(self.chain[0], values, session_hash, v, client, headers)
        except (httpx.HTTPError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            v.error = f"{type(exc).__name__}: {exc}"[:200]
        v.text = reply_text_of(values.get(self.chatbot))
        return v.finish(expected)

    async def close(self) -> None:
        await self.pages.aclose()

    async def _run_step(self, dep: dict, values: dict[int, Any], session_hash: str, v: Visit,
                        client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> None:
        """One step, then its followers all at once, as Gradio's front end dispatches them: when a step
        ends, every ``.then()`` (and, as it went, ``.success()`` or ``.failure()``) follower is sent
        without waiting for its siblings, each reading the page's values as they are at that moment."""
        failed = False
        # A step Gradio's front end runs itself (its ``js_implementation``) sends no request.
        if dep.get("backend_fn", True) and not dep.get("js_implementation"):
            data = [None if self.types.get(i) == "state" else values.get(i) for i in dep["inputs"]]
            outs_ids = dep["outputs"]

            def seen(outputs: list, now: float) -> None:
                if self.chatbot in outs_ids:
                    idx = outs_ids.index(self.chatbot)
                    if idx < len(outputs):
                        v.saw(reply_text_of(outputs[idx]), now)

            if v.reply_step is None and self.chatbot in outs_ids and dep.get("types", {}).get("generator"):
                v.reply_step = perf() - v.t0  # what the chain spends before the reply is even asked for
            if dep.get("queue", True):
                outputs, error = await run_queued(client, self.url, dep["id"], data, session_hash, seen, headers)
            else:
                outputs, error = await run_direct(client, self.url, dep["id"], data, session_hash, headers)
            if error:
                failed = True
                v.error = v.error or f"step {dep.get('api_name')}: {error}"
            else:
                for cid, value in zip(outs_ids, outputs or [], strict=False):
                    if self.types.get(cid) == "state":
                        continue
                    if isinstance(value, dict) and value.get("__type__") == "update":
                        if "value" in value:
                            values[cid] = value["value"]
                    else:
                        values[cid] = value
                if self.chatbot in outs_ids and v.end is None and dep.get("types", {}).get("generator"):
                    v.end = perf()  # the reply is complete once the streaming step ends
        followers = [d for d in self.chain if d.get("trigger_after") == dep["id"]
                     and not (d.get("trigger_only_on_success") and failed)
                     and not (d.get("trigger_only_on_failure") and not failed)]
        if followers:
            await asyncio.gather(*(self._run_step(d, values, session_hash, v, client, headers) for d in followers))


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


async def gather_visits(target: Target, n: int, message: str, expected: str | None,
                        deadline: float | None = None, history=None) -> tuple[list[Visit], float, float, bool]:
    """n simultaneous visitors; returns (visits, wall start, wall end, censored). Visitors still waiting
    at the deadline are cancelled and reported as not completed in time (censored: the wall time is then
    only a lower bound)."""
    t_start = perf()
    visits = [Visit(t_start) for _ in range(n)]
    tasks = [asyncio.create_task(target.visit(message, history, expected, v)) for v in visits]
    _, pending = await asyncio.wait(tasks, timeout=deadline)
    t_cut = perf()
    for t in pending:  # a chat-UI visitor may have its reply and still be in the chain's last steps
        t.cancel()
    censored = False
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
        for v in visits:
            if v.end is None:
                censored = True
                v.error = f"not complete after the {deadline:.0f} s deadline"
    ends = [v.end for v in visits if v.end is not None]
    t_end = t_cut if censored else max(ends, default=perf())
    return visits, t_start, t_end, censored
