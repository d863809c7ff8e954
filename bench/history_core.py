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

``python -m bench.history_core '{"breakdown": {"turns": [10, 200, 2000], "budgets": [4000, 128000]}}'``
(add ``"markdown": true`` for a table) measures instead where one turn's time goes in
:func:`chatbot.core.history.fit_history` with a plain prompt budget, each piece on fresh copies of the
history (new strings, as a parsed request has) and in the same cache state:

- ``fit_s``: fit_history with the token-count cache (:class:`chatbot.core.tokens.CountCache`, warm: the
  earlier turns were counted on earlier turns); ``plain_fit_s``: the same with an uncached counter (every
  message that fits tokenised again): ``cache_gain`` = plain_fit_s / fit_s, what the cache pays.
- the pieces of fit_s: ``walk_s`` (the newest-first walk that cleans the messages that fit, no counting),
  ``clean_text_s`` (clean_text alone on those texts), ``count_s`` / ``count_plain_s`` (counting those
  cleaned messages with / without the cache), ``older_s`` (reading the roles of the items not reached, for
  the turns left out), ``hash_s`` (hashing those texts once: the least any cache keyed by their content
  costs per turn, so what a cache of cleaned forms could at most save is clean_text_s - hash_s).
- ``vs_first`` : fit_s over the first length's fit_s at the same budget.
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


def _cpu(cold: Cold, reps: int, make: Any, work: Any) -> float:
    """Median CPU time of this thread for ``work(make(rep))`` over reps (not wall time: on a loaded machine
    a call longer than a scheduler slice is preempted and its wall time says more about the load than
    about the call), ``make`` (fresh inputs) untimed, the heap collected and the CPU caches put in one state
    before each call."""
    times = []
    for rep in range(reps):
        data = make(rep)
        gc.collect()
        cold()
        t0 = time.thread_time()
        work(data)
        times.append(time.thread_time() - t0)
    return statistics.median(times)


def breakdown_row(n: int, budget: int, reps: int, cold: Cold) -> dict[str, Any]:
    """Where one turn's time goes in fit_history at ``n`` turns and a ``budget``-token prompt budget."""
    from chatbot.core.history import History, _newest_first, _turns_before, clean_text, fit_history
    from chatbot.core.tokens import TokenCounter, counter_for

    counter, plain = counter_for(MODEL_ID), TokenCounter(MODEL_ID, cache=None)
    caps = (5_000, 2_000_000, 200_000)  # the settings' defaults
    newest = {"role": "user", "content": "A new question"}

    def history(rep: int) -> list[dict]:
        # new dicts and strings each time; the newest reply is new to the cache (as in the app, each turn)
        return ui_history(plain_history(n, fresh=f"fresh {budget} {rep}"))

    fit_history(History(ui_history(plain_history(n)), *caps), budget, counter.count, newest=newest)  # earlier turns
    fitted = fit_history(History(history(0), *caps), budget, counter.count, newest=newest)
    kept = len(fitted.messages) - 1
    older = max(0, 2 * n - kept - 2) if fitted.dropped_turns else 0  # items before the turn that did not fit

    def kept_messages(rep: int) -> list[dict]:
        return [m for _, (_, m) in zip(range(kept), _newest_first(history(rep), *caps, None, 4), strict=False)]

    gc.collect()
    row: dict[str, Any] = {"turns": n, "budget": budget, "messages": kept, "dropped_turns": fitted.dropped_turns,
                           "prompt_tokens": fitted.tokens}
    row["fit_s"] = _cpu(cold, reps, history,
                                lambda h: fit_history(History(h, *caps), budget, counter.count, newest=newest))
    row["plain_fit_s"] = _cpu(cold, reps, history,
                                      lambda h: fit_history(History(h, *caps), budget, plain.count, newest=newest))
    row["walk_s"] = _cpu(cold, reps, history, lambda h: list(zip(range(kept), _newest_first(h, *caps, None, 4),
                                                                          strict=False)))
    row["clean_text_s"] = _cpu(cold, reps, lambda r: [m["content"] for m in kept_messages(r)],
                                       lambda texts: [clean_text(t, caps[2]) for t in texts])
    row["count_s"] = _cpu(cold, reps, kept_messages, lambda ms: [counter.count(m) for m in ms])
    row["count_plain_s"] = _cpu(cold, reps, kept_messages, lambda ms: [plain.count(m) for m in ms])
    row["older_s"] = _cpu(cold, reps, history, lambda h: _turns_before(h, older))
    row["hash_s"] = _cpu(cold, reps, lambda r: [m["content"] for m in kept_messages(r)],
                                 lambda texts: [hash(t) for t in texts])
    row["cache_gain"] = row["plain_fit_s"] / row["fit_s"]
    same = fit_history(History(history(0), *caps), budget, plain.count, newest=newest)
    row["same_as_plain"] = same == fitted
    return row


def _markdown(rows: list[dict[str, Any]]) -> str:
    cols = ("fit_s", "plain_fit_s", "walk_s", "clean_text_s", "count_s", "count_plain_s", "older_s", "hash_s")
    out = ["| Turns | Budget | Messages | " + " | ".join(c.removesuffix("_s") for c in cols)
           + " | cache gain | fit vs first | same as plain |", "|---" * (len(cols) + 6) + "|"]
    for r in rows:
        out.append(f"| {r['turns']:,} | {r['budget']:,} | {r['messages']} | "
                   + " | ".join(f"{r[c] * 1e3:.2f} ms" for c in cols)
                   + f" | {r['cache_gain']:.1f}x | {r['vs_first']:.2f}x | {'yes' if r['same_as_plain'] else 'NO'} |")
    return "\n".join(out)


def breakdown(spec: dict[str, Any], reps: int, cold: Cold) -> None:
    from chatbot.core.tokens import ensure_offline_encodings

    ensure_offline_encodings()
    rows: list[dict[str, Any]] = []
    budgets = spec["breakdown"].get("budgets", [4_000, 128_000])
    turns = spec["breakdown"].get("turns", [10, 200, 2_000])
    breakdown_row(turns[0], budgets[0], 2, cold)  # a warm-up, so that the first row is measured like the others
    for budget in budgets:
        first = None
        for n in turns:
            row = breakdown_row(n, budget, reps, cold)
            first = first or row["fit_s"]
            rows.append({**row, "vs_first": row["fit_s"] / first})
    print(_markdown(rows) if spec.get("markdown") else json.dumps({"breakdown": rows, "reps": reps}))


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return
    spec = json.loads(sys.argv[1])
    reps: int = spec.get("reps", 20)
    cold = Cold(spec.get("evict_mb", 16))
    if "breakdown" in spec:
        breakdown(spec, reps, cold)
        return
    turns_list: list[int] = spec["turns"]
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
