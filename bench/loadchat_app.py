"""Baseline (b): ``gr.load_chat`` pointed at the fake upstream.

Run as ``python -m bench.loadchat_app BASE_URL MODEL PORT [unlimited]`` (the benchmark starts it as a
subprocess so that its CPU time and RSS can be read with psutil).

- without ``unlimited``: Gradio's defaults (the queue runs one event of each function at a time, 40 worker
  threads);
- with ``unlimited``: ``queue(default_concurrency_limit=None)`` and ``launch(max_threads=512)``, the queue
  settings Switchboard and the Gradio floor run with. load_chat's function is a sync generator that holds
  a worker thread while it waits for the upstream, so without the thread count it would serve 40 streams
  at a time whatever the queue allows.

Either way it runs with the heap settings every Gradio app in the benchmark gets (``bench/heap.py``).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main() -> None:
    base_url, model, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    unlimited = sys.argv[4:5] == ["unlimited"]
    import gradio as gr

    from bench.heap import settle

    demo = gr.load_chat(base_url, model=model, token=os.environ.get("OPENAI_API_KEY", "sk-bench"))
    launch: dict = {}
    if unlimited:
        demo.queue(default_concurrency_limit=None)
        launch["max_threads"] = 512  # Switchboard's default CHATBOT_MAX_CONCURRENCY, as the Gradio floor
    settle()
    demo.launch(server_name="127.0.0.1", server_port=port, quiet=True, ssr_mode=False, **launch)


if __name__ == "__main__":
    main()
