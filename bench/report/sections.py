"""The sections of results.md after the Headlines, one per scenario (a table and how it was measured), and
the longest gaps under load."""

from __future__ import annotations

import math
from typing import Any

from bench.report.headline_rows import GAP_STEPS, TARGETS
from bench.scenarios.paths import SHORT
from bench.stats import fmt_num, fmt_summary


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


def ttft_section(sc: dict[str, Any]) -> list[str]:
    """## Time to first token, one visitor (or the scenario's failure)."""
    L: list[str] = []
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
    return L


def throughput_section(sc: dict[str, Any]) -> list[str]:
    """## Throughput of one stream."""
    L: list[str] = []
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
    return L


def ramp_section(res: dict[str, Any]) -> list[str]:
    """## Concurrency ramp, then where Gradio is the limit."""
    sc = res.get("scenarios", {})
    L: list[str] = []
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
    return L


def history_section(sc: dict[str, Any]) -> list[str]:
    """## History cost per turn: in the core, then through the app."""
    L: list[str] = []
    hist = sc.get("history", {})
    if hist:
        L.append("## History cost per turn")
        L.append("")
        L += _history_core_lines(hist.get("core"))
        L += _history_app_lines(hist)
    return L


def _history_core_lines(core: Any) -> list[str]:
    """The core's cost per turn at each length (or its failure)."""
    L: list[str] = []
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
    return L


def _history_app_lines(hist: dict[str, Any]) -> list[str]:
    """Each path's cost per turn through the app at each length."""
    L: list[str] = []
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
    return L

def memory_section(sc: dict[str, Any]) -> list[str]:
    """## Memory after closed sessions."""
    L: list[str] = []
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
    return L


def coldstart_section(sc: dict[str, Any]) -> list[str]:
    """## Cold start, and the apps' idle CPU."""
    L: list[str] = []
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
    return L
