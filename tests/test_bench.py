"""Smoke test of the benchmark suite: ``python -m bench --quick`` runs end to end and writes its table.

No timing assertions: the performance goals live in the benchmark's own output (PASS/MISS per target).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_writes_its_table_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATBOT_", "OPENAI_", "REDIS_URL"))}
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    table = (out / "results.md").read_text(encoding="utf-8")
    assert "## Headlines" in table
    assert "| Figure | Switchboard | Baseline (same run) | Ratio | Target | Result |" in table
    for scenario in ("Time to first token", "Throughput of one stream", "Concurrency ramp",
                     "History cost per turn", "Memory after closed sessions", "Cold start"):
        assert f"## {scenario}" in table, f"missing section {scenario!r}"
    assert "failed:" not in table, table  # no scenario crashed
    assert "PASS" in table or "MISS" in table
    assert table.strip() in proc.stdout  # the table is printed too

    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert set(results["scenarios"]) >= {"ttft", "throughput", "ramp", "history", "memory", "coldstart"}
    assert results["scenarios"]["ttft"]["targets"]["sdk"]["errors"] == 0

    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {"ttft.png", "throughput.png", "ramp.png"} <= set(pngs), pngs
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_browser_chain_sends_followers_at_once_and_shares_one_queue_stream() -> None:
    """The benchmark's chat-UI visitor does what Gradio's front end does: when a step ends, all its
    followers are sent at once (two siblings that wait for each other would fail one after the other),
    and the events of one page share its queue stream, read to ``close_stream``."""
    import asyncio
    import socket
    import threading
    import types
    import uuid

    import gradio as gr

    from bench.clients import BrowserChatTarget, SessionStream, fetch_config, make_http_client

    barrier = threading.Barrier(2, timeout=5)

    def clear(message: str) -> tuple[str, str]:
        return "", message

    def side() -> str:
        barrier.wait()  # both siblings must be running at once
        return "ok"

    async def reply(message: str, history: list):
        yield [*history, {"role": "user", "content": message}, {"role": "assistant", "content": "hi "}]
        yield [*history, {"role": "user", "content": message}, {"role": "assistant", "content": f"hi {message}"}]

    with gr.Blocks() as demo:
        chatbot = gr.Chatbot()
        box = gr.Textbox()
        saved = gr.State()
        a, b = gr.Textbox(), gr.Textbox()
        sent = box.submit(clear, box, [box, saved], queue=False)
        sent.then(side, None, a, queue=False)
        sent.then(side, None, b).then(reply, [saved, chatbot], chatbot)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo.queue().launch(server_port=port, prevent_thread_lock=True, quiet=True)
    client = make_http_client()
    try:
        url = f"http://127.0.0.1:{port}"
        target = BrowserChatTarget("test", types.SimpleNamespace(url=url), client, await fetch_config(client, url))
        page = uuid.uuid4().hex[:12]
        for word in ("there", "again"):  # two messages from one page: one stream per page, reopened
            visit = await target.visit(word, [], f"hi {word}", session_hash=page)
            assert visit.ok, visit.error
            assert visit.reply_step is not None and visit.ttft is not None and visit.ttft > visit.reply_step
        assert not SessionStream._open or all(s.reader is None or not s.waiting for s in SessionStream._open.values())
        stream = SessionStream._open.get((url, page))
        if stream is not None and stream.reader is not None:  # still reading: up to the server's close_stream
            await asyncio.wait_for(asyncio.shield(stream.reader), timeout=10)
        assert (url, page) not in SessionStream._open  # the stream ended and the page let it go
    finally:
        await client.aclose()
        demo.close()


def test_gradio_limit_is_worked_out_from_the_floor_measured_in_the_run() -> None:
    from bench.report import gradio_limit

    floor_row = {"visitors": 200, "completed": 200, "ttft_p99": 4.5, "max_gap": 1.0, "app_cpu_per_update_s": 0.003}
    res = {"scenarios": {"ramp": {"steps": [1, 200], "targets": {"gf_ui": [floor_row]}},
                         "ttft": {"targets": {"gf_ui": {"before_reply_step_p50": 0.015}}}}}
    text = gradio_limit(res)
    assert "1.20 CPU-seconds a second" in text  # 200 visitors x 3 ms / 0.5 s
    assert "3.00 s for the last one's chain" in text  # 200 x 15 ms
    assert gradio_limit({"scenarios": {"ramp": {"steps": [1, 200], "targets": {"gf_ui": []}}}}) == ""
