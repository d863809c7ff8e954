"""Markdown for the replicas scenario (bench/replicas.py): its own document (docs/benchmarks/replicas.md,
written when ``--only replicas`` runs) or a section of results.md (when it runs beside other scenarios)."""

from __future__ import annotations

import math
from typing import Any

from .replicas import DIRECT, GAP_TARGET, TTFT_P99_TARGET
from .stats import fmt_num


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def setup_name(setup: str) -> str:
    if setup == DIRECT:
        return "1 process, no balancer"
    count = int(setup.split("-")[1])
    return f"haproxy, {count} replica{'s' if count > 1 else ''}"


def verdict(row: dict[str, Any]) -> str:
    ok = (row["errors"] == 0 and row["completed"] == row["n"] and not row.get("cut_streams")
          and row["ttft_p99"] <= TTFT_P99_TARGET and not math.isnan(row["max_gap"]) and row["max_gap"] <= GAP_TARGET)
    return "PASS" if ok else "MISS"


def _ratio(value: float, base: float) -> str:
    if not base or math.isnan(base) or math.isnan(value) or math.isinf(value) or math.isinf(base):
        return "n/a"
    return f"{value / base:.2f}×"


def section(res: dict[str, Any], level: str = "##") -> list[str]:
    """The replicas scenario's section (none when it did not run): how it was measured, the table, notes."""
    rep = res.get("scenarios", {}).get("replicas", {})
    L: list[str] = []
    if not rep.get("setups"):
        return L
    setups = rep["setups"]
    top = max(rep["visitors"])
    nominal = rep["reply_tokens"] / rep["tps"]  # seconds one stream takes at the upstream's pace
    counts = ", ".join(str(int(k.split("-")[1])) for k in setups if k != DIRECT)
    L.append(f"{level} The chat tab through a load balancer: 1 process against {counts} replicas")
    L.append("")
    L.append(f"Each visitor opens the page (`GET /`, before the clock starts; it keeps the cookies of that "
             f"response, as a browser does), then all send one message at once and follow the chat tab's "
             f"submit chain with their own cookie (the balancer's sticky cookie routes every request of a "
             f"page, its queue stream included, to the replica that holds its session). Upstream paced at "
             f"{rep['tps']:g} tokens/s, {rep['reply_tokens']}-token replies. Balancer: Debian's haproxy with "
             f"`deploy/haproxy.cfg` as it is; replicas: `python app.py` with `REDIS_URL` on one redis-server, "
             f"`CHATBOT_BROWSER_SECRET` equal on all and `CHATBOT_TRUSTED_PROXIES=1`; the 1-process baseline "
             f"is the same app on the same Redis, visited on its own port. "
             + ("Fresh processes for every setup." if rep.get("fresh") else "Processes reused across setups."))
    L.append("")
    L.append(f"Target (issue 17): with replicas, at {top} visitors, TTFT p99 ≤ {TTFT_P99_TARGET * 1000:.0f} ms, "
             f"no gap over {GAP_TARGET * 1000:.0f} ms between two pieces, 0 errors.")
    L.append("")
    L += _table(["Setup", "Visitors", "Completed", "Errors", "Queue streams cut", "TTFT p50", "TTFT p99",
                 "Longest gap", "Gap p99",
                 "vs 1 process (TTFT p99 / gap)", "Wall", "Replicas' CPU", "Per visitor", "haproxy CPU", "Client CPU",
                 "Cores needed",
                 "Visitors per replica", "Target"], _rows(setups, top, nominal))
    L.append("")
    L += _explanations(nominal)
    examples = sorted({e for steps in setups.values() for r in steps for e in r.get("error_examples", [])})
    if examples:
        L.append("Errors seen: " + "; ".join(f"`{e}`" for e in examples[:4]) + ".")
        L.append("")
    return L


