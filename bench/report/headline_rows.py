"""The Headlines of results.md: one row per figure (figure, Switchboard's value, the baselines of the same
run, ratio, target, PASS/MISS), and each row's number for the Before/after table (bench/beforeafter.py)."""

from __future__ import annotations

import math
from typing import Any

from bench.procs import DEFAULT_SESSION_GRACE
from bench.scenarios.paths import SHORT
from bench.stats import fmt_num, fmt_summary

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
    return [*ttft_headlines(sc), *throughput_headlines(sc), *ramp_headlines(sc), *history_core_headlines(sc),
            *history_app_headlines(sc), *memory_headlines(sc.get("memory", {})), *coldstart_headlines(sc)]


def ttft_headlines(sc: dict[str, Any]) -> list[dict[str, Any]]:
    """Added TTFT p50 and p99 over the upstream floor, one visitor, for each Switchboard path."""
    rows: list[dict[str, Any]] = []
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
    return rows


def throughput_headlines(sc: dict[str, Any]) -> list[dict[str, Any]]:
    """One stream's tokens/s, and the app's CPU per 1,000 tokens beside load_chat's."""
    rows: list[dict[str, Any]] = []
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
    return rows


def ramp_headlines(sc: dict[str, Any]) -> list[dict[str, Any]]:
    """The ramp's top step for each Switchboard path (failures, time vs one stream, TTFT p99, longest gap),
    then the longest gap at the other GAP_STEPS."""
    rows: list[dict[str, Any]] = []
    ramp = sc.get("ramp", {}).get("targets", {})
    if ramp:
        top = max(sc["ramp"]["steps"])

        def at_top(key: str) -> dict | None:
            rows_k = ramp.get(key) or []
            found = [r for r in rows_k if r["visitors"] == top]
            return found[0] if found else None

        lc, lu, sdk, floor = at_top("lc_ui"), at_top("lu_ui"), at_top("sdk"), at_top("gf_ui")

        def base_txt(field: str, unit: str) -> str:
            return _ramp_baseline(field, unit, lc, lu, sdk, floor)


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
    return rows


def _ramp_baseline(field: str, unit: str, lc: dict | None, lu: dict | None, sdk: dict | None,
                   floor: dict | None) -> str:
    """A ramp headline's baseline: ``field`` at the top step for load_chat (both variants), the upstream
    and the Gradio floor."""
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


def history_core_headlines(sc: dict[str, Any]) -> list[dict[str, Any]]:
    """History cost per turn in the core, the longest conversation against the shortest."""
    rows: list[dict[str, Any]] = []
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
    return rows


def history_app_headlines(sc: dict[str, Any]) -> list[dict[str, Any]]:
    """History cost per turn through the app (its CPU), the longest conversation against the shortest."""
    hist = sc.get("history", {})
    rows: list[dict[str, Any]] = []
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
    return rows


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


def coldstart_headlines(sc: dict[str, Any]) -> list[dict[str, Any]]:
    """Cold start of `python app.py`, beside load_chat's and a bare gr.Blocks'."""
    rows: list[dict[str, Any]] = []
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
