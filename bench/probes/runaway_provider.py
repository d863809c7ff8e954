"""Issues 12.3 and 13.8: a provider that ignores max_tokens, an endless stream, one 8 MB chunk, and whether
consecutive replies share one connection.

Run: python -m bench.probes.runaway_provider"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import asyncio
import time

from conftest import make_settings
from fake_upstream import Behaviour, FakeUpstream

from chatbot.core.reply import drain
from chatbot.core.upstream import Upstream

WORDS = " ".join(f"word{i}" for i in range(3000))

async def main():
    with FakeUpstream() as fake:
        core = Upstream(make_settings(fake.base_url, CHATBOT_MAX_TOKENS="64", CHATBOT_DAILY_BUDGET_USD="0.01"))
        fake.push(Behaviour(reply=WORDS, chunk_size=8, usage=False))
        text, ev = await drain(core.stream("Hi", [], "fast"))
        print(f"ignores max_tokens: {len(text.split())} words relayed of 3000, ended {getattr(ev[-1], 'error', ev[-1])!r:.60}, spent ${await core.guard.spent_today():.6f} of $0.01")
        core = Upstream(make_settings(fake.base_url, CHATBOT_REPLY_TIMEOUT="5"))
        fake.push(Behaviour(reply="more", endless=True, delay=0.02))
        t = time.monotonic()
        try:
            text, ev = await asyncio.wait_for(drain(core.stream("Hi", [], "fast")), 30)
            print(f"endless stream: stopped after {time.monotonic()-t:.1f} s, {len(text)} chars, {ev[-1].error.kind}")
        except asyncio.TimeoutError:
            print("endless stream: still running after 30 s (bounded by the script)")
        core = Upstream(make_settings(fake.base_url, CHATBOT_DAILY_BUDGET_USD="1"))
        fake.push(Behaviour(reply="x", huge_chunk=8_000_000, usage=False))
        text, ev = await drain(core.stream("Hi", [], "fast"))
        print(f"8 MB chunk: {len(text):,} chars relayed, ended {getattr(ev[-1], 'error', ev[-1])!r:.50}, spent ${await core.guard.spent_today():.6f} of $1")
        core = Upstream(make_settings(fake.base_url))
        fake.reset()
        for i in range(3):
            await drain(core.stream(f"Hi {i}", [], "fast"))
        ports = [r.client_port for r in fake.requests]
        print(f"three replies: client ports {ports}, {len(set(ports))} connection(s)")

asyncio.run(main())
