"""Small statistics helpers: percentiles, (median, min, max) summaries, formatting."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); inf values (censored observations) sort last."""
    data = sorted(values)
    if not data:
        return math.nan
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    if math.isinf(data[hi]) or math.isinf(data[lo]):
        return data[hi] if pos - lo > 0 else data[lo]
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def summary(values: Iterable[float]) -> dict[str, float]:
    """{"median", "min", "max", "n"} of the finite-or-inf values (NaN ignored)."""
    data = [v for v in values if v is not None and not math.isnan(v)]
    if not data:
        return {"median": math.nan, "min": math.nan, "max": math.nan, "n": 0}
    return {"median": statistics.median(data), "min": min(data), "max": max(data), "n": len(data)}


def fmt_num(value: float, unit: str = "", digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if math.isinf(value):
        return "∞"
    if unit == "ms":
        return f"{value * 1000:.1f} ms" if abs(value) < 10 else f"{value * 1000:,.0f} ms"
    if unit == "s":
        return f"{value:.2f} s" if abs(value) < 100 else f"{value:,.0f} s"
    if unit == "x":
        return f"{value:.2f}×"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "%":
        return f"{value:.0f} %"
    if abs(value) >= 1000:
        return f"{value:,.0f}{(' ' + unit) if unit else ''}"
    return f"{value:.{digits}g}{(' ' + unit) if unit else ''}"


def fmt_summary(s: dict[str, float], unit: str = "") -> str:
    """"median (min–max)", or just the value when there was one run."""
    if not s or s.get("n", 0) == 0:
        return "n/a"
    if s["n"] == 1 or s["min"] == s["max"]:
        return fmt_num(s["median"], unit)
    return f"{fmt_num(s['median'], unit)} ({fmt_num(s['min'], unit)} – {fmt_num(s['max'], unit)})"
