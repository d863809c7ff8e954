"""Throughput of one stream with no upstream delay: tokens/s delivered and the app's CPU per 1,000 tokens."""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING, Any

from bench.fake_server import reply_text
from bench.stats import summary

if TYPE_CHECKING:
    from bench.scenarios.runner import Bench


async def scenario(bench: Bench) -> dict[str, Any]:
    """One stream, upstream with no delay: tokens/s delivered and app CPU per 1,000 tokens."""
    o = bench.opts
    assert bench.fake is not None
    tokens = o.throughput_tokens
    await asyncio.to_thread(bench.fake.configure, tokens, o.chunk_size)
    expected = reply_text(tokens, o.chunk_size)
    keys = bench.with_before(("sdk", "sw_api", "sw_ui", "sw_http", "lc_api", "lc_ui"))
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in keys}
    errors: dict[str, list[str]] = {k: [] for k in keys}
    for k in keys:  # one warm-up each
        await bench.targets[k].visit("warm-up", None, expected)
    for _ in range(o.throughput_runs):
        for k in keys:
            app = bench.app_of(k)
            cpu0 = app.cpu() if app else 0.0
            fake0 = bench.fake.cpu()
            me0 = time.process_time()
            v = await bench.targets[k].visit("throughput", None, expected)
            cpu = (app.cpu() - cpu0) if app else math.nan
            if not v.ok:
                errors[k].append(v.error or "?")
                continue
            runs[k].append({
                "tokens_per_s": tokens / v.total, "seconds": v.total, "ttft": v.ttft,
                "app_cpu_per_1k": cpu / (tokens / 1000), "updates": len(v.updates),
                "app_cpu_per_update_s": (cpu / max(1, len(v.updates))) if app else math.nan,
                "fake_cpu_per_1k": (bench.fake.cpu() - fake0) / (tokens / 1000),
                "client_cpu_per_1k": (time.process_time() - me0) / (tokens / 1000),
            })
    out: dict[str, Any] = {"tokens": tokens, "runs": o.throughput_runs, "targets": {}}
    for k in keys:
        r = runs[k]
        out["targets"][k] = {name: summary(x[name] for x in r) for name in (r[0] if r else {})}
        out["targets"][k]["errors"] = len(errors[k])
        out["targets"][k]["error_examples"] = errors[k][:2]
    return out
