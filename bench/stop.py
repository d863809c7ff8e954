"""How fast the upstream connection closes when a visitor stops or leaves, and how 20 chats scale.

    python -m bench.stop [--runs 10]

Runs the app in-process (Gradio launch) against the fake upstream and prints, over ``--runs`` runs each:
- Stop (gradio_client ``job.cancel()``) mid-stream and while the upstream is silent after its headers;
- a closed tab (the queue's SSE connection dropped) mid-stream and while silent;
  each as the time from the visitor's action to the fake upstream seeing its client go away;
- 20 simultaneous chats of ~1 s each: total time relative to one chat.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from conftest import free_port, make_settings  # noqa: E402
from fake_upstream import Behaviour, FakeUpstream  # noqa: E402
from gradio_client import Client  # noqa: E402

import app as switchboard  # noqa: E402


def _close_tab(url: str, fake: FakeUpstream, stall: float) -> float:
    fake.reset()
    fake.push(Behaviour(reply="z" * 8000, chunk_size=4, delay=0.05, stall_before_first=stall))
    with httpx.Client(timeout=30) as client:
        config = client.get(f"{url}config").json()
        index = next(d["id"] for d in config["dependencies"] if d.get("api_name") == "chat")
        session = uuid.uuid4().hex
        client.post(f"{url}gradio_api/queue/join", json={
            "data": ["hi", "fast", [], ""], "fn_index": index, "session_hash": session,
            "event_data": None, "trigger_id": None,
        }).raise_for_status()
        with client.stream("GET", f"{url}gradio_api/queue/data", params={"session_hash": session}) as sse:
            lines = sse.iter_lines()
            while "process_starts" not in next(lines):
                pass
            fake.wait_for(lambda: fake.requests and fake.last.first_byte_at is not None, timeout=10)
            if not stall:
                fake.wait_for(lambda: fake.last.chunks_sent > 2, timeout=10)
            else:
                time.sleep(1.0)  # well into the silence
            closed = time.monotonic()
    fake.wait_for(lambda: fake.last.disconnected_at is not None, timeout=10)
    return fake.last.disconnected_at - closed


def _stop(url: str, fake: FakeUpstream, stall: float) -> float:
    fake.reset()
    fake.push(Behaviour(reply="z" * 8000, chunk_size=4, delay=0.05, stall_before_first=stall))
    job = Client(url, verbose=False).submit("hi", model="fast", api_name="/chat")
    fake.wait_for(lambda: fake.requests and fake.last.first_byte_at is not None, timeout=10)
    time.sleep(1.0 if stall else 0.3)
    pressed = time.monotonic()
    job.cancel()
    fake.wait_for(lambda: fake.last.disconnected_at is not None, timeout=10)
    return fake.last.disconnected_at - pressed


def _concurrency(url: str, fake: FakeUpstream, n: int) -> float:
    fake.reset()
    fake.default = Behaviour(reply="x" * 60, chunk_size=3, delay=0.05)
    client = Client(url, verbose=False)
    started = time.monotonic()
    with ThreadPoolExecutor(n) as pool:
        list(pool.map(lambda i: client.predict(f"hi {i}", model="fast", api_name="/chat"), range(n)))
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    with FakeUpstream() as fake:
        settings = make_settings(fake.base_url)
        demo = switchboard.build(settings)
        switchboard.launch(demo, settings, server_port=free_port(), prevent_thread_lock=True, quiet=True)
        url = demo.local_url
        try:
            rows = []
            for name, fn, stall in (
                ("Stop, mid-stream", _stop, 0.0), ("Stop, upstream silent", _stop, 30.0),
                ("Tab closed, mid-stream", _close_tab, 0.0), ("Tab closed, upstream silent", _close_tab, 30.0),
            ):
                samples = [fn(url, fake, stall) * 1000 for _ in range(runs)]
                rows.append((name, statistics.median(samples), min(samples), max(samples)))
            one = statistics.median(_concurrency(url, fake, 1) for _ in range(3))
            twenty = statistics.median(_concurrency(url, fake, 20) for _ in range(3))
        finally:
            demo.close()
    print(f"Upstream closed after the visitor stops or leaves ({runs} runs each):")
    print("| Case | median | min | max |\n|---|---|---|---|")
    for name, med, lo, hi in rows:
        print(f"| {name} | {med:.0f} ms | {lo:.0f} ms | {hi:.0f} ms |")
    print(f"\n20 simultaneous chats: {twenty:.2f} s vs one chat {one:.2f} s ({twenty / one:.2f}x)")


if __name__ == "__main__":
    main()
