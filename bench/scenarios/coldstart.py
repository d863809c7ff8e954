"""Cold start: process start to the first 200 on `/` for every launch of the run (and extra ones), the apps'
idle CPU, and a bare gr.Blocks for Gradio's own floor."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import httpx

from bench.procs import free_port
from bench.scenarios.options import START_TIMEOUT
from bench.stats import summary

if TYPE_CHECKING:
    from bench.scenarios.runner import Bench


async def scenario(bench: Bench) -> dict[str, Any]:
    """`python app.py` to the first 200 on `/`: every launch of this run, plus extra ones."""
    o = bench.opts
    for _ in range(o.extra_cold_starts):
        for kind in (k for k in bench.app_kinds() if k != "load_chat_unlimited"):
            app = bench.new_app("switchboard" if kind == "switchboard_before" else kind,
                                before=kind == "switchboard_before")
            await asyncio.to_thread(app.start, START_TIMEOUT, bench.log_dir)
            bench.cold[kind].append(app.cold_start)
            app.stop()
    idle: dict[str, float] = {}
    window = 1.0 if o.quick else 3.0
    await asyncio.sleep(0.5)
    before = {kind: app.cpu() for kind, app in bench.apps.items()}
    await asyncio.sleep(window)
    for kind, app in bench.apps.items():
        idle[kind] = (app.cpu() - before[kind]) / window
    bare: list[float] = []
    if not o.quick:
        for _ in range(max(2, o.extra_cold_starts)):
            bare.append(await asyncio.to_thread(bare_gradio_cold_start))
    return {"samples": bench.cold, "bare_gradio": bare, "idle_cpu": idle, "idle_window_s": window,
            "switchboard": summary(bench.cold["switchboard"]), "load_chat": summary(bench.cold["load_chat"]),
            "switchboard_before": summary(bench.cold["switchboard_before"]), "bare": summary(bare)}


BARE_APP = """
import os, sys
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
import gradio as gr
with gr.Blocks() as demo:
    gr.Markdown("hello")
demo.launch(server_name="127.0.0.1", server_port=int(sys.argv[1]), quiet=True, ssr_mode=False)
"""


def bare_gradio_cold_start() -> float:
    """The floor for a Gradio app: import gradio, one Markdown, launch, first 200 on `/`."""
    port = free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(timeout=2) as client:
            while time.perf_counter() - t0 < 90:
                try:
                    if client.get(f"http://127.0.0.1:{port}/").status_code == 200:
                        return time.perf_counter() - t0
                except httpx.HTTPError:
                    pass
                time.sleep(0.01)
        return math.nan
    finally:
        proc.terminate()
        proc.wait(10)
