"""Compare's cost in the chat core: four streams of one compare against the slowest of them alone.

``python -m bench.compare_core '{"reps": 5, "tokens": 100, "tps": [50, 80, 120, 200]}'`` prints one JSON
object. The fake upstream runs in a process of its own (``--fake``: tests/fake_upstream.py with one
behaviour per model, each model its own speed, a reply of ``tokens`` chunks), so its CPU does not share
the benchmark's GIL. Each rep times, in this process and the same run:

- ``single_s``: each model's reply alone through :func:`chatbot.core.conversation.turn` (request to the end
  of the stream), one after the other; the slowest of them is ``slowest_single_s``;
- ``compare_s``: the four in one :func:`chatbot.core.compare.compare`, request to the last column's end;

``ratio`` = compare_s / slowest_single_s per rep; the target is a median ratio of at most 1.10 (``pass``).
``updates`` counts the batches a face would render against the text deltas the columns received.
``stop_all_s``: once every column of a compare of endless replies streams, from ``stop_all()`` to the end of
the compare (every column's task done: its upstream stream closed); the issue's bound is 1 s
(``stop_all_target``): ``pass`` needs both.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET = 1.10
#: The issue's bound for Stop all: every column's upstream stream closed within this many seconds.
STOP_ALL_TARGET = 1.0


def _models(tps: list[float]) -> list[str]:
    return [f"bench/speed-{int(rate)}" for rate in tps]


def serve_fake(spec: dict) -> None:
    """``--fake``: the fake upstream with one behaviour per model; prints its base URL, serves until stdin closes."""
    from bench.fake_server import reply_text
    from tests.fake_upstream import Behaviour, FakeUpstream

    fake = FakeUpstream()
    fake.by_model = {
        model: Behaviour(reply=reply_text(spec["tokens"], 4), chunk_size=4, tokens_per_second=rate)
        for model, rate in zip(_models(spec["tps"]), spec["tps"], strict=True)
    }
    fake.by_model.update({f"endless/{m}": Behaviour(reply="word ", endless=True, delay=0.02) for m in "abcd"})
    fake.start()
    print(fake.base_url, flush=True)
    sys.stdin.read()
    fake.stop()


async def _single(upstream, model: str) -> float:  # noqa: ANN001 - chatbot.core.upstream.Upstream
    from chatbot.core.conversation import turn
    from chatbot.core.reply import ReplyState

    state, start = ReplyState(), time.perf_counter()
    async for _ in turn(upstream, "bench", [], model, state=state):
        pass
    assert state.complete, state.error
    return time.perf_counter() - start


async def _compare(upstream, models: list[str]) -> tuple[float, int, int]:  # noqa: ANN001
    from chatbot.core.compare import compare
    from chatbot.core.events import TextDelta

    start, batches, deltas = time.perf_counter(), 0, 0
    comparison = compare(upstream, "bench", [], models)
    async for batch in comparison:
        batches += 1
        deltas += sum(isinstance(e.event, TextDelta) for e in batch.events)
    elapsed = time.perf_counter() - start
    assert comparison.refused is None and all(c.state.complete for c in comparison.columns)
    return elapsed, batches, deltas


async def _stop_all(upstream) -> float:  # noqa: ANN001
    from chatbot.core.compare import compare

    comparison = compare(upstream, "bench", [], [f"endless/{m}" for m in "abcd"])
    stopped_at = 0.0
    async for _ in comparison:
        if not stopped_at and all(c.state.text for c in comparison.columns):
            stopped_at = time.perf_counter()
            comparison.stop_all()
    return time.perf_counter() - stopped_at


async def measure(base_url: str, spec: dict) -> dict:
    from chatbot.core.settings import Settings
    from chatbot.core.upstream import Upstream

    models = _models(spec["tps"])
    settings = Settings.load([], environ={
        "OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": base_url,
        "CHATBOT_MODELS": ",".join([*models, *(f"endless/{m}" for m in "abcd")]),
        "CHATBOT_LIVE_MODELS": "0", "CHATBOT_MAX_RETRIES": "0", "CHATBOT_COMPARE_MAX_COLUMNS": str(len(models)),
    }, env_file=None)
    upstream = Upstream(settings)
    upstream.warm_up()
    await _single(upstream, models[-1])  # connections and tokenisers warm
    reps = []
    for rep in range(spec["reps"]):
        order = models if rep % 2 == 0 else list(reversed(models))
        singles = {model: await _single(upstream, model) for model in order}
        compare_s, batches, deltas = await _compare(upstream, models)
        slowest = max(singles.values())
        reps.append({"single_s": singles, "slowest_single_s": slowest, "compare_s": compare_s,
                     "ratio": compare_s / slowest, "updates": batches, "text_deltas": deltas})
    stop_all = [await _stop_all(upstream) for _ in range(spec["reps"])]
    await upstream.client.close()
    ratio = statistics.median(r["ratio"] for r in reps)
    return {"spec": spec, "reps": reps, "median_ratio": ratio, "max_ratio": max(r["ratio"] for r in reps),
            "target": TARGET, "pass": ratio <= TARGET and max(stop_all) <= STOP_ALL_TARGET,
            "stop_all_s": stop_all, "stop_all_max_s": max(stop_all), "stop_all_target": STOP_ALL_TARGET}


def main(argv: list[str]) -> None:
    if argv and argv[0] == "--fake":
        serve_fake(json.loads(argv[1]))
        return
    spec = {"reps": 5, "tokens": 100, "tps": [50, 80, 120, 200], **(json.loads(argv[0]) if argv else {})}
    fake = subprocess.Popen([sys.executable, "-m", "bench.compare_core", "--fake", json.dumps(spec)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert fake.stdout is not None
        base_url = fake.stdout.readline().strip()
        print(json.dumps(asyncio.run(measure(base_url, spec)), indent=1))
    finally:
        assert fake.stdin is not None
        fake.stdin.close()
        try:
            fake.wait(timeout=30)
        except subprocess.TimeoutExpired:
            fake.kill()
            fake.wait()


if __name__ == "__main__":
    main(sys.argv[1:])
