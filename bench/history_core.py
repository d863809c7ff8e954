"""History cost per turn in the chat core, measured in a process of its own.

``python -m bench.history_core '{"turns": [10, 100], "reps": 20}'`` prints one JSON object. For each
conversation length N it times what Switchboard does per turn before anything goes upstream:

- the whole walk (``clean_s``, ``prepare_s``, ``total_s``): the plain functions, clean_history on the
  browser's whole history, then trim_history over it (every message counted, with the token cache).
- the app's path (``fit_*``): ``Upstream.prepare`` with the history as the client sends it
  (:class:`chatbot.core.history.History`): one walk from the newest message back that cleans and counts each
  message once and stops where the model's budget is full. With the bench model's window (about 1M tokens)
  everything the caps keep fits, so this walk reads every message; ``fit_budget_*`` is the same with a
  prompt budget of ``budget_tokens`` (default 4,000: all of 10 turns fit, about 19 of 2,000), where the
  cost follows what fits (plus reading the role of each older item, to count the turns left out), not the
  conversation's length. ``same_as_old`` checks, outside the timing,
  that the app's path builds the same request as the whole walk.

Every timed call sees N turns whose messages were all counted on earlier turns except the newest
assistant reply and the new user message (a new list of new dicts, as the browser sends it).

Cache state: building a 2,000-turn history (megabytes of new dicts, as parsing the request does in the
app) evicts the CPU caches before the timed call, and a 10-turn one does not, which by itself makes any
fixed amount of work several times slower at 2,000 turns. So before every timed turn, of every path and
length, a buffer of ``evict_mb`` MB (default 16; 0 turns it off) is copied, and ``control_s`` times a
fixed piece of work (tokenising one sentence) in the same state: equal across lengths means the lengths
were measured alike.
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


def whole_path(upstream: Any, ui: Any, n: int, reps: int, cold: Cold) -> dict[str, Any]:
    """clean_history on the whole history, then trim_history over it (see the module docstring)."""
    from chatbot.core.history import trim_history
    from chatbot.core.tokens import counter_for

    count = counter_for(MODEL_ID).count
    model = upstream.resolve(MODEL_ALIAS)
    budget = upstream.budget(model)[0]
    system = [{"role": "system", "content": upstream.settings.system_prompt}] if upstream.settings.system_prompt else []
    # earlier turns were counted when they happened: prime the cache with the conversation so far
    trim_history([*system, *ui.history_for_upstream(ui_history(plain_history(n))), {"role": "user", "content": "p"}],
                 budget, count)
    clean_t, prepare_t, total_t = [], [], []
    info: dict[str, Any] = {}
    gc.collect()
    for rep in range(reps):
        hist = ui_history(plain_history(n, fresh=f"fresh{rep}"))
        newest = {"role": "user", "content": f"New question number {rep} about {sentence(rep, 12)}"}
        cold()
        t0 = time.perf_counter()
        plain = ui.history_for_upstream(hist)
        t1 = time.perf_counter()
        trimmed = trim_history([*system, *plain, newest], budget, count)
        t2 = time.perf_counter()
        clean_t.append(t1 - t0)
        prepare_t.append(t2 - t1)
        total_t.append(t2 - t0)
        info = {"messages": len(trimmed.messages), "dropped_turns": trimmed.dropped_turns,
                "prompt_tokens": trimmed.tokens}
    return {
        **info,
        "clean_s": statistics.median(clean_t), "prepare_s": statistics.median(prepare_t),
        "total_s": statistics.median(total_t), "total_min_s": min(total_t), "total_max_s": max(total_t),
    }


def fit_path(upstream: Any, ui: Any, n: int, reps: int, cold: Cold, prefix: str) -> dict[str, Any]:
    """Per-turn cost of ``Upstream.prepare`` with the client's history (see the module docstring)."""
    from chatbot.core.history import History
    from chatbot.core.tokens import counter_for

    encoding = counter_for(MODEL_ID).encoding
    settings = upstream.settings
    plain = plain_history(n)
    question = "priming"
    upstream.prepare(question, History.of(ui_history(plain), settings), MODEL_ALIAS)  # earlier turns counted
    total_t, control_t = [], []
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
        prepared = upstream.prepare(question, History.of(hist, settings), MODEL_ALIAS)
        total_t.append(time.perf_counter() - t0)
    old = upstream.prepare(question, ui.history_for_upstream(hist), MODEL_ALIAS)
    return {
        f"{prefix}total_s": statistics.median(total_t), f"{prefix}total_min_s": min(total_t),
        f"{prefix}total_max_s": max(total_t), f"{prefix}messages": len(getattr(prepared, "messages", [])),
        f"{prefix}dropped_turns": getattr(prepared, "dropped_turns", None),
        f"{prefix}prompt_tokens": getattr(prepared, "prompt_tokens", None),
        # the same request (dropped_turns aside: the fit counts turns the history caps left out as well)
        f"{prefix}same_as_old": (getattr(prepared, "messages", None), getattr(prepared, "prompt_tokens", None))
        == (getattr(old, "messages", None), getattr(old, "prompt_tokens", None)),
        f"{prefix}control_s": statistics.median(control_t),
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    turns_list: list[int] = spec["turns"]
    reps: int = spec.get("reps", 20)
    cold = Cold(spec.get("evict_mb", 16))
    from chatbot.core.settings import Settings
    from chatbot.core.tokens import ensure_offline_encodings
    from chatbot.core.upstream import Upstream
    from chatbot.web.ui import ChatUI

    ensure_offline_encodings()
    env = {"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "sk-bench",
           "CHATBOT_MODELS": f"{MODEL_ALIAS}={MODEL_ID}"}
    budget_tokens = spec.get("budget_tokens", 4_000)
    settings = Settings.load([], environ=env, env_file=None)
    small = Settings.load([], environ={**env, "CHATBOT_CONTEXT_TOKENS": str(budget_tokens)}, env_file=None)
    upstream, bounded = Upstream(settings), Upstream(small)
    ui = ChatUI(settings, upstream)
    results = []
    for n in turns_list:
        results.append({"turns": n, **whole_path(upstream, ui, n, reps, cold),
                        **fit_path(upstream, ui, n, reps, cold, "fit_"),
                        **fit_path(bounded, ui, n, reps, cold, "fit_budget_")})
    print(json.dumps({"results": results, "evict_mb": spec.get("evict_mb", 16), "budget_tokens": budget_tokens}))


if __name__ == "__main__":
    main()
