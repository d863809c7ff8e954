"""The heap settings every Gradio app in the benchmark runs with.

Rule: every Gradio app measured gets the same collector settings as Switchboard (``app.settle_heap``:
``gc.collect()`` and ``gc.freeze()`` once the app is built, the young generation collected every
``YOUNG_THRESHOLD`` allocations). Switchboard applies them itself; the baselines (``gr.load_chat`` in
both variants and the Gradio floor) call :func:`settle` just before ``launch()``, so a difference between
the apps is theirs, not the collector's. ``settle`` prints one ``bench heap:`` line (JSON) that the
benchmark reads back from the app's log and records in ``results.json`` (``meta.heap``).
"""

from __future__ import annotations

import gc
import json

YOUNG_THRESHOLD = 7_000  # app.GC_YOUNG_THRESHOLD (tests/test_bench.py checks they are equal)
MARK = "bench heap: "


def settle() -> dict[str, int]:
    """Apply Switchboard's heap settings in this process and print what was set."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
    info = {"threshold": gc.get_threshold()[0], "frozen": gc.get_freeze_count()}
    print(MARK + json.dumps(info), flush=True)
    return info


def read_mark(log_text: str) -> dict[str, int] | None:
    """The settings an app printed with :func:`settle`, or None if it printed none."""
    for line in log_text.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK):])
    return None
