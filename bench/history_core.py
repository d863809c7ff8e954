"""History cost per turn in the chat core, measured in a process of its own.

``python -m bench.history_core '{"turns": [10, 100], "reps": 20}'`` prints one JSON object. For each
conversation length N it times what Switchboard does per turn before anything goes upstream:
``ChatUI.history_for_upstream`` (rebuild the browser's history) and ``Upstream.prepare`` (count tokens
and trim to the budget). Every timed call sees a history whose messages were all counted on earlier
turns except the newest assistant reply and the new user message, as in a growing conversation.
"""

from __future__ import annotations

import gc
import json
import statistics
import sys
import time
from pathlib import Path

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


def main() -> None:
    spec = json.loads(sys.argv[1])
    turns_list: list[int] = spec["turns"]
    reps: int = spec.get("reps", 20)
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
        base = plain_history(n)
        # earlier turns were counted when they happened: prime the cache with the conversation so far
        upstream.prepare("priming", ui.history_for_upstream(ui_history(base)), MODEL_ALIAS)
        clean_t, prepare_t, total_t = [], [], []
        info = {}
        gc.collect()
        for rep in range(reps):
            hist = ui_history(plain_history(n, fresh=f"fresh{rep}"))
            message = f"New question number {rep} about {sentence(rep, 12)}"
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
        results.append({
            "turns": n, **info,
            "clean_s": statistics.median(clean_t), "prepare_s": statistics.median(prepare_t),
            "total_s": statistics.median(total_t), "total_min_s": min(total_t), "total_max_s": max(total_t),
        })
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