def _rows(setups: dict[str, list[dict[str, Any]]], top: int, nominal: float) -> list[list[str]]:
    """One row per setup and step, each balanced setup beside the 1-process baseline at the same step."""
    direct = {r["visitors"]: r for r in setups.get(DIRECT, [])}
    rows = []
    for setup, steps in setups.items():
        for r in steps:
            base = direct.get(r["visitors"], {})
            vs = (f"{_ratio(r['ttft_p99'], base.get('ttft_p99', math.nan))} / "
                  f"{_ratio(r['max_gap'], base.get('max_gap', math.nan))}") if setup != DIRECT else ""
            cpu = r["app_cpu_s"]
            spent = sum(cpu) + (0 if math.isnan(r["haproxy_cpu_s"]) else r["haproxy_cpu_s"]) + r["client_cpu_s"]
            rows.append([setup_name(setup), str(r["visitors"]), f"{r['completed']}/{r['n']}", str(r["errors"]),
                         str(r.get("cut_streams", "")),
                         fmt_num(r["ttft_p50"], "ms"), fmt_num(r["ttft_p99"], "ms"), fmt_num(r["max_gap"], "ms"),
                         fmt_num(r["gap_p99"], "ms"), vs, fmt_num(r["wall_s"], "s"),
                         " + ".join(f"{c:.1f}" for c in cpu) + " s", f"{sum(cpu) / r['visitors'] * 1000:.0f} ms",
                         fmt_num(r["haproxy_cpu_s"], "s"),
                         fmt_num(r["client_cpu_s"], "s"), f"{spent / nominal:.2f}",
                         ", ".join(f"{k} {v}" for k, v in r["per_replica"].items()) if setup != DIRECT else "",
                         f"**{verdict(r)}**" if setup != DIRECT and r["visitors"] == top else ""])
    return rows


def _explanations(nominal: float) -> list[str]:
    """What the table's derived columns mean."""
    L: list[str] = []
    L.append("Per visitor: the replicas' CPU in the step divided by its visitors (the app's cost of one "
             "message and its reply, the chain's steps included).")
    L.append("")
    L.append(f"Cores needed: the CPU the replicas, haproxy and the benchmark's client spent in the step, per "
             f"second of the {nominal:g} s the replies take at the upstream's pace: above the machine's cores, "
             "the step cannot keep that pace whatever the number of replicas (the fake upstream and Redis need "
             "some too).")
    L.append("")
    L.append("Queue streams cut: a page's queue stream that ended before Gradio's `close_stream` while its "
             "event was still pending (what a replica that does not hold the session does); the benchmark's "
             "client reopens it, Gradio's front end would show an error, so the target counts them as errors.")
    L.append("")
    return L


def document(res: dict[str, Any]) -> str:
    """docs/benchmarks/replicas.md: the run's command, machine and load, then the section."""
    meta = res.get("meta", {})
    m = meta.get("machine", {})
    mode = "quick" if meta.get("options", {}).get("quick") else "full"
    L = [f"# Switchboard benchmark: replicas behind a load balancer ({mode} mode)", "",
         f"`{meta.get('command', 'python -m bench --only replicas')}` on {meta.get('date', '')}, took "
         f"{meta.get('duration_s', 0):.0f} s. Machine: {m.get('cpu', '?')}, {m.get('logical_cores')} logical cores, "
         f"{m.get('memory_gb')} GB; Python {m.get('python')}, Gradio {m.get('gradio')}. Load average at start "
         f"{m.get('load_average')}, at end {meta.get('load_average_end')}. Everything (fake upstream, redis-server, "
         "haproxy, every replica and the benchmark's own asyncio clients) shares this machine's cores.", ""]
    L += section(res)
    for note in res.get("notes", []):
        L.append(f"- {note}")
    failed = res.get("scenarios", {}).get("replicas", {}).get("error")
    if failed:
        L.append(f"Scenario **replicas** failed: `{failed}`")
    return "\n".join(L).rstrip() + "\n"
