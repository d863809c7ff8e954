"""The Before/after table of a ``python -m bench --before REV_OR_DIR`` run: every headline worked out for the
old checkout's Switchboard and for this tree's, from the same run, with the after/before ratio.

Each side is a view of the results in which that side's paths take the Switchboard keys (``sw_ui``,
``sw_api``, ``sw_http``, ``sw_ui_grace2``; the old tree's are stored as ``before_sw_ui`` ...), so both go
through the same ``report.headlines`` and pair up by figure. Baselines (upstream floor, load_chat, Gradio
floor) are the same processes for both sides.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from .scenarios import BEFORE

SW_PATHS = ("sw_ui", "sw_api", "sw_http", "sw_ui_grace2")
# A figure measured once (a ramp step, a memory run) is "within noise" when after/before is within this
# fraction of 1; figures with min – max over repeated runs are within noise when the ranges overlap.
SINGLE_SAMPLE_NOISE = 0.25
REPEATED_NOISE = 0.10  # and repeated figures whose ranges do not overlap, but within this of 1 (tight ranges)


def _pick(paths: dict[str, Any], prefix: str) -> dict[str, Any]:
    """``paths`` (keyed by path) with ``prefix``'s Switchboard paths under the plain keys, the others' gone."""
    out = {k: v for k, v in paths.items() if not k.startswith(BEFORE) and k not in SW_PATHS}
    for k in SW_PATHS:
        if prefix + k in paths:
            out[k] = paths[prefix + k]
    return out


def side(res: dict[str, Any], before: bool) -> dict[str, Any]:
    """The results as if only one side's Switchboard had been measured (``before``: the old checkout's)."""
    prefix = BEFORE if before else ""
    view = copy.deepcopy(res)
    for data in view.get("scenarios", {}).values():
        if not isinstance(data, dict):
            continue
        for field in ("targets", "app"):  # per-path figures; history's through-the-app rows are under "app"
            if isinstance(data.get(field), dict):
                data[field] = _pick(data[field], prefix)
    hist = view.get("scenarios", {}).get("history")
    if isinstance(hist, dict):
        core_before = hist.pop("core_before", None)
        if before:
            hist["core"] = core_before
    cold = view.get("scenarios", {}).get("coldstart")
    if isinstance(cold, dict):
        mine = cold.pop("switchboard_before", None)
        if before:
            cold["switchboard"] = mine or {}
    return view


def judge(b: dict[str, Any], a: dict[str, Any]) -> tuple[float, str]:
    """(after/before, verdict): "better", "worse", "within noise", "same" or "n/a". The ratio is n/a for a
    figure that is not positive before (an added latency at or below the floor's)."""
    x, y = b.get("num", math.nan), a.get("num", math.nan)
    if x is None or y is None or math.isnan(x) or math.isnan(y):
        return math.nan, "n/a"
    if x == y:
        return (1.0 if x > 0 else math.nan), "same"
    ratio = y / x if x > 0 and y >= 0 else math.nan
    improved = (y < x) if a.get("better", "lower") == "lower" else (y > x)
    repeated = a.get("n", 1) > 1 and b.get("n", 1) > 1
    if repeated and a["lo"] <= b["hi"] and b["lo"] <= a["hi"]:  # repeated runs: overlapping ranges are noise
        return ratio, "within noise"
    if not math.isnan(ratio) and abs(ratio - 1) <= (REPEATED_NOISE if repeated else SINGLE_SAMPLE_NOISE):
        return ratio, "within noise"
    return ratio, "better" if improved else "worse"


def rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per headline figure either side has: figure, before, after, ratio, verdict, results."""
    from .report import headlines

    before = {r["figure"]: r for r in headlines(side(res, True))}
    after = {r["figure"]: r for r in headlines(side(res, False))}
    out = []
    for figure in [*after, *(f for f in before if f not in after)]:
        b, a = before.get(figure, {}), after.get(figure, {})
        ratio, verdict = judge(b, a) if a and b else (math.nan, "n/a")
        out.append({"figure": figure, "before": b.get("value", "not measured"),
                    "after": a.get("value", "not measured"), "ratio": ratio, "verdict": verdict,
                    "target": a.get("target") or b.get("target", ""), "before_result": b.get("result", ""),
                    "after_result": a.get("result", "")})
    return out


def section(res: dict[str, Any]) -> list[str]:
    """The markdown lines of the "Before/after" section (none when the run had no --before)."""
    from .report import _table
    from .stats import fmt_num

    meta = res.get("meta", {})
    if not meta.get("before"):
        return []
    b, a = meta["before"], meta.get("after", {})
    lines = ["## Before/after", "",
             f"Before: `{b.get('commit') or b.get('spec')}` (`--before {b.get('spec')}`, run from its own checkout "
             f"with its own `chatbot` package); after: `{a.get('commit') or 'this tree'}`. Both ran in this run, on "
             "the same fake upstream with the same settings, each Switchboard path measured right after its twin. "
             "After/before < 1 is lower (better for times, CPU, memory, failures; worse for tokens/s). Verdict: "
             "figures with (min – max) over repeated runs are within noise when the two ranges overlap or "
             f"after/before is within ±{REPEATED_NOISE:.0%}; figures measured once (ramp steps, memory, history "
             f"through the app) when after/before is within ±{SINGLE_SAMPLE_NOISE:.0%}. The machine's load "
             "(see the preamble) moves single figures more than that: read a \"worse\" there as a figure to "
             "re-measure, not as a verdict.", ""]
    table = [[r["figure"], r["before"], r["after"], fmt_num(r["ratio"], "x"), r["target"],
              r["before_result"], r["after_result"], f"**{r['verdict']}**" if r["verdict"] == "worse"
              else r["verdict"]] for r in rows(res)]
    lines += _table(["Figure", "Before", "After", "After/before", "Target", "Before: result", "After: result",
                     "Verdict"], table)
    worse = [r["figure"] for r in rows(res) if r["verdict"] == "worse"]
    lines += ["", f"Worse beyond noise: {len(worse)} of {len(table)} figures"
              + (": " + "; ".join(worse) if worse else "") + ".", ""]
    return lines
