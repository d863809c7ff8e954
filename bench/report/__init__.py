"""results.md and its plots from a results dict (bench/scenarios/): document.py (the whole page),
headline_rows.py (the Headlines), sections.py (a section per scenario), charts.py (the PNG plots). The
replicas scenario's document is bench/replicas_report.py; the Before/after table bench/beforeafter.py."""

from bench.report.charts import plots
from bench.report.document import heap_text, markdown
from bench.report.headline_rows import TARGETS, grace_text, headlines, memory_headlines, num, verdict
from bench.report.sections import _table, gap_section, gradio_limit

__all__ = [  # what python -m bench, bench/beforeafter.py and the tests import from here
    "TARGETS", "_table", "gap_section", "grace_text", "gradio_limit", "headlines", "heap_text", "markdown",
    "memory_headlines", "num", "plots", "verdict",
]
