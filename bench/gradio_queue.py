"""Gradio's queue over raw HTTP: a page's one ``queue/data`` stream, an event followed to its end, a
``queue: false`` call, output diffs applied, the app's /config.

Gradio's queue protocol (sse_v3, Gradio 6.31, see gradio/routes.py and gradio_client/utils.py):
``POST /gradio_api/queue/join`` ``{"data", "fn_index", "session_hash", ...}`` answers ``{"event_id"}``;
``GET /gradio_api/queue/data?session_hash=...`` is one SSE stream per session carrying ``estimation``,
``process_starts``, ``process_generating`` (the first carries full output values, later ones carry
diffs: lists of ``[action, path, value]``), ``process_completed`` (full values) and ``close_stream``.
Functions with ``queue: false`` are called with ``POST /gradio_api/run/predict`` and the same body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import orjson

from bench.raw_stream import RawStream, sse_data
from bench.visit import perf


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



async def fetch_config(client: httpx.AsyncClient, url: str) -> dict:
    r = await client.get(f"{url}/config")
    r.raise_for_status()
    return r.json()


async def fetch_info(client: httpx.AsyncClient, url: str) -> dict:
    r = await client.get(f"{url}/gradio_api/info")
    return r.json() if r.status_code == 200 else {}
