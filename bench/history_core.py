"""History cost per turn in the chat core, measured in a process of its own.

``python -m bench.history_core '{"turns": [10, 100], "reps": 20}'`` prints one JSON object. For each
conversation length N it times what Switchboard does per turn before anything goes upstream, two ways:

- the old path (``clean_s``, ``prepare_s``, ``total_s``): ``ChatUI.history_for_upstream`` (clean_history:
  rebuild the browser's history) and ``Upstream.prepare`` with the list (count every message, with the
  token cache, and trim to the budget). Every timed call sees N turns whose messages were all counted on
  earlier turns except the newest assistant reply and the new user message.
- the window path (``window_*``), as the app runs it: one ``HistoryWindow`` for the conversation, synced
  before timing with its N turns; each timed turn is ``window.sync(history)`` with the history as the
  client sends it (a new list of new dicts, grown by the previous turn's question and a fresh reply, so
  N+1 to N+reps turns) and ``Upstream.prepare`` with the snapshot. ``same_as_old`` checks, outside the
  timing, that both paths build the same request for the last turn's history.

Cache state: building a 2,000-turn history (megabytes of new dicts, as parsing the request does in the
app) evicts the CPU caches before the timed call, and a 10-turn one does not, which by itself makes any
fixed amount of work several times slower at 2,000 turns. So before every timed turn, of both paths and
every length, a buffer of ``evict_mb`` MB (default 16; 0 turns it off) is copied, and ``control_s`` times
a fixed piece of work (tokenising one sentence) in the same state: equal across lengths means the
lengths were measured alike.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.procs import MODEL_ALIAS, MODEL_ID  # noqa: E402

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu").split()


def sentence(seed: int, words: int) -> str:
    return " ".join(WORDS[(seed * 7 + i * 3) % len(WORDS)] + (str(seed) if i == 0 else "") for i in range(words))


def plain_history(turns: int, fresh: str = "") -> list[dict[str, str]]:
    """``turns`` user/assistant pairs (about 50 and 150 tokens); ``fresh`` makes the last reply new."""
    out: list[dict[str, str]] = []
    for i in range(turns):
        out.append({"role": "user", "content": f"Question {i}: " + sentence(i, 40)})
        reply = f"Answer {i}: " + sentence(i + 1, 120)
        if fresh and i == turns - 1:
            reply += " " + fresh
        out.append({"role": "assistant", "content": reply})
    return out


def ui_history(plain: list[dict[str, str]]) -> list[dict]:
    """The same history as Gradio's Chatbot sends it (content parts, metadata, options)."""
    return [{"role": m["role"], "metadata": None, "content": [{"type": "text", "text": m["content"]}],
             "options": None} for m in plain]


class Cold:
    """Puts the CPU caches in the same state before every timed call (see the module docstring)."""

    def __init__(self, megabytes: float) -> None:
        self.buffer = bytearray(int(megabytes * (1 << 20)))

    def __call__(self) -> None:
        if self.buffer:
            bytes(self.buffer)


def old_path(upstream: Any, ui: Any, n: int, reps: int, cold: Cold) -> dict[str, Any]:
    base = plain_history(n)
    # earlier turns were counted when they happened: prime the cache with the conversation so far
    upstream.prepare("priming", ui.history_for_upstream(ui_history(base)), MODEL_ALIAS)
    clean_t, prepare_t, total_t = [], [], []
    info: dict[str, Any] = {}
    gc.collect()
    for rep in range(reps):
        hist = ui_history(plain_history(n, fresh=f"fresh{rep}"))
        message = f"New question number {rep} about {sentence(rep, 12)}"
        cold()
        t0 = time.perf_counter()
        plain = ui.history_for_upstream(hist)
        t1 = time.perf_counter()
        prepared = upstream.prepare(message, plain, MODEL_ALIAS)
        t2 = time.perf_counter()
        clean_t.append(t1 - t0)
        prepare_t.append(t2 - t1)
        total_t.append(t2 - t0)
        info = {"messages": len(getattr(prepared, "messages", [])),
                "dropped_turns": getattr(prepared, "dropped_turns", None),
                "prompt_tokens": getattr(prepared, "prompt_tokens", None)}
    return {
        **info,
        "clean_s": statistics.median(clean_t), "prepare_s": statistics.median(prepare_t),
        "total_s": statistics.median(total_t), "total_min_s": min(total_t), "total_max_s": max(total_t),
    }


def window_path(settings: Any, upstream: Any, ui: Any, n: int, reps: int, cold: Cold) -> dict[str, Any]:
    """Per-turn cost with one HistoryWindow for the conversation (see the module docstring)."""
    from chatbot.history import HistoryWindow
    from chatbot.tokens import counter_for

    encoding = counter_for(MODEL_ID).encoding
    window = HistoryWindow.for_settings(settings)
    plain = plain_history(n)
    question = "priming"
    upstream.prepare(question, window.sync(ui_history(plain)), MODEL_ALIAS)  # earlier turns: cleaned, counted
    rebuilds = window.rebuilds
    sync_t, prepare_t, total_t, control_t = [], [], [], []
    prepared: Any = None
    hist: list[dict] = []
    gc.collect()
    for rep in range(reps):
        plain = [*plain, {"role": "user", "content": question},
                 {"role": "assistant", "content": f"Answer {n + rep}: " + sentence(n + rep + 1, 120) + f" fresh{rep}"}]
        hist = ui_history([dict(m) for m in plain])  # what the browser sends: the whole history, new objects
        question = f"New question number {rep} about {sentence(rep, 12)}"
        cold()
        t0 = time.perf_counter()
        encoding.encode(f"A fixed control sentence, number {rep}: " + sentence(rep + 7, 40))
        control_t.append(time.perf_counter() - t0)
        cold()
        t0 = time.perf_counter()
        snapshot = window.sync(hist)
        t1 = time.perf_counter()
        prepared = upstream.prepare(question, snapshot, MODEL_ALIAS)
        t2 = time.perf_counter()
        sync_t.append(t1 - t0)
        prepare_t.append(t2 - t1)
        total_t.append(t2 - t0)
    old = upstream.prepare(question, ui.history_for_upstream(hist), MODEL_ALIAS)
    return {
        "window_sync_s": statistics.median(sync_t), "window_prepare_s": statistics.median(prepare_t),
        "window_total_s": statistics.median(total_t), "window_total_min_s": min(total_t),
        "window_total_max_s": max(total_t), "window_messages": len(getattr(prepared, "messages", [])),
        "window_prompt_tokens": getattr(prepared, "prompt_tokens", None),
        "window_rebuilds": window.rebuilds - rebuilds, "same_as_old": prepared == old,
        "control_s": statistics.median(control_t),
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    turns_list: list[int] = spec["turns"]
    reps: int = spec.get("reps", 20)
    cold = Cold(spec.get("evict_mb", 16))
    from chatbot.config import Settings
    from chatbot.tokens import ensure_offline_encodings
    from chatbot.ui import ChatUI
    from chatbot.upstream import Upstream

    ensure_offline_encodings()
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "sk-bench",
           "CHATBOT_MODELS": f"{MODEL_ALIAS}={MODEL_ID}"}
    settings = Settings.load([], environ=env, env_file=None)
    upstream = Upstream(settings)
    ui = ChatUI(settings, upstream)
    results = []
    for n in turns_list:
        results.append({"turns": n, **old_path(upstream, ui, n, reps, cold),
                        **window_path(settings, upstream, ui, n, reps, cold)})
    print(json.dumps({"results": results, "evict_mb": spec.get("evict_mb", 16)}))


if __name__ == "__main__":
    main()
