"""Every step a browser's page sends for one chat-tab message, played from the app's /config as Gradio's front end
plays them (``BrowserChatTarget`` hands its visits here).

Not only the message box's submit chain: every event the box's ``submit`` triggers (the saved-chats list's
change, a timer's start), the ``.then()`` followers of each, a ``change`` event of a State the server says
changed (``changed_state_ids``, e.g. the reply's ``finished``) or of a component whose value an output changed,
and a running ``gr.Timer``'s ticks (at its interval, one at a time: ``trigger_mode="once"``; an output's
``active`` starts and stops it). What was recorded from chromium for one message (``python -m
bench.browser_record``) is what this sends: docs/benchmarks/replicas.md, fourth session.

Steps the front end runs itself (``js_implementation``) send nothing; ``queue: false`` ones go through
``run/predict``; queued ones join the queue and follow the page's one stream (``clients.SessionStream``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx

from bench.clients import reply_text_of
from bench.gradio_queue import SessionStream, _is_diff, apply_diff
from bench.visit import Visit, perf

#: Longest a page keeps playing steps after its reply ended (a timer that never stops, a loop of changes).
SETTLE_S = 30.0


def _changed(before: Any, value: Any) -> bool:
    """Whether the front end sees a new value (an empty text box holds "", whether its config said None or "")."""
    return not (before in (None, "") and value in (None, "")) and value != before


class PageSteps:
    """The steps of a page (a ChatInterface's /config) that a message starts, and how many of each were sent."""

    def __init__(self, target: Any, config: dict[str, Any]) -> None:
        self.target = target  # the BrowserChatTarget: url, types, chatbot, textbox
        self.deps = {d["id"]: d for d in config["dependencies"]}
        self.timers = {c["id"]: float(c.get("props", {}).get("value") or 1.0) for c in config["components"]
                       if c["type"] == "timer"}
        self.sent: Counter[str] = Counter()  # "queue/join 57 saved" -> how many

    def triggered(self, cid: int | None, event: str) -> list[dict[str, Any]]:
        return sorted((d for d in self.deps.values() if [cid, event] in [list(t) for t in d.get("targets", [])]),
                      key=lambda d: d["id"])

    async def message(self, values: dict[int, Any], session_hash: str, v: Visit, client: httpx.AsyncClient,
                      headers: dict[str, str] | None = None) -> None:
        """Send what a page sends for a message typed in its box (``values``: what the page holds)."""
        page = _Page(self, values, session_hash, v, client, headers)
        await asyncio.gather(*(page.run(d) for d in self.triggered(self.target.textbox, "submit")))
        await page.settle()

    async def load(self, values: dict[int, Any], session_hash: str, client: httpx.AsyncClient,
                   headers: dict[str, str] | None = None) -> Visit:
        """The page's load events (a browser sends them once the page is shown: they give its session the
        server-side state a message needs, e.g. the id of the chat on screen). What went wrong, in the Visit."""
        page = _Page(self, values, session_hash, Visit(perf()), client, headers)
        loads = [d for d in self.deps.values() if any(t[1] == "load" for t in d.get("targets", []))]
        await asyncio.gather(*(page.run(d) for d in sorted(loads, key=lambda d: d["id"])))
        await page.settle()
        return page.v


class _Page:
    def __init__(self, steps: PageSteps, values: dict[int, Any], session_hash: str, v: Visit,
                 client: httpx.AsyncClient, headers: dict[str, str] | None) -> None:
        self.steps, self.t = steps, steps.target
        self.values, self.session_hash, self.v, self.client, self.headers = values, session_hash, v, client, headers
        self.active: dict[int, bool] = {}
        self.tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def settle(self) -> None:
        deadline = perf() + SETTLE_S
        while self.tasks and perf() < deadline:
            await asyncio.wait(set(self.tasks), timeout=max(0.0, deadline - perf()))
        for timer in self.active:
            self.active[timer] = False
        left = list(self.tasks)
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)  # none goes on once the page's visit has ended

    async def run(self, dep: dict[str, Any]) -> None:
        """One step, then its followers at once (each reading the page's values as they are then)."""
        failed = False
        if dep.get("backend_fn", True) and not dep.get("js_implementation"):
            failed = not await self.call(dep)
        followers = [d for d in self.steps.deps.values() if d.get("trigger_after") == dep["id"]
                     and not (d.get("trigger_only_on_success") and failed)
                     and not (d.get("trigger_only_on_failure") and not failed)]
        await asyncio.gather(*(self.run(d) for d in sorted(followers, key=lambda d: d["id"])))

    async def call(self, dep: dict[str, Any]) -> bool:
        t, v = self.t, self.v
        data = [None if t.types.get(i) == "state" else self.values.get(i) for i in dep["inputs"]]
        body = {"data": data, "fn_index": dep["id"], "session_hash": self.session_hash, "event_data": None,
                "trigger_id": None}
        streams = t.chatbot in dep["outputs"] and dep.get("types", {}).get("generator")
        if streams and v.reply_step is None:
            v.reply_step = perf() - v.t0  # what the page spends before the reply is even asked for
        kind = "queue/join" if dep.get("queue", True) else "run/predict"
        self.steps.sent[f"{kind} {dep['id']} {dep.get('api_name')}"] += 1
        r = await self.client.post(f"{t.url}/gradio_api/{kind}", json=body, headers=self.headers)
        if r.status_code != 200:
            v.error = v.error or f"step {dep.get('api_name')}: {kind} answered {r.status_code}: {r.text[:200]}"
            return False
        if kind == "run/predict":
            self.apply(dep, r.json(), full=True)
            return True
        ok = await self.follow(dep, r.json().get("event_id"))
        if streams and v.end is None:
            v.end = perf()  # the reply is complete once the streaming step ends
        return ok

    async def follow(self, dep: dict[str, Any], event_id: str) -> bool:
        """The event's messages on the page's stream, applied as they come."""
        stream = SessionStream.of(self.t.url, self.session_hash, self.headers)
        messages, stalls, first = stream.listen(event_id), 0, True
        try:
            while True:
                msg = await messages.get()
                kind = msg.get("msg")
                if kind in ("process_generating", "process_completed"):
                    if not msg.get("success", True):
                        self.v.error = self.v.error or f"step {dep.get('api_name')}: {str(msg.get('output'))[:200]}"
                        return False
                    self.apply(dep, msg.get("output") or {}, full=first or kind == "process_completed")
                    first = False
                    if kind == "process_completed":
                        return True
                elif kind in ("unexpected_error", "_failed"):
                    self.v.error = self.v.error or f"step {dep.get('api_name')}: {msg.get('message') or msg}"[:300]
                    return False
                elif kind == "_stream_ended":
                    stalls += 1
                    if stalls > 3:
                        self.v.error = self.v.error or "stream closed before process_completed"
                        return False
        finally:
            stream.done(event_id)

    def apply(self, dep: dict[str, Any], output: dict[str, Any], full: bool) -> None:
        """An update's outputs into the page: values (diffs applied), the reply seen, and what they trigger."""
        now, t = perf(), self.t
        for cid, value in zip(dep["outputs"], output.get("data") or [], strict=False):
            kind = t.types.get(cid)
            if kind == "state":
                continue
            if kind == "timer" and isinstance(value, dict) and "active" in value:
                self.timer(cid, bool(value["active"]))
                continue
            before = self.values.get(cid)
            if isinstance(value, dict) and value.get("__type__") == "update":
                if "value" not in value:
                    continue
                value = value["value"]
            elif not full and _is_diff(value):
                value = apply_diff(before, value)
            elif not full and value == []:
                continue  # no change
            self.values[cid] = value
            if cid == t.chatbot:
                self.v.saw(reply_text_of(value), now)
            if _changed(before, value):
                for d in self.steps.triggered(cid, "change"):
                    self.spawn(self.run(d))
        for sid in output.get("changed_state_ids") or []:
            for d in self.steps.triggered(sid, "change"):
                self.spawn(self.run(d))

    def timer(self, cid: int, active: bool) -> None:
        was = self.active.get(cid, False)
        self.active[cid] = active
        if active and not was:
            self.spawn(self.tick(cid))

    async def tick(self, cid: int) -> None:
        """A running timer: its ``tick`` steps every interval, a tick skipped while the last one runs."""
        pending: asyncio.Future | None = None
        try:
            while self.active.get(cid):
                await asyncio.sleep(self.steps.timers.get(cid, 1.0))
                if self.active.get(cid) and (pending is None or pending.done()):
                    pending = asyncio.gather(*(self.run(d) for d in self.steps.triggered(cid, "tick")))
            if pending is not None:
                await pending
        finally:
            if pending is not None and not pending.done():
                pending.cancel()
                pending.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no warning
