"""The PNG plots of results.md (matplotlib, Agg), one chart per scenario."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.scenarios.paths import BEFORE, SHORT

COLORS = {"sdk": "#555555", "sw_ui": "#1f77b4", "sw_api": "#17becf", "sw_http": "#2ca02c", "lc_ui": "#d62728",
          "lc_api": "#ff7f0e", "lu_ui": "#e377c2", "gf_ui": "#9467bd", "sw_ui_grace2": "#aec7e8"}
COLORS.update({BEFORE + "sw_ui": "#6b6ecf", BEFORE + "sw_api": "#9edae5", BEFORE + "sw_http": "#98df8a",
               BEFORE + "sw_ui_grace2": "#c5b0d5"})  # the --before checkout's paths


def plots(res: dict[str, Any], out: Path) -> list[str]:
    """Each scenario's chart saved into ``out``; the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sc = res.get("scenarios", {})
    made: list[str] = []
    for name, chart in CHARTS:
        fig = chart(plt, sc)
        if fig is None:
            continue
        path = out / name
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(str(path))
    return made


def ttft_chart(plt: Any, sc: dict[str, Any]) -> Any:
    """Time to first token, one visitor: every path's spread (whiskers p1–p99). None: not measured."""
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
        return fig
    return None


def throughput_chart(plt: Any, sc: dict[str, Any]) -> Any:
    """One stream: tokens/s delivered, and the app's CPU per 1,000 tokens. None: not measured."""
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
        return fig
    return None


def ramp_chart(plt: Any, sc: dict[str, Any]) -> Any:
    """The ramp: TTFT, total time vs one stream, longest gap and app CPU per step. None: not measured."""
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
        return fig
    return None


def history_chart(plt: Any, sc: dict[str, Any]) -> Any:
    """History cost per turn: in the core, and through the app. None: not measured."""
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
        return fig
    return None


def memory_chart(plt: Any, sc: dict[str, Any]) -> Any:
    """RSS growth as sessions open and close. None: not measured."""
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
        return fig
    return None


CHARTS = (("ttft.png", ttft_chart), ("throughput.png", throughput_chart), ("ramp.png", ramp_chart),
          ("history.png", history_chart), ("memory.png", memory_chart))
