"""Markdown tables and PNG plots from a results dict (see scenarios.py)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .beforeafter import section
from .procs import DEFAULT_SESSION_GRACE
from .scenarios import BEFORE, LABELS, SHORT
from .stats import fmt_num, fmt_summary

TARGETS = {
    "ttft_added_p50": 0.030,
    "tokens_per_s": 5000.0,
    "cpu_ratio": 0.2,
    "ramp_errors": 0,
    "ramp_vs_one": 1.5,
    "ramp_ttft_p99": 1.0,
    "ramp_max_gap": 0.5,
    "history_ratio": 2.0,
    "rss_growth_mb": 30.0,
}

SW_KEYS = ("sw_ui", "sw_api", "sw_http")
GAP_STEPS = (50, 200)  # the ramp steps whose longest gap every path reports (gap_section and the headlines)


def verdict(value: float | None, limit: float, higher_is_better: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    ok = value >= limit if higher_is_better else value <= limit
    return "PASS" if ok else "MISS"


def num(value: float | dict | None, better: str = "lower") -> dict[str, Any]:
    """A headline's number for the Before/after table (bench/beforeafter.py): a value or a summary (median,
    min – max over runs), and which way is better."""
    if isinstance(value, dict):
        return {"num": value.get("median", math.nan), "lo": value.get("min", math.nan),
                "hi": value.get("max", math.nan), "n": value.get("n", 1), "better": better}
    value = math.nan if value is None else value
    return {"num": value, "lo": value, "hi": value, "n": 1, "better": better}


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def gap_section(res: dict[str, Any]) -> list[str]:
    """The longest gap between two updates any visitor saw, at 50 and 200 simultaneous streams (or the ramp's
    steps), for every path the ramp measured (issue 17: where pieces are held back under load)."""
    ramp = res.get("scenarios", {}).get("ramp", {})
    targets = ramp.get("targets") or {}
    steps = [n for n in ramp.get("steps") or [] if n in GAP_STEPS] or [n for n in ramp.get("steps") or [] if n > 1]
    if not targets or not steps:
        return []
    rows = []
    for k, rows_k in targets.items():
        at = {r["visitors"]: r for r in rows_k}
        cells = []
        for n in steps:
            r = at.get(n)
            cells += ([fmt_num(r["max_gap"], "ms"), fmt_num(r["gap_p99"], "ms"), f"{r['completed']}/{r['n']}"]
                      if r else ["", "", ""])
        rows.append([SHORT.get(k, k), *cells])
    header = ["Path"]
    for n in steps:
        header += [f"{n} streams: longest gap", "gap p99", "completed"]
    return ["## Longest gap between updates under load", "",
            f"From the concurrency ramp ({ramp.get('reply_tokens')} tokens at {ramp.get('tps'):g} tokens/s per "
            "stream, so the upstream's own gap is about "
            f"{fmt_num(1 / ramp['tps'] if ramp.get('tps') else math.nan, 'ms')}): the longest wait between two "
            "text updates any visitor saw after its first token, and the 99th percentile of each visitor's "
            "longest wait. Reference (issue 17, another run): Open WebUI 0.12.4, 50 streams of 400 tokens at "
            "20/s through its HTTP API: 165 ms.", "", *_table(header, rows), ""]


def gap_headlines(ramp: dict[str, list[dict]], steps: list[int]) -> list[dict[str, Any]]:
    """The longest gap at the ramp's other GAP_STEPS (the top step has its own rows), baselines beside."""
    out = []
    for n in steps:
        at = {k: next((r for r in rows_k if r["visitors"] == n), None) for k, rows_k in ramp.items()}
        base = "; ".join(f"{SHORT[k]} {fmt_num(at[k]['max_gap'], 'ms')}" for k in ("lu_ui", "sdk", "gf_ui")
                         if at.get(k))
        for k in SW_KEYS:
            r = at.get(k)
            if not r:
                continue
            value = r["max_gap"] if r["completed"] else math.inf
            out.append({"figure": f"{n} visitors: longest gap between updates ({SHORT[k]})",
                        "value": fmt_num(r["max_gap"], "ms") if r["completed"] else "no visitor completed",
                        "baseline": base, "ratio": "", "target": "≤ 500 ms",
                        "result": verdict(value, TARGETS["ramp_max_gap"]), **num(value)})
    return out


