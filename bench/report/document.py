"""results.md: the preamble (command, machine, load, how it was measured, the paths), the Headlines, the
Before/after table, then each scenario's section (bench/report/sections.py) and the plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.beforeafter import section
from bench.replicas_report import section as replicas_section
from bench.report.headline_rows import headlines
from bench.report.sections import (
    _table,
    coldstart_section,
    gap_section,
    history_section,
    memory_section,
    ramp_section,
    throughput_section,
    ttft_section,
)
from bench.scenarios.paths import BEFORE, LABELS, SHORT


def markdown(res: dict[str, Any], images: list[str]) -> str:
    sc = res.get("scenarios", {})
    L = preamble(res)
    L.append("## Headlines")
    L.append("")
    rows = headlines(res)
    L += _table(["Figure", "Switchboard", "Baseline (same run)", "Ratio", "Target", "Result"],
                [[r["figure"], r["value"], r["baseline"], r["ratio"], r["target"], f"**{r['result']}**"
                  if r["result"] else ""] for r in rows])
    L.append("")
    L += section(res)
    L += gap_section(res)
    if res.get("notes"):
        L.append("Notes:")
        L += [f"- {n}" for n in res["notes"]]
        L.append("")
    L += [*ttft_section(sc), *throughput_section(sc), *ramp_section(res), *history_section(sc),
          *memory_section(sc), *coldstart_section(sc)]
    L += replicas_section(res)
    for name, data in sc.items():
        if isinstance(data, dict) and data.get("error"):
            L.append(f"Scenario **{name}** failed: `{data['error']}`")
            L.append("")
    if images:
        L.append("## Plots")
        L.append("")
        L += [f"![{Path(p).stem}]({Path(p).name})" for p in images]
        L.append("")
    return "\n".join(L)


def preamble(res: dict[str, Any]) -> list[str]:
    """The title, the command, machine and load, how everything was measured, the paths, the heap settings."""
    meta = res.get("meta", {})
    m = meta.get("machine", {})
    o = meta.get("options", {})
    L: list[str] = []
    mode = "quick" if o.get("quick") else "full"
    L.append(f"# Switchboard benchmark ({mode} mode)")
    L.append("")
    if o.get("quick"):
        L.append("> Quick mode: small counts (a sanity pass, not the benchmark). Ramp, history and memory "
                 "figures are at far smaller loads than the targets name; run `python -m bench` for the real "
                 "figures.")
        L.append("")
    L.append(f"`{meta.get('command', 'python -m bench')}` on {meta.get('date', '')}, took "
             f"{meta.get('duration_s', 0):.0f} s. Machine: {m.get('cpu', '?')}, {m.get('logical_cores')} logical "
             f"cores, {m.get('memory_gb')} GB; Python {m.get('python')}, Gradio {m.get('gradio')}, "
             f"openai {m.get('openai')}. Load average at start {m.get('load_average')}, at end "
             f"{meta.get('load_average_end')}.")
    L.append("")
    L.append("Everything runs on this one machine over loopback: the fake upstream (`tests/fake_upstream.py`, in "
             "its own process), the app under test (its own process, CPU and RSS read with psutil), and the "
             "benchmark's asyncio clients. Baselines are measured in the same run: the **upstream floor** (the "
             "fake's stream read straight, with the same raw reader as every path, no front end), "
             "**gr.load_chat** pointed at the same fake with Gradio's defaults (one event at a time) and again "
             "with `default_concurrency_limit=None` and 512 threads (**load_chat unlimited**), and the **Gradio "
             "floor** (a bare ChatInterface). A token is one upstream chunk of "
             f"{o.get('chunk_size')} characters. Figures are medians over repeated runs with (min – max), "
             "unless a row says otherwise.")
    L.append("")
    shown = [k for k in LABELS if meta.get("before") or not k.startswith(BEFORE)]
    L.append("Paths: " + "; ".join(f"**{SHORT[k]}** = {LABELS[k]}" for k in shown) + ".")
    L.append("")
    if meta.get("heap"):
        L.append(heap_text(meta["heap"]))
        L.append("")
    return L


def heap_text(heap: dict[str, Any]) -> str:
    """The heap settings each app ran with (every Gradio app gets Switchboard's; see bench/heap.py)."""
    parts = []
    for name, info in heap.items():
        if isinstance(info, dict):
            info = f"gc.freeze() ({info.get('frozen', 0):,} objects), young threshold {info.get('threshold')}"
        parts.append(f"{name}: {info or 'not tuned (it printed no settings)'}")
    return ("Heap settings (the same for every Gradio app: Switchboard's `gc.freeze()` and young-generation "
            "threshold): " + "; ".join(parts) + ".")

