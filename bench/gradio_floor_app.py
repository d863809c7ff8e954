"""Baseline (c), the Gradio floor: a bare ``gr.ChatInterface`` with Switchboard's queue settings, streaming
from the same fake upstream with nothing else (no limits, history, tokeniser, panel or cost line).

What it costs Gradio to serve a chat at a given load is the least any ChatInterface app can cost: where
Switchboard's UI misses a target and this floor misses it too, the limit is Gradio's. It reads the
upstream's SSE with httpx and orjson and updates the chat at most every ``INTERVAL`` seconds (the first
token at once), which is Switchboard's pacing under load; yielding more often only costs Gradio more.

Like every Gradio app in the benchmark it runs with Switchboard's heap settings (``bench/heap.py``).

Run as ``python -m bench.gradio_floor_app BASE_URL MODEL PORT``.
"""

from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

INTERVAL = 0.4  # Switchboard's MAX_INTERVAL: the slowest pace that keeps gaps under 500 ms


def main() -> None:
    base_url, model, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    import gradio as gr
    import httpx
    import orjson

    client = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=1000, max_keepalive_connections=1000))

    async def chat(message: str, history: list):
        body = {"model": model, "stream": True, "messages": [*history, {"role": "user", "content": message}]}
        text, last = "", 0.0
        async with client.stream("POST", f"{base_url}/chat/completions", json=body,
                                 headers={"authorization": "Bearer sk-bench"}) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                choices = orjson.loads(line[6:]).get("choices")
                if choices:
                    text += choices[0].get("delta", {}).get("content") or ""
                now = time.monotonic()
                if text and now - last >= (INTERVAL if last else 0.0):
                    last = now
                    yield text
        yield text

    demo = gr.ChatInterface(chat, concurrency_limit=None, cache_examples=False)
    demo.queue(default_concurrency_limit=None)
    from bench.heap import settle

    settle()  # the same heap settings as every Gradio app measured (bench/heap.py)
    demo.launch(server_name="127.0.0.1", server_port=port, quiet=True, ssr_mode=False,
                max_threads=512)  # Switchboard's default CHATBOT_MAX_CONCURRENCY


if __name__ == "__main__":
    main()
