"""Smoke test of the benchmark suite: ``python -m bench --quick`` runs end to end and writes its table.

No timing assertions: the performance goals live in the benchmark's own output (PASS/MISS per target).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_writes_its_table_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATBOT_", "OPENAI_", "REDIS_URL"))}
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    table = (out / "results.md").read_text(encoding="utf-8")
    assert "## Headlines" in table
    assert "| Figure | Switchboard | Baseline (same run) | Ratio | Target | Result |" in table
    for scenario in ("Time to first token", "Throughput of one stream", "Concurrency ramp",
                     "History cost per turn", "Memory after closed sessions", "Cold start"):
        assert f"## {scenario}" in table, f"missing section {scenario!r}"
    assert "failed:" not in table, table  # no scenario crashed
    assert "PASS" in table or "MISS" in table
    assert table.strip() in proc.stdout  # the table is printed too

    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert set(results["scenarios"]) >= {"ttft", "throughput", "ramp", "history", "memory", "coldstart"}
    assert results["scenarios"]["ttft"]["targets"]["sdk"]["errors"] == 0

    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {"ttft.png", "throughput.png", "ramp.png"} <= set(pngs), pngs
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
