"""The benchmark's scenarios, one module each (ttft, throughput, ramp, history, memory, coldstart; replicas
in bench/replicas.py), run in turn by :class:`~bench.scenarios.runner.Bench`. Each returns a JSON-able dict
that bench/report/ turns into tables and plots."""

from bench.scenarios.options import DEFAULT_SCENARIOS, SCENARIOS, START_TIMEOUT, SYSTEM_PROMPT, Options
from bench.scenarios.paths import BEFORE, LABELS, SHORT
from bench.scenarios.runner import Bench, machine_info
from bench.visit import visit_stats

__all__ = [  # what bench's other modules import from here
    "BEFORE", "DEFAULT_SCENARIOS", "LABELS", "SCENARIOS", "SHORT", "START_TIMEOUT", "SYSTEM_PROMPT", "Bench",
    "Options", "machine_info", "visit_stats",
]
