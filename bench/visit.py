"""A visit: what one visitor saw for one message, the :class:`Target` a visitor sends to, many visitors at
once (:func:`gather_visits`) and what they saw together (:func:`visit_stats`). The targets themselves:
bench/targets.py (the upstream floor, Gradio's API, Switchboard's HTTP API) and bench/clients.py (the chat
page, its browser submit chain)."""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.stats import percentile

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


def visit_stats(visits: list[Visit]) -> dict[str, Any]:
    """Visitors' TTFT and gaps (p50, p99, longest), completions and errors, over one step."""
    ttfts = [v.ttft if v.ttft is not None else math.inf for v in visits]
    gaps = [v.max_gap for v in visits if v.ok and v.max_gap is not None]
    errors = [v.error for v in visits if not v.ok]
    return {
        "n": len(visits), "completed": sum(v.ok for v in visits), "errors": len(errors),
        "error_examples": sorted(set(e for e in errors if e))[:3],
        "ttft_p50": percentile(ttfts, 50), "ttft_p99": percentile(ttfts, 99), "ttft_max": max(ttfts, default=math.nan),
        "max_gap": max(gaps, default=math.nan), "gap_p99": percentile(gaps, 99) if gaps else math.nan,
        "updates": sum(len(v.updates) for v in visits),
    }

