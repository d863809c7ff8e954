"""Issue 17 item 2: what the conversation core costs per reply, without Gradio. N simultaneous turns
(``chatbot.core.conversation.turn``, no history, the default model) against the fake upstream in a process of its
own (``bench.fake_server``: 200-token replies at 20 tokens/s by default); prints per run the core's CPU per turn
(the driver process's CPU, the fake's excluded), its CPU until the last first token, TTFT p50/p99 and the load.

Each tree runs in a fresh process with its own ``chatbot`` package; several ``--root`` are interleaved A B B A.

Run from the repository root:
    python -m bench.probes.core_turns --turns 200
    python -m bench.probes.core_turns --root /tmp/before --root . --rounds 2     # A B B A
    python -m bench.probes.core_turns --transport httpx2                          # the SDK's httpx2 client
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def _turns(count: int, transport: str) -> dict:
    from chatbot.core.conversation import turn
    from chatbot.core.events import TextDelta
    from chatbot.core.reply import ReplyState
    from chatbot.core.settings import Settings
    from chatbot.core.upstream import Upstream, make_client

    settings = Settings.load([], environ=dict(os.environ), env_file=None)
    client = None
    if transport == "httpx2":
        import httpx2
        import openai

        limits = httpx2.Limits(max_connections=1000, max_keepalive_connections=settings.max_concurrency)
        client = make_client(settings, http_client=openai.DefaultAsyncHttpxClient(limits=limits))
    upstream = Upstream(settings, client=client)
    upstream.warm_up()
    firsts: list[tuple[float, float]] = []

    async def one(i: int, record: bool) -> int:
        state, deltas = ReplyState(), 0
        async for event in turn(upstream, f"hello {i}", [], None, state=state, tick=0.4):
            if isinstance(event, TextDelta):
                if not deltas and record:
                    firsts.append((time.process_time(), time.perf_counter()))
                deltas += 1
        if not state.complete:
            raise RuntimeError(f"turn {i} failed: {state.error}")
        return deltas

    await one(-1, False)  # the first connection and lazy imports are not measured
    cpu0, wall0 = time.process_time(), time.perf_counter()
    deltas = await asyncio.gather(*(one(i, True) for i in range(count)))
    cpu1, wall1 = time.process_time(), time.perf_counter()
    ttft = sorted(wall - wall0 for _, wall in firsts)
    return {"cpu_per_turn_ms": (cpu1 - cpu0) / count * 1000,
            "cpu_to_first_tokens_ms": (max(cpu for cpu, _ in firsts) - cpu0) / count * 1000,
            "ttft_p50_ms": ttft[len(ttft) // 2] * 1000, "ttft_p99_ms": ttft[max(0, int(len(ttft) * 0.99) - 1)] * 1000,
            "events_per_turn": sum(deltas) / count, "wall_s": wall1 - wall0}


def child(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(args.root[0]).resolve()))
    result = asyncio.run(_turns(args.turns, args.transport))
    print(json.dumps(result), flush=True)


def run(root: str, args: argparse.Namespace, base_url: str) -> dict:
    env = dict(os.environ, OPENAI_BASE_URL=base_url, OPENAI_API_KEY="sk-bench", CHATBOT_MODELS="bench=bench-model",
               CHATBOT_RATE_LIMIT="none", CHATBOT_TOKEN_LIMIT="none", CHATBOT_STREAMS_PER_VISITOR="0",
               CHATBOT_MAX_CONCURRENT_STREAMS="0", CHATBOT_MAX_TOKENS="16384", CHATBOT_LIVE_MODELS="0")
    load = os.getloadavg()[0]
    out = subprocess.run([sys.executable, __file__, "--child", "--root", root, "--turns", str(args.turns),
                          "--transport", args.transport], env=env, cwd=root, capture_output=True, text=True,
                         timeout=600)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        raise RuntimeError(f"{root}: {out.stderr[-2000:]}")
    return {"root": root, "transport": args.transport, "load_1m": load, **json.loads(lines[-1])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", action="append", help="a checkout to measure (repeat for A/B; default this one)")
    p.add_argument("--turns", type=int, default=200)
    p.add_argument("--rounds", type=int, default=1, help="A B ... then ... B A, this many times")
    p.add_argument("--tokens", type=int, default=200)
    p.add_argument("--tps", type=float, default=20.0)
    p.add_argument("--transport", choices=("default", "httpx2"), default="default")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    sys.path.insert(0, str(ROOT))
    import httpx

    from bench.procs import FakeProcess

    fake = FakeProcess()
    try:
        fake.configure(args.tokens, 4, args.tps)
        roots = args.root or [str(ROOT)]
        order = [r for i in range(args.rounds) for r in (roots if i % 2 == 0 else roots[::-1])]
        for root in order:
            print(json.dumps(run(root, args, fake.base_url)), flush=True)
            httpx.get(f"{fake.root}/_bench/state", timeout=10)
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
