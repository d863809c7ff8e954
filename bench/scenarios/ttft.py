"""Time to first token, one visitor at a time: every path's, and what it adds to the upstream floor's."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from bench.fake_server import reply_text
from bench.stats import percentile, summary

if TYPE_CHECKING:
    from bench.scenarios.runner import Bench


async def scenario(bench: Bench) -> dict[str, Any]:
    """Added time to first token, one visitor at a time; interleaved so drift hits all alike."""
    o = bench.opts
    assert bench.fake is not None
    await asyncio.to_thread(bench.fake.configure, o.ttft_reply_tokens, o.chunk_size)
    expected = reply_text(o.ttft_reply_tokens, o.chunk_size)
    if "gradio_floor" not in bench.apps:  # the bare ChatInterface: what Gradio's chain alone costs
        await bench.start_app("gradio_floor")
        await bench.build_targets()
    keys = bench.with_before(("sdk", "sw_ui", "sw_api", "sw_http", "lc_ui", "lc_api", "lu_ui", "gf_ui"))
    first: dict[str, float | None] = {}
    for k in keys:  # the first message after start-up (lazy imports, tokenizer load, first connection)
        v = await bench.targets[k].visit("first message", None, expected)
        first[k] = v.ttft
        for _ in range(o.warmups):
            await bench.targets[k].visit("warm-up", None, expected)
    rounds: dict[str, list[list[float]]] = {k: [] for k in keys}
    before: dict[str, list[float]] = {k: [] for k in keys}  # chat UI chains: send -> the reply step
    errors: dict[str, list[str]] = {k: [] for k in keys}
    for _ in range(o.ttft_rounds):
        samples: dict[str, list[float]] = {k: [] for k in keys}
        for i in range(o.ttft_samples):
            for k in keys:
                v = await bench.targets[k].visit(f"ttft {i}", None, expected)
                if v.ok and v.ttft is not None:
                    samples[k].append(v.ttft)
                    if v.reply_step is not None:
                        before[k].append(v.reply_step)
                else:
                    errors[k].append(v.error or "no text")
        for k in keys:
            rounds[k].append(samples[k])
    out: dict[str, Any] = {"targets": {}, "reply_tokens": o.ttft_reply_tokens, "rounds": o.ttft_rounds,
                           "samples_per_round": o.ttft_samples}
    sdk_p50 = [percentile(r, 50) for r in rounds["sdk"]]
    sdk_p99 = [percentile(r, 99) for r in rounds["sdk"]]
    for k in keys:
        p50 = [percentile(r, 50) for r in rounds[k]]
        p99 = [percentile(r, 99) for r in rounds[k]]
        out["targets"][k] = {
            "p50": summary(p50), "p99": summary(p99),
            "added_p50": summary([a - b for a, b in zip(p50, sdk_p50, strict=False)]),
            "added_p99": summary([a - b for a, b in zip(p99, sdk_p99, strict=False)]),
            "first_after_start": first[k], "errors": len(errors[k]), "error_examples": errors[k][:2],
            "before_reply_step_p50": percentile(before[k], 50) if before[k] else None,
            "all": [x for r in rounds[k] for x in r],
        }
    return out
