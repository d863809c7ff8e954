"""The concurrency ramp: N simultaneous visitors per path, the upstream paced at a fixed rate per stream."""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING, Any

from bench.fake_server import reply_text
from bench.procs import Sampler
from bench.scenarios.paths import SHORT
from bench.visit import gather_visits, visit_stats

if TYPE_CHECKING:
    from bench.scenarios.runner import Bench


async def scenario(bench: Bench) -> dict[str, Any]:
    """Concurrency ramp: N simultaneous visitors, upstream paced at ramp_tps tokens/s each."""
    o = bench.opts
    assert bench.fake is not None
    floor = "gf_ui" in o.ramp_targets
    if o.fresh_apps or (floor and "gradio_floor" not in bench.apps):
        await bench.restart_apps(floor=floor)
    await asyncio.to_thread(bench.fake.configure, o.ramp_reply_tokens, o.chunk_size, o.ramp_tps)
    expected = reply_text(o.ramp_reply_tokens, o.chunk_size)
    one_stream = o.ramp_reply_tokens / o.ramp_tps
    keys = bench.with_before(o.ramp_targets)
    out: dict[str, Any] = {"tps": o.ramp_tps, "reply_tokens": o.ramp_reply_tokens, "steps": list(o.ramp),
                           "nominal_stream_s": one_stream, "targets": {}}
    for k in keys:
        target = bench.targets[k]
        app = bench.app_of(k)
        # gr.load_chat with its defaults serves one event at a time: its steps stop at a deadline
        deadline = (o.lc_deadline_factor * one_stream + 2) if k.startswith("lc") else max(60.0, 8 * one_stream)
        steps = list(o.ramp) if 1 in o.ramp else [1, *o.ramp]
        rows = []
        single: float | None = None
        await bench.fake.wait_idle(60)
        await target.visit("warm-up", None, expected)  # the first message after start-up is not measured
        for n in steps:
            await bench.fake.wait_idle(60)
            await asyncio.sleep(0.1 if o.quick else 0.5)
            cpu0 = app.cpu() if app else 0.0
            fake0 = bench.fake.cpu()
            me0 = time.process_time()
            sampler = Sampler(app.rss) if app else None
            if sampler:
                sampler.__enter__()
            try:
                visits, t0, t1, censored = await gather_visits(target, n, f"ramp {n}", expected, deadline)
            finally:
                if sampler:
                    sampler.__exit__()
            wall = t1 - t0
            row = {"visitors": n, **visit_stats(visits), "wall_s": wall, "deadline_s": deadline,
                   "censored": censored,
                   "app_cpu_s": (app.cpu() - cpu0) if app else math.nan,
                   "peak_rss_mb": sampler.peak / 1e6 if sampler else math.nan,
                   "fake_cpu_s": bench.fake.cpu() - fake0, "client_cpu_s": time.process_time() - me0}
            row["app_cpu_per_update_s"] = row["app_cpu_s"] / max(1, row["updates"])
            if n == 1:
                single = wall
            row["vs_one_stream"] = wall / single if single else math.nan
            rows.append(row)
            bench.log(f"    {SHORT[k]:18s} {n:4d} visitors: {row['completed']}/{n} ok, "
                      f"TTFT p50 {row['ttft_p50']*1000:.0f} ms p99 {row['ttft_p99']*1000:.0f} ms, "
                      f"wall {wall:.1f} s ({row['vs_one_stream']:.2f}x), max gap {row['max_gap']*1000:.0f} ms, "
                      f"app CPU {row['app_cpu_s']:.1f} s, client CPU {row['client_cpu_s']:.1f} s")
        out["targets"][k] = rows
    return out
