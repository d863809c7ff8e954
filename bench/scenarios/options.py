"""What a benchmark run measures and with which counts (``python -m bench``'s options, see ``--help``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import ROOT

SCENARIOS = ("ttft", "throughput", "ramp", "history", "memory", "coldstart", "replicas")
DEFAULT_SCENARIOS = SCENARIOS[:-1]  # replicas only when asked for (--only replicas): it writes replicas.md
START_TIMEOUT = 300.0  # seconds for an app to answer on / (a loaded 2-core machine, several apps starting at once)
SYSTEM_PROMPT = "You are a helpful assistant. Be concise and direct."  # Switchboard's default, for the floor


@dataclass
class Options:
    quick: bool = False
    out: Path = ROOT / "docs" / "benchmarks"
    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    chunk_size: int = 4
    ttft_rounds: int = 3
    ttft_samples: int = 40
    ttft_reply_tokens: int = 20
    throughput_tokens: int = 4000
    throughput_runs: int = 3
    ramp: tuple[int, ...] = (1, 25, 50, 100, 200)
    ramp_tps: float = 20.0
    ramp_reply_tokens: int = 200
    # load_chat (defaults) last: the visitors it has not served by its deadline stay queued in it for a while
    ramp_targets: tuple[str, ...] = ("sdk", "sw_ui", "sw_http", "sw_api", "lu_ui", "gf_ui", "lc_ui")
    lc_deadline_factor: float = 1.5
    history_core_turns: tuple[int, ...] = (10, 100, 500, 1000, 2000)
    history_core_reps: int = 20
    history_app_turns: tuple[int, ...] = (10, 100, 1000, 2000)
    history_app_reps: int = 5
    history_reply_tokens: int = 20
    history_tps: float = 100.0
    sessions: int = 1000
    session_concurrency: int = 20
    memory_warmup: int = 200  # same concurrency: the allocator's working set is reached before measuring
    memory_baselines: tuple[str, ...] = ("lc_ui", "lu_ui")  # beside Switchboard at its default grace and at 2 s
    memory_baseline_sessions: int = 300  # gr.load_chat serves one event at a time: fewer, scaled per 1,000
    extra_cold_starts: int = 1
    fresh_apps: bool = True  # restart the apps before the ramp and the memory scenario
    keep_logs: bool = False
    app_script: str = "app.py"
    before: str | None = None  # a checkout (directory or git revision) measured beside this tree, same run
    warmups: int = 3
    memory_settle_s: float = 3.0
    parallel_start: bool = False  # start both apps at once (quick mode: faster, cold start less clean)
    render: Path | None = None  # only re-render a results directory (python -m bench --render DIR)
    replicas: tuple[int, ...] = (1, 2, 3)  # replicas behind haproxy, each against one process (bench/replicas.py)
    replica_visitors: tuple[int, ...] = (50, 200)  # simultaneous chat-tab visitors per step

    @classmethod
    def quick_mode(cls, **over: Any) -> Options:
        base = dict(
            quick=True, out=ROOT / "docs" / "benchmarks" / "quick", ttft_rounds=2, ttft_samples=5,
            warmups=1, throughput_tokens=500, throughput_runs=2, ramp=(1, 20), ramp_reply_tokens=20, ramp_tps=40.0,
            ramp_targets=("sdk", "sw_ui", "sw_http", "lu_ui", "lc_ui"), lc_deadline_factor=1.5,
            history_core_turns=(10, 2000), history_core_reps=3, history_app_turns=(10, 200),
            history_app_reps=2, history_reply_tokens=10, sessions=30, session_concurrency=20, memory_warmup=5,
            memory_baselines=(), memory_settle_s=1.0, extra_cold_starts=0, fresh_apps=False,
            parallel_start=True, replicas=(2,), replica_visitors=(5,),
        )
        base.update(over)
        return cls(**base)

