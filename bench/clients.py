"""Clients that play visitors. This module: a visitor of a chat page (:class:`BrowserChatTarget`, the
textbox's submit chain of any ChatInterface run as Gradio's front end runs it). The others: bench/visit.py (a
visit, the target protocol, many visitors at once), bench/targets.py (the upstream floor, a Gradio API
endpoint, Switchboard's HTTP API ``POST /chat/stream``), bench/gradio_queue.py (Gradio's queue over raw HTTP),
bench/raw_stream.py (a streamed response read with bare asyncio streams).

All are asyncio + httpx, so hundreds of simultaneous visitors cost the benchmark little CPU (gradio_client
runs a thread per job and polls its message queue every 50 ms, which would distort the timings).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import uuid
from typing import Any

import httpx

from bench.gradio_queue import SessionStream, fetch_config, fetch_info, run_direct, run_queued
from bench.raw_stream import RawStream, sse_data
from bench.targets import GradioAPITarget, HTTPStreamTarget, SDKTarget, probe_http_api
from bench.visit import Target, Visit, gather_visits, make_http_client, perf

__all__ = [  # the clients moved out of this module stay importable from it
    "BrowserChatTarget", "GradioAPITarget", "HTTPStreamTarget", "PageClients", "RawStream", "SDKTarget",
    "SessionStream", "Target", "Visit", "fetch_config", "fetch_info", "gather_visits", "make_http_client",
    "probe_http_api", "reply_text_of", "sse_data",
]


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
