"""Memory after closed sessions: RSS after N browser sessions (page, heartbeat, one message) opened and
closed, Switchboard at its default session grace and at 2 s, gr.load_chat beside."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from typing import TYPE_CHECKING, Any

from bench.clients import BrowserChatTarget
from bench.fake_server import reply_text
from bench.gradio_queue import fetch_config
from bench.scenarios.paths import BEFORE, SHORT
from bench.visit import Target, Visit

if TYPE_CHECKING:
    from bench.scenarios.runner import Bench


async def _browser_session(bench: Bench, target: BrowserChatTarget, expected: str) -> Visit:
    """One visitor: load the page, hold the heartbeat stream, send one message, leave."""
    assert bench.client is not None
    sh = uuid.uuid4().hex[:12]
    url = target.url
    await bench.client.get(url + "/")

    async def heartbeat() -> None:
        async with bench.client.stream("GET", f"{url}/gradio_api/heartbeat/{sh}") as r:
            async for _ in r.aiter_bytes():
                pass

    hb = asyncio.create_task(heartbeat())
    try:
        return await target.visit("hello", None, expected, session_hash=sh)
    finally:
        hb.cancel()
        await asyncio.gather(hb, return_exceptions=True)

async def _sessions(bench: Bench, target: BrowserChatTarget, count: int, expected: str,
                    on_progress=None) -> list[Visit]:
    sem = asyncio.Semaphore(bench.opts.session_concurrency)
    done = 0

    async def one() -> Visit:
        nonlocal done
        async with sem:
            v = await _browser_session(bench, target, expected)
        done += 1
        if on_progress:
            on_progress(done)
        return v

    return await asyncio.gather(*(one() for _ in range(count)))

async def scenario(bench: Bench) -> dict[str, Any]:
    """RSS after N browser sessions opened (page, heartbeat, one message) and closed: Switchboard at its
    default session grace and, in a second fresh process, at 2 s; the load_chat baselines beside."""
    o = bench.opts
    assert bench.fake is not None and bench.client is not None
    if o.fresh_apps:
        await bench.restart_apps()
    await asyncio.to_thread(bench.fake.configure, 5, o.chunk_size)
    expected = reply_text(5, o.chunk_size)
    out: dict[str, Any] = {"sessions": o.sessions, "concurrency": o.session_concurrency, "targets": {},
                           "settle_s": o.memory_settle_s}
    targets: dict[str, Target] = {}
    shorts: dict[str, BrowserChatTarget] = {}
    try:
        for kind, prefix in (("switchboard", ""), ("switchboard_before", BEFORE)):
            if prefix + "sw_ui" not in bench.targets:
                continue
            short = bench.apps.get(f"{kind}_grace2")
            if short is None or o.fresh_apps:
                short = await bench.start_app(kind, name=f"{kind}_grace2", grace=2.0)
            shorts[kind] = BrowserChatTarget(SHORT[prefix + "sw_ui_grace2"], short, bench.client,
                                             await fetch_config(bench.client, short.url))
            targets[prefix + "sw_ui"] = bench.targets[prefix + "sw_ui"]
            targets[prefix + "sw_ui_grace2"] = shorts[kind]
        targets.update({k: bench.targets[k] for k in o.memory_baselines if k in bench.targets})
        for k, target in targets.items():
            assert isinstance(target, BrowserChatTarget)
            out["targets"][k] = await _memory_of(bench, k, target, expected)
    finally:
        for short_target in shorts.values():
            await short_target.close()
        for kind in ("switchboard_grace2", "switchboard_before_grace2"):
            if kind in bench.apps:
                bench.apps.pop(kind).stop()
    return out

async def _memory_of(bench: Bench, k: str, target: BrowserChatTarget, expected: str) -> dict[str, Any]:
    o = bench.opts
    app = target.app
    await _sessions(bench, target, o.memory_warmup, expected)
    await asyncio.sleep(o.memory_settle_s)
    rss0 = app.rss()
    curve = [(0, rss0 / 1e6)]
    count = min(o.sessions, o.memory_baseline_sessions) if k == "lc_ui" else o.sessions
    step = max(1, count // 10)
    t0 = time.perf_counter()
    cpu0 = app.cpu()
    visits = await _sessions(bench, target, count, expected,
                             lambda done: curve.append((done, app.rss() / 1e6)) if done % step == 0 else None)
    elapsed = time.perf_counter() - t0
    cpu = app.cpu() - cpu0
    await asyncio.sleep(o.memory_settle_s)  # let the server notice the closed heartbeats
    rss1 = app.rss()
    curve.append((count, rss1 / 1e6))
    growth = (rss1 - rss0) / 1e6
    half = [c for c in curve if c[0] >= count // 2]  # slope over the second half: what scales
    slope = ((half[-1][1] - half[0][1]) * 1000 / (half[-1][0] - half[0][0])
             if len(half) >= 2 and half[-1][0] > half[0][0] else math.nan)
    bench.log(f"    {SHORT[k]}: RSS {rss0/1e6:.0f} -> {rss1/1e6:.0f} MB after {count} sessions ({elapsed:.1f} s)")
    return {
        "slope_per_1000_mb": slope, "grace_s": app.grace,
        "sessions": count, "rss_before_mb": rss0 / 1e6, "rss_after_mb": rss1 / 1e6, "growth_mb": growth,
        "growth_per_1000_mb": growth * 1000 / count, "curve": curve,
        "errors": sum(not v.ok for v in visits),
        "error_examples": sorted({v.error for v in visits if v.error})[:2],
        "seconds": elapsed, "app_cpu_per_session_s": cpu / count,
    }