def headlines(res: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows: figure, Switchboard, baseline, ratio, target, result."""
    sc = res.get("scenarios", {})
    rows: list[dict[str, str]] = []

    ttft = sc.get("ttft", {}).get("targets", {})
    if ttft:
        sdk = ttft.get("sdk", {})
        lc = ttft.get("lc_ui", {})
        lu = ttft.get("lu_ui", {})
        gf = ttft.get("gf_ui", {})
        floor_txt = ""
        if gf:
            floor_txt = (f"; Gradio floor UI adds {fmt_num(gf['added_p50']['median'], 'ms')}, of which "
                         f"{fmt_num(gf.get('before_reply_step_p50'), 'ms')} go before its reply step starts")
        for k in SW_KEYS:
            t = ttft.get(k)
            if not t:
                continue
            ratio = t["p50"]["median"] / sdk["p50"]["median"] if sdk else math.nan
            rows.append({
                "figure": f"Added TTFT p50 over the upstream floor, one visitor ({SHORT[k]})",
                "value": fmt_summary(t["added_p50"], "ms"),
                "baseline": f"upstream floor TTFT p50 {fmt_num(sdk['p50']['median'], 'ms')}; load_chat UI adds "
                            f"{fmt_num(lc.get('added_p50', {}).get('median', math.nan), 'ms')}"
                            + (f" (unlimited: {fmt_num(lu['added_p50']['median'], 'ms')})" if lu else "")
                            + (floor_txt if k == "sw_ui" else ""),
                "ratio": f"{fmt_num(ratio, 'x')} the floor's TTFT",
                "target": "≤ 30 ms", "result": verdict(t["added_p50"]["median"], TARGETS["ttft_added_p50"]),
                **num(t["added_p50"]),
            })
            rows.append({
                "figure": f"Added TTFT p99 over the upstream floor, one visitor ({SHORT[k]})",
                "value": fmt_summary(t["added_p99"], "ms"),
                "baseline": f"upstream floor TTFT p99 {fmt_num(sdk['p99']['median'], 'ms')}",
                "ratio": "", "target": "(reported)", "result": "", **num(t["added_p99"]),
            })

    thr = sc.get("throughput", {}).get("targets", {})
    if thr:
        tokens = sc["throughput"]["tokens"]
        floor = thr.get("sdk", {}).get("tokens_per_s", {}).get("median", math.nan)
        for k in SW_KEYS:
            t = thr.get(k)
            if not t or "tokens_per_s" not in t:
                continue
            v = t["tokens_per_s"]["median"]
            rows.append({
                "figure": f"One stream, {tokens:,}-token reply, no upstream delay: tokens/s ({SHORT[k]})",
                "value": fmt_summary(t["tokens_per_s"], "tok/s"),
                "baseline": f"upstream floor {fmt_num(floor, 'tok/s')}",
                "ratio": f"{fmt_num(v / floor, 'x')} the floor", "target": "≥ 5,000 tok/s",
                "result": verdict(v, TARGETS["tokens_per_s"], higher_is_better=True),
                **num(t["tokens_per_s"], "higher"),
            })
        for k, base in (("sw_ui", "lc_ui"), ("sw_api", "lc_api")):
            t, b = thr.get(k), thr.get(base)
            if not t or not b or "app_cpu_per_1k" not in t or "app_cpu_per_1k" not in b:
                continue
            ratio = t["app_cpu_per_1k"]["median"] / b["app_cpu_per_1k"]["median"]
            rows.append({
                "figure": f"App CPU per 1,000 tokens, one stream ({SHORT[k]} vs {SHORT[base]})",
                "value": fmt_summary(t["app_cpu_per_1k"], "s"),
                "baseline": f"{SHORT[base]} {fmt_summary(b['app_cpu_per_1k'], 's')}",
                "ratio": fmt_num(ratio, "x"), "target": "≤ 0.20× load_chat's",
                "result": verdict(ratio, TARGETS["cpu_ratio"]), **num(t["app_cpu_per_1k"]),
            })

    ramp = sc.get("ramp", {}).get("targets", {})
    if ramp:
        top = max(sc["ramp"]["steps"])

        def at_top(key: str) -> dict | None:
            rows_k = ramp.get(key) or []
            found = [r for r in rows_k if r["visitors"] == top]
            return found[0] if found else None

        lc, lu, sdk, floor = at_top("lc_ui"), at_top("lu_ui"), at_top("sdk"), at_top("gf_ui")

        def base_txt(field: str, unit: str) -> str:
            parts = []
            if lc:
                val = lc[field]
                txt = fmt_num(val, unit) if field != "errors" else f"{lc['n'] - lc['completed']} of {lc['n']}"
                if field == "vs_one_stream" and lc.get("censored"):
                    txt = f"> {txt} (stopped at the {fmt_num(lc['deadline_s'], 's')} deadline)"
                if field == "ttft_p99" and math.isinf(val):
                    txt = f"> {fmt_num(lc['deadline_s'], 's')} (never started)"
                parts.append(f"load_chat {txt}")
            if lu:  # load_chat with unlimited concurrency: what its defaults leave on the table
                value = fmt_num(lu[field], unit) if field != "errors" else f"{lu['n'] - lu['completed']} of {lu['n']}"
                parts.append(f"load_chat unlimited {value}")
            if sdk:
                value = fmt_num(sdk[field], unit) if field != "errors" else sdk["n"] - sdk["completed"]
                parts.append(f"upstream {value}")
            if floor:  # a bare ChatInterface: what Gradio alone costs at this load
                value = fmt_num(floor[field], unit) if field != "errors" else floor["n"] - floor["completed"]
                parts.append(f"Gradio floor {value}")
            return "; ".join(parts)

        for k in SW_KEYS:
            r = at_top(k)
            if not r:
                continue
            failed = r["n"] - r["completed"]
            rows.append({"figure": f"{top} simultaneous visitors: failed or incomplete ({SHORT[k]})",
                         "value": f"{failed} of {r['n']}", "baseline": base_txt("errors", ""),
                         "ratio": "", "target": "0", "result": verdict(failed, TARGETS["ramp_errors"]),
                         **num(failed)})
            rows.append({"figure": f"{top} visitors: total time vs one stream ({SHORT[k]})",
                         "value": fmt_num(r["vs_one_stream"], "x"),
                         "baseline": base_txt("vs_one_stream", "x"), "ratio": "",
                         "target": "≤ 1.5×", "result": verdict(r["vs_one_stream"], TARGETS["ramp_vs_one"]),
                         **num(r["vs_one_stream"])})
            rows.append({"figure": f"{top} visitors: TTFT p99 ({SHORT[k]})", "value": fmt_num(r["ttft_p99"], "ms"),
                         "baseline": base_txt("ttft_p99", "ms"),
                         "ratio": f"{fmt_num(r['ttft_p99'] / sdk['ttft_p99'], 'x')} the upstream's" if sdk else "",
                         "target": "≤ 1 s", "result": verdict(r["ttft_p99"], TARGETS["ramp_ttft_p99"]),
                         **num(r["ttft_p99"])})
            gap_ok = verdict(r["max_gap"], TARGETS["ramp_max_gap"]) if r["completed"] else "MISS"
            rows.append({"figure": f"{top} visitors: longest gap between updates ({SHORT[k]})",
                         "value": fmt_num(r["max_gap"], "ms") if r["completed"] else "no visitor completed",
                         "baseline": base_txt("max_gap", "ms"), "ratio": "", "target": "≤ 500 ms", "result": gap_ok,
                         **num(r["max_gap"] if r["completed"] else math.inf)})
        rows += gap_headlines(ramp, [n for n in GAP_STEPS if n != top and n in sc["ramp"]["steps"]])

    hist = sc.get("history", {})
    core = hist.get("core")
    if isinstance(core, list) and len(core) >= 2:
        lo, hi = core[0], core[-1]
        fitted = "fit_total_s" in hi
        before = (f"clean_history + trim_history on the whole history: {fmt_num(hi['total_s'], 'ms')} vs "
                  f"{fmt_num(lo['total_s'], 'ms')}, {fmt_num(hi['total_s'] / lo['total_s'], 'x')}")
        variants = [("fit_", "prepare with the client's History, everything fits the model"),
                    ("fit_budget_", "prepare with the client's History, a 4,000-token budget")] if fitted else [
                    ("", "clean_history + trim_history")]
        for prefix, label in variants:
            key = f"{prefix}total_s"
            if key not in hi:
                continue
            ratio = hi[key] / lo[key]
            rows.append({"figure": f"History cost per turn in the core at {hi['turns']:,} turns vs {lo['turns']} "
                                   f"({label})",
                         "value": f"{fmt_num(hi[key], 'ms')} vs {fmt_num(lo[key], 'ms')}",
                         "baseline": before if prefix else "", "ratio": fmt_num(ratio, "x"), "target": "≤ 2×",
                         "result": verdict(ratio, TARGETS["history_ratio"]), **num(hi[key])})
    app_rows = hist.get("app", {})
    for k in ("sw_http", "sw_api", "sw_ui"):
        rk = app_rows.get(k) or []
        if len(rk) >= 2:
            lo, hi = rk[0], rk[-1]
            ratio = hi["app_cpu"]["median"] / lo["app_cpu"]["median"]
            sdk_rows = app_rows.get("sdk") or []
            baseline = (f"added latency over the upstream: {fmt_num(hi.get('added_total', math.nan), 'ms')} vs "
                        f"{fmt_num(lo.get('added_total', math.nan), 'ms')}") if sdk_rows and k != "sw_http" else ""
            gf = app_rows.get("gf_ui") or []
            if k == "sw_ui" and len(gf) >= 2:
                baseline = (f"Gradio floor UI: {fmt_num(gf[-1]['app_cpu']['median'], 'ms')} vs "
                            f"{fmt_num(gf[0]['app_cpu']['median'], 'ms')}, "
                            f"{fmt_num(gf[-1]['app_cpu']['median'] / gf[0]['app_cpu']['median'], 'x')}")
            how = " (stored conversation, only the message sent)" if k == "sw_http" else ""
            rows.append({"figure": f"History: app CPU per turn at {hi['turns']:,} turns vs {lo['turns']} "
                                   f"({SHORT[k]}{how})",
                         "value": f"{fmt_num(hi['app_cpu']['median'], 'ms')} vs "
                                  f"{fmt_num(lo['app_cpu']['median'], 'ms')}",
                         "baseline": baseline, "ratio": fmt_num(ratio, "x"), "target": "≤ 2×",
                         "result": verdict(ratio, TARGETS["history_ratio"]), **num(hi["app_cpu"])})

    rows += memory_headlines(sc.get("memory", {}))

    cold = sc.get("coldstart", {})
    if cold and cold.get("switchboard", {}).get("n"):
        sw, lc, bare = cold["switchboard"], cold.get("load_chat", {}), cold.get("bare", {})
        base = f"load_chat {fmt_summary(lc, 's')}" if lc.get("n") else ""
        if bare.get("n"):
            base += f"; bare gr.Blocks {fmt_summary(bare, 's')}"
        rows.append({"figure": "Cold start: `python app.py` to the first 200 on `/`", "value": fmt_summary(sw, "s"),
                     "baseline": base, "ratio": fmt_num(sw["median"] / lc["median"], "x") + " load_chat's"
                     if lc.get("n") else "", "target": "(reported)", "result": "", **num(sw)})
    return rows


def heap_text(heap: dict[str, Any]) -> str:
    """The heap settings each app ran with (every Gradio app gets Switchboard's; see bench/heap.py)."""
    parts = []
    for name, info in heap.items():
        if isinstance(info, dict):
            info = f"gc.freeze() ({info.get('frozen', 0):,} objects), young threshold {info.get('threshold')}"
        parts.append(f"{name}: {info or 'not tuned (it printed no settings)'}")
    return ("Heap settings (the same for every Gradio app: Switchboard's `gc.freeze()` and young-generation "
            "threshold): " + "; ".join(parts) + ".")


def grace_text(grace: float | None) -> str:
    """How a memory row names Switchboard's session grace (None: a run from before it was recorded)."""
    if grace is None:
        return "session grace as run"
    return f"session grace {grace:g} s" + (" (the default)" if grace == DEFAULT_SESSION_GRACE else "")


def memory_headlines(mem: dict[str, Any]) -> list[dict[str, str]]:
    """One row per Switchboard run of the memory scenario (its default session grace, then the short one),
    each beside both load_chat variants."""
    targets = mem.get("targets") or {}
    lc, lu = targets.get("lc_ui"), targets.get("lu_ui")
    base = "; ".join(f"{name} {fmt_num(t['growth_per_1000_mb'], 'MB')} per 1,000"
                     for name, t in (("load_chat", lc), ("load_chat unlimited", lu)) if t)
    rows = []
    for k in ("sw_ui", "sw_ui_grace2"):
        sw = targets.get(k)
        if not sw:
            continue
        n = sw.get("sessions", mem["sessions"])
        value = sw["growth_per_1000_mb"]
        label = f"{fmt_num(sw['growth_mb'], 'MB')} after {n:,} sessions"
        if n != 1000:
            label += f" ({fmt_num(value, 'MB')} per 1,000)"
        rows.append({"figure": "RSS growth after 1,000 browser sessions opened and closed (Switchboard, "
                               f"{grace_text(sw.get('grace_s'))})",
                     "value": label, "baseline": base,
                     "ratio": fmt_num(value / lc["growth_per_1000_mb"], "x") + " load_chat's"
                     if lc and lc["growth_per_1000_mb"] > 0 else "",
                     "target": "≤ 30 MB", "result": verdict(value, TARGETS["rss_growth_mb"]), **num(value)})
    return rows


def gradio_limit(res: dict[str, Any]) -> str:
    """What the Gradio floor (a ChatInterface that only streams) measured in this run says about any chat UI
    on Gradio at the ramp's top step: the CPU its updates need, and the wait its submit chain makes."""
    sc = res.get("scenarios", {})
    ramp = sc.get("ramp", {})
    rows = [r for r in ramp.get("targets", {}).get("gf_ui") or [] if r["visitors"] == max(ramp.get("steps") or [0])]
    if not rows or not rows[0]["completed"]:
        return ""
    r = rows[0]
    n, per_update = r["visitors"], r["app_cpu_per_update_s"]
    needed = n * per_update / TARGETS["ramp_max_gap"]
    text = (f"**Where Gradio is the limit.** The Gradio floor at {n} visitors: TTFT p99 "
            f"{fmt_num(r['ttft_p99'], 's')}, longest gap {fmt_num(r['max_gap'], 'ms')}. It used "
            f"{fmt_num(per_update, 'ms')} of CPU per update it sent (all its CPU over its updates), so updating "
            f"{n} visitors every {fmt_num(TARGETS['ramp_max_gap'], 'ms')} would take {needed:.2f} CPU-seconds a "
            "second, and Gradio runs every event on one event loop, which one core at most can serve.")
    chain = sc.get("ttft", {}).get("targets", {}).get("gf_ui", {}).get("before_reply_step_p50")
    if chain:
        text += (f" Its submit chain spends {fmt_num(chain, 'ms')} before the reply step starts for one visitor at "
                 f"rest (time to first token scenario); {n} visitors arriving at once are served in turn, about "
                 f"{fmt_num(n * chain, 's')} for the last one's chain alone.")
    return text


def markdown(res: dict[str, Any], images: list[str]) -> str:
    meta = res.get("meta", {})
    m = meta.get("machine", {})
    o = meta.get("options", {})
    sc = res.get("scenarios", {})
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

    ttft = sc.get("ttft", {})
    if ttft.get("targets"):
        L.append("## Time to first token, one visitor")
        L.append("")
        L.append(f"Sequential messages, {ttft['rounds']} rounds of {ttft['samples_per_round']} per path, paths "
                 f"interleaved; {ttft['reply_tokens']}-token replies, no upstream delay. Time from the visitor "
                 "sending (the first HTTP request of the path) to the first reply text it receives. p50/p99 per "
                 "round, then median (min – max) over rounds; 'added' is paired with the upstream floor's round. "
                 "A chat UI path runs the textbox's submit chain as the browser does (each step's followers "
                 "sent at once when it ends, one queue stream per page); 'before the reply step' is the p50 "
                 "time from sending to the request that starts the reply, spent in the chain's earlier steps.")
        L.append("")
        L += _table(["Path", "TTFT p50", "TTFT p99", "Added p50", "Added p99", "Before the reply step",
                     "First message after start", "Errors"],
                    [[SHORT[k], fmt_summary(t["p50"], "ms"), fmt_summary(t["p99"], "ms"),
                      fmt_summary(t["added_p50"], "ms"), fmt_summary(t["added_p99"], "ms"),
                      fmt_num(t["before_reply_step_p50"], "ms") if t.get("before_reply_step_p50") else "",
                      fmt_num(t["first_after_start"], "ms"), str(t["errors"])] for k, t in ttft["targets"].items()])
        L.append("")
    elif ttft.get("error"):
        L += ["## Time to first token", "", f"Failed: {ttft['error']}", ""]

    thr = sc.get("throughput", {})
    if thr.get("targets"):
        L.append("## Throughput of one stream")
        L.append("")
        L.append(f"A {thr['tokens']:,}-token reply with no upstream delay, {thr['runs']} runs per path. tokens/s = "
                 "reply tokens / (send → complete reply received). CPU is the app process's user+system time "
                 "(all threads) over the run; 'updates' are the distinct text updates the visitor received.")
        L.append("")
        L += _table(["Path", "tokens/s", "time", "App CPU s / 1k tokens", "Updates", "App CPU / update",
                     "Fake CPU s / 1k", "Client CPU s / 1k", "Errors"],
                    [[SHORT[k], fmt_summary(t.get("tokens_per_s", {}), "tok/s"), fmt_summary(t.get("seconds", {}), "s"),
                      fmt_summary(t.get("app_cpu_per_1k", {}), "s") if k != "sdk" else "(no app)",
                      fmt_summary(t.get("updates", {})),
                      fmt_summary(t.get("app_cpu_per_update_s", {}), "ms") if k != "sdk" else "",
                      fmt_summary(t.get("fake_cpu_per_1k", {}), "s"), fmt_summary(t.get("client_cpu_per_1k", {}), "s"),
                      str(t.get("errors", 0))] for k, t in thr["targets"].items()])
        L.append("")
        for k, t in thr["targets"].items():
            if t.get("error_examples"):
                L.append(f"- {SHORT[k]} errors: {t['error_examples']}")
        L.append("")

    ramp = sc.get("ramp", {})
    if ramp.get("targets"):
        L.append("## Concurrency ramp")
        L.append("")
        L.append(f"N visitors send at once; the upstream streams {ramp['reply_tokens']} tokens at "
                 f"{ramp['tps']:g} tokens/s to each (one stream ≈ {ramp['nominal_stream_s']:.1f} s). One run per "
                 "step; percentiles are across visitors. 'Total vs one' = (first send → last reply complete) / "
                 "the same path's 1-visitor time. 'Longest gap' = the longest wait between two text updates any "
                 "visitor saw after its first token. gr.load_chat runs one event at a time by default, so its "
                 "steps stop at a deadline; visitors not served by then count as incomplete and their TTFT as ∞. "
                 "load_chat unlimited (`default_concurrency_limit=None`, 512 threads) has the other paths' "
                 "deadline.")
        L.append("")
        rows_out = []
        for k, rows_k in ramp["targets"].items():
            for r in rows_k:
                rows_out.append([
                    SHORT[k], str(r["visitors"]), f"{r['completed']}/{r['n']}", fmt_num(r["ttft_p50"], "ms"),
                    fmt_num(r["ttft_p99"], "ms"),
                    f"{'> ' if r.get('censored') else ''}{fmt_num(r['wall_s'], 's')} "
                    f"({'> ' if r.get('censored') else ''}{fmt_num(r['vs_one_stream'], 'x')})",
                    fmt_num(r["max_gap"], "ms"), fmt_num(r["gap_p99"], "ms"),
                    fmt_num(r["app_cpu_s"], "s") if k != "sdk" else "",
                    fmt_num(r["app_cpu_per_update_s"], "ms") if k != "sdk" else "",
                    fmt_num(r["peak_rss_mb"], "MB") if k != "sdk" else "", fmt_num(r["fake_cpu_s"], "s"),
                    fmt_num(r["client_cpu_s"], "s")])
        L += _table(["Path", "Visitors", "Completed", "TTFT p50", "TTFT p99", "Total (vs one)", "Longest gap",
                     "Gap p99", "App CPU", "App CPU / update", "Peak RSS", "Fake CPU", "Client CPU"], rows_out)
        L.append("")
        limit = gradio_limit(res)
        if limit:
            L += [limit, ""]
        for k, rows_k in ramp["targets"].items():
            for r in rows_k:
                if r.get("error_examples"):
                    L.append(f"- {SHORT[k]} at {r['visitors']}: {r['error_examples'][:2]}")
        L.append("")

    hist = sc.get("history", {})
    if hist:
        L.append("## History cost per turn")
        L.append("")
        core = hist.get("core")
        if isinstance(core, list):
            L.append("In the core, in a process of its own, for one new turn (median over repetitions; each turn "
                     "is a ~50-token question and a ~150-token answer). Whole walk: clean_history on the whole "
                     "history + trim_history (count every message, cached, and trim). The app's path: "
                     "`Upstream.prepare` with the history as the client sends it (one walk from the newest message "
                     "back, stopping where the budget is full), with the model's whole window and with a "
                     "4,000-token prompt budget. Control: a fixed piece of work timed in the same cache state (it "
                     "should not change with the length).")
            L.append("")
            base = core[0]["total_s"]
            fitted = all("fit_total_s" in r for r in core)
            header = ["Turns", "Messages sent", "Prompt tokens", "Whole: clean_history", "trim_history",
                      "Total per turn", "vs first row"]
            if fitted:
                header += ["prepare (all fits)", "vs first row", "prepare (4,000-token budget)", "Messages sent",
                           "vs first row", "Same request", "Control"]
            rows_out = []
            for r in core:
                row = [f"{r['turns']:,}", str(r.get("messages")), f"{r.get('prompt_tokens') or 0:,}",
                       fmt_num(r["clean_s"], "ms"), fmt_num(r["prepare_s"], "ms"), fmt_num(r["total_s"], "ms"),
                       fmt_num(r["total_s"] / base, "x")]
                if fitted:
                    row += [fmt_num(r["fit_total_s"], "ms"),
                            fmt_num(r["fit_total_s"] / core[0]["fit_total_s"], "x"),
                            fmt_num(r["fit_budget_total_s"], "ms"), str(r.get("fit_budget_messages")),
                            fmt_num(r["fit_budget_total_s"] / core[0]["fit_budget_total_s"], "x"),
                            "yes" if r.get("fit_same_as_old") and r.get("fit_budget_same_as_old") else "NO",
                            fmt_num(r.get("fit_control_s", math.nan), "ms")]
                rows_out.append(row)
            L += _table(header, rows_out)
            L.append("")
        elif isinstance(core, dict):
            L += [f"Core measurement failed: {core.get('error')}", ""]
        app_rows = hist.get("app", {})
        if app_rows:
            L.append(f"Through the app, {hist['reply_tokens']}-token replies at {hist['tps']:g} tokens/s, "
                     f"{hist['reps']} turns per length after a warm-up turn. Chat UIs (Switchboard's and the bare "
                     "ChatInterface): one page whose conversation grows by a turn each time, the browser sending "
                     "the whole chat each turn, as Gradio's Chatbot does. /chat: one API client (one session, "
                     "as a gradio_client Client keeps) whose conversation grows the same way, the whole history "
                     "attached to each call. HTTP: a conversation of that length stored by the app, "
                     "each request carrying only the new message (`conversation_id`). The upstream floor sends the "
                     "same messages as /chat.")
            L.append("")
            out_rows = []
            for k, rows_k in app_rows.items():
                base = rows_k[0]["app_cpu"]["median"] if rows_k else math.nan
                for r in rows_k:
                    out_rows.append([SHORT[k], f"{r['turns']:,}", f"{r['payload_bytes'] / 1e6:.2f} MB",
                                     fmt_summary(r["ttft"], "ms"), fmt_summary(r["total"], "ms"),
                                     fmt_num(r.get("added_total", math.nan), "ms") if k != "sdk" else "",
                                     fmt_summary(r["app_cpu"], "ms") if k != "sdk" else "",
                                     fmt_num(r["app_cpu"]["median"] / base, "x") if k != "sdk" else "",
                                     str(r["errors"])])
            L += _table(["Path", "Turns", "History JSON", "TTFT", "Turn time", "Added vs floor", "App CPU / turn",
                         "CPU vs first row", "Errors"], out_rows)
            L.append("")

    mem = sc.get("memory", {})
    if mem.get("targets"):
        L.append("## Memory after closed sessions")
        L.append("")
        L.append(f"Each session is a browser visit: GET `/`, the heartbeat stream held open, one message "
                 f"through the chat UI's submit chain, then the heartbeat closed. {mem['sessions']:,} sessions, "
                 f"{mem['concurrency']} at a time, after a warm-up of the same kind; RSS read "
                 f"{mem.get('settle_s', 3):g} s after the last one closed. gr.load_chat with its defaults serves "
                 "one event at a time, so it gets fewer sessions and its growth is scaled to 1,000. The slope "
                 "over the second half is what grows with the number of closed sessions. Switchboard frees a "
                 "closed session's state `CHATBOT_SESSION_GRACE` seconds after its tab closed; it is measured "
                 "twice, each in a fresh process: at the default grace (600 s, longer than the run, so every "
                 "closed session is still held when RSS is read: what an operator sees during a burst) and at "
                 "2 s (what stays once the grace has passed). Gradio alone keeps closed sessions for an hour.")
        L.append("")
        L += _table(["App", "Session grace", "Sessions", "RSS before", "RSS after", "Growth", "Growth per 1,000",
                     "Slope, 2nd half, per 1,000", "App CPU / session", "Time", "Errors"],
                    [[SHORT[k], f"{t['grace_s']:g} s" if t.get("grace_s") is not None else "",
                      f"{t.get('sessions', mem['sessions']):,}", fmt_num(t["rss_before_mb"], "MB"),
                      fmt_num(t["rss_after_mb"], "MB"), fmt_num(t["growth_mb"], "MB"),
                      fmt_num(t["growth_per_1000_mb"], "MB"), fmt_num(t.get("slope_per_1000_mb", math.nan), "MB"),
                      fmt_num(t["app_cpu_per_session_s"], "ms"),
                      fmt_num(t["seconds"], "s"), str(t["errors"])] for k, t in mem["targets"].items()])
        L.append("")

    cold = sc.get("coldstart", {})
    if cold.get("samples"):
        L.append("## Cold start")
        L.append("")
        L.append("Process start to the first 200 on `/`, for every launch in this run (apps are launched one "
                 "at a time with nothing else running).")
        L.append("")
        rows_c = [[name, fmt_summary(cold.get(key, {}), "s"), ", ".join(f"{x:.2f}" for x in samples)]
                  for name, key, samples in (("Switchboard (`python app.py`)", "switchboard",
                                              cold["samples"].get("switchboard", [])),
                                             ("gr.load_chat", "load_chat", cold["samples"].get("load_chat", [])),
                                             ("bare gr.Blocks (Gradio's floor)", "bare", cold.get("bare_gradio", [])))
                  if samples]
        L += _table(["App", "Median (min – max)", "Samples (s)"], rows_c)
        L.append("")
        if cold.get("idle_cpu"):
            L.append("Idle CPU (no visitor, measured over " + f"{cold.get('idle_window_s', 3):g} s): " + "; ".join(
                f"{name} {value * 100:.1f} % of a core" for name, value in cold["idle_cpu"].items()) + ".")
            L.append("")

    from .replicas_report import section as replicas_section

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


# --------------------------------------------------------------------------- plots

COLORS = {"sdk": "#555555", "sw_ui": "#1f77b4", "sw_api": "#17becf", "sw_http": "#2ca02c", "lc_ui": "#d62728",
          "lc_api": "#ff7f0e", "lu_ui": "#e377c2", "gf_ui": "#9467bd", "sw_ui_grace2": "#aec7e8"}
COLORS.update({BEFORE + "sw_ui": "#6b6ecf", BEFORE + "sw_api": "#9edae5", BEFORE + "sw_http": "#98df8a",
               BEFORE + "sw_ui_grace2": "#c5b0d5"})  # the --before checkout's paths


def plots(res: dict[str, Any], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sc = res.get("scenarios", {})
    made: list[str] = []

    def save(fig, name: str) -> None:
        path = out / name
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(str(path))

    ttft = sc.get("ttft", {}).get("targets")
    if ttft:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        keys = list(ttft)
        data = [[x * 1000 for x in ttft[k]["all"]] or [math.nan] for k in keys]
        bp = ax.boxplot(data, whis=(1, 99), showfliers=True, patch_artist=True)
        for patch, k in zip(bp["boxes"], keys, strict=False):
            patch.set_facecolor(COLORS[k])
            patch.set_alpha(0.6)
        ax.set_xticks(range(1, len(keys) + 1), [SHORT[k] for k in keys], rotation=15)
        sdk = ttft.get("sdk", {}).get("p50", {}).get("median")
        if sdk:
            ax.axhline(sdk * 1000 + 30, color="green", linestyle="--", label="target: floor p50 + 30 ms")
            ax.legend()
        ax.set_ylabel("time to first token (ms)")
        ax.set_title("Time to first token, one visitor (whiskers p1–p99)")
        save(fig, "ttft.png")

    thr = sc.get("throughput", {}).get("targets")
    if thr:
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
        keys = list(thr)

        def bars(ax, field, scale=1.0):
            med = [thr[k].get(field, {}).get("median", math.nan) * scale for k in keys]
            lo = [m - thr[k].get(field, {}).get("min", math.nan) * scale for k, m in zip(keys, med, strict=False)]
            hi = [thr[k].get(field, {}).get("max", math.nan) * scale - m for k, m in zip(keys, med, strict=False)]
            ax.bar(range(len(keys)), med, yerr=[lo, hi], color=[COLORS[k] for k in keys], capsize=4)
            ax.set_xticks(range(len(keys)), [SHORT[k] for k in keys], rotation=25, ha="right")

        bars(a1, "tokens_per_s")
        a1.axhline(5000, color="green", linestyle="--", label="target 5,000 tok/s")
        a1.set_ylabel("tokens/s delivered")
        a1.legend()
        a1.set_title(f"One stream, {sc['throughput']['tokens']:,} tokens, no delay")
        keys_app = [k for k in keys if k != "sdk"]
        med = [thr[k].get("app_cpu_per_1k", {}).get("median", math.nan) for k in keys_app]
        a2.bar(range(len(keys_app)), med, color=[COLORS[k] for k in keys_app])
        a2.set_xticks(range(len(keys_app)), [SHORT[k] for k in keys_app], rotation=25, ha="right")
        a2.set_ylabel("app CPU seconds per 1,000 tokens")
        a2.set_title("App CPU per 1,000 tokens")
        save(fig, "throughput.png")

    ramp = sc.get("ramp", {}).get("targets")
    if ramp:
        fig, axes = plt.subplots(2, 2, figsize=(11, 8))
        (a1, a2), (a3, a4) = axes
        for k, rows in ramp.items():
            x = [r["visitors"] for r in rows]
            cap = lambda v, r: v if not math.isinf(v) else r["deadline_s"]  # noqa: E731
            a1.plot(x, [cap(r["ttft_p99"], r) for r in rows], marker="o", color=COLORS[k], label=f"{SHORT[k]} p99")
            a1.plot(x, [cap(r["ttft_p50"], r) for r in rows], marker=".", linestyle=":", color=COLORS[k])
            a2.plot(x, [r["vs_one_stream"] for r in rows], marker="o", color=COLORS[k], label=SHORT[k])
            a3.plot(x, [r["max_gap"] for r in rows], marker="o", color=COLORS[k], label=SHORT[k])
            if k != "sdk":
                a4.plot(x, [r["app_cpu_s"] for r in rows], marker="o", color=COLORS[k], label=SHORT[k])
        a1.axhline(1.0, color="green", linestyle="--", label="target p99 1 s")
        a2.axhline(1.5, color="green", linestyle="--", label="target 1.5×")
        a3.axhline(0.5, color="green", linestyle="--", label="target 500 ms")
        for ax, title, ylabel in ((a1, "TTFT p99 (solid) and p50 (dotted); ∞ drawn at the deadline", "seconds"),
                                  (a2, "Total time vs one stream", "ratio"),
                                  (a3, "Longest gap between updates", "seconds"),
                                  (a4, "App CPU seconds per step", "CPU seconds")):
            ax.set_xscale("log")
            ax.set_xlabel("simultaneous visitors")
            ax.set_ylabel(ylabel)
            ax.set_title(title, fontsize=10)
            ax.legend(fontsize=7)
        a1.set_yscale("log")
        save(fig, "ramp.png")

    hist = sc.get("history", {})
    if isinstance(hist.get("core"), list) or hist.get("app"):
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5))
        core = hist.get("core")
        if isinstance(core, list):
            x = [r["turns"] for r in core]
            a1.plot(x, [r["total_s"] * 1000 for r in core], marker="o", label="total")
            if "fit_total_s" in core[0]:
                a1.plot(x, [r["fit_total_s"] * 1000 for r in core], marker="o", label="prepare (all fits)")
                a1.plot(x, [r["fit_budget_total_s"] * 1000 for r in core], marker="o", label="prepare (4k budget)")
            a1.plot(x, [r["clean_s"] * 1000 for r in core], marker=".", linestyle=":", label="clean_history")
            a1.plot(x, [r["prepare_s"] * 1000 for r in core], marker=".", linestyle=":", label="prepare")
            a1.plot(x, [core[0]["total_s"] * 2000] * len(x), color="green", linestyle="--", label="target 2× at 10")
            a1.set_xscale("log")
            a1.set_yscale("log")
            a1.set_xlabel("turns in the conversation")
            a1.set_ylabel("ms per turn")
            a1.set_title("Core: cost per turn", fontsize=10)
            a1.legend(fontsize=8)
        for k, rows in (hist.get("app") or {}).items():
            x = [r["turns"] for r in rows]
            if k == "sdk":
                a2.plot(x, [r["total"]["median"] * 1000 for r in rows], marker="o", color=COLORS[k],
                        label=f"{SHORT[k]} turn time")
            else:
                a2.plot(x, [r["app_cpu"]["median"] * 1000 for r in rows], marker="o", color=COLORS[k],
                        label=f"{SHORT[k]} app CPU / turn")
                a2.plot(x, [r["total"]["median"] * 1000 for r in rows], marker=".", linestyle=":", color=COLORS[k],
                        label=f"{SHORT[k]} turn time")
        a2.set_xscale("log")
        a2.set_yscale("log")
        a2.set_xlabel("turns in the conversation")
        a2.set_ylabel("ms")
        a2.set_title("Through the app", fontsize=10)
        a2.legend(fontsize=7)
        save(fig, "history.png")

    mem = sc.get("memory", {}).get("targets")
    if mem:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for k, t in mem.items():
            xs = [c[0] for c in t["curve"]]
            ys = [c[1] - t["curve"][0][1] for c in t["curve"]]
            ax.plot(xs, ys, marker="o", color=COLORS[k], label=SHORT[k])
        n = sc["memory"]["sessions"]
        ax.plot([0, n], [0, 30 * n / 1000], color="green", linestyle="--", label="target: 30 MB per 1,000")
        ax.set_xlabel("sessions opened and closed")
        ax.set_ylabel("RSS growth (MB)")
        ax.set_title("Memory after closed sessions", fontsize=10)
        ax.legend(fontsize=8)
        save(fig, "memory.png")
    return made
