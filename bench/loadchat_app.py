"""Baseline (b): ``gr.load_chat`` pointed at the fake upstream, launched with its defaults.

Run as ``python -m bench.loadchat_app BASE_URL MODEL PORT`` (the benchmark starts it as a subprocess
so that its CPU time and RSS can be read with psutil).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def main() -> None:
    base_url, model, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    import gradio as gr

    demo = gr.load_chat(base_url, model=model, token=os.environ.get("OPENAI_API_KEY", "sk-bench"))
    # Everything else left at Gradio's defaults (queue concurrency 1, max_threads 40, ...).
    demo.launch(server_name="127.0.0.1", server_port=port, quiet=True, ssr_mode=False)


if __name__ == "__main__":
    main()
