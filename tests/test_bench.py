"""Smoke test of the benchmark suite: ``python -m bench --quick`` runs end to end and writes its table.

No timing assertions: the performance goals live in the benchmark's own output (PASS/MISS per target).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
YOUNG_THRESHOLD = 7_000  # app.GC_YOUNG_THRESHOLD: checked against app.py below
#: How long a quick run may take: its app processes (five) started on a 2-core machine that also runs the rest of
#: the suite (one took more than 240 s at a load average of 20).
BENCH_S = 480
#: The test proves the run goes end to end (every app, path, scenario, table and plot), not the figures: the
#: smallest counts that still take every path (two TTFT rounds of two, one throughput run, a ramp of 1 and 3
#: visitors, history at 2 and 10 turns, five sessions per memory figure). The apps' starts are the rest.
SMALLEST = ("--ttft-rounds", "2", "--ttft-samples", "2", "--runs", "1", "--throughput-tokens", "100",
            "--ramp", "1,3", "--reply-tokens", "10", "--tps", "100", "--history-turns", "2,10", "--sessions", "5")


def _bench(out: Path, *args: str) -> str:
    """``python -m bench --quick --out out *args`` in its own session (whatever happens, nothing it started
    outlives the test); asserts it succeeded and returns what it printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHATBOT_", "OPENAI_", "REDIS_URL"))}
    env["GRADIO_ANALYTICS_ENABLED"] = "False"
    with subprocess.Popen([sys.executable, "-m", "bench", "--quick", "--out", str(out), *args], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=BENCH_S)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr[-3000:]
    return stdout


@pytest.mark.bench
@pytest.mark.slow
@pytest.mark.timeout(BENCH_S + 60)
def test_quick_benchmark_writes_its_table_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    stdout = _bench(out, *SMALLEST)

    table = (out / "results.md").read_text(encoding="utf-8")
    assert "## Headlines" in table
    assert "| Figure | Switchboard | Baseline (same run) | Ratio | Target | Result |" in table
    for scenario in ("Time to first token", "Throughput of one stream", "Concurrency ramp",
                     "History cost per turn", "Memory after closed sessions", "Cold start"):
        assert f"## {scenario}" in table, f"missing section {scenario!r}"
    assert "failed:" not in table, table  # no scenario crashed
    assert "PASS" in table or "MISS" in table
    assert table.strip() in stdout  # the table is printed too

    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert set(results["scenarios"]) >= {"ttft", "throughput", "ramp", "history", "memory", "coldstart"}
    assert results["scenarios"]["ttft"]["targets"]["sdk"]["errors"] == 0
    # load_chat with unlimited concurrency beside its defaults; Switchboard's memory at both graces
    assert "lu_ui" in results["scenarios"]["ttft"]["targets"]
    assert "lu_ui" in results["scenarios"]["ramp"]["targets"]
    memory = results["scenarios"]["memory"]["targets"]
    assert (memory["sw_ui"]["grace_s"], memory["sw_ui_grace2"]["grace_s"]) == (600, 2)
    assert "load_chat unlimited" in table and "session grace 600 s (the default)" in table
    # one heap rule: every baseline printed the settings it runs with, and they are Switchboard's
    heap = results["meta"]["heap"]
    assert {"load_chat", "load_chat_unlimited", "gradio_floor"} <= set(heap), heap
    for name in ("load_chat", "load_chat_unlimited", "gradio_floor"):
        assert heap[name]["threshold"] == YOUNG_THRESHOLD and heap[name]["frozen"] > 0, heap

    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {"ttft.png", "throughput.png", "ramp.png"} <= set(pngs), pngs
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.bench
@pytest.mark.slow
@pytest.mark.timeout(BENCH_S + 60)
def test_quick_replicas_benchmark_routes_each_visitor_through_haproxy(tmp_path: Path) -> None:
    """``python -m bench --quick --only replicas``: the chat tab's visitors through deploy/haproxy.cfg in front
    of two replicas on one redis-server, beside one process: every visitor's chain reaches its reply (each
    page sends its own sticky cookie, queue stream included), both replicas serve, replicas.md is written."""
    from test_proxies import _binary

    for name in ("haproxy", "redis-server"):
        _binary(name)
    out = tmp_path / "bench"
    stdout = _bench(out, "--only", "replicas", "--reply-tokens", "10", "--tps", "100")  # short replies
    assert not (out / "results.md").exists()  # its own document
    table = (out / "replicas.md").read_text(encoding="utf-8")
    assert table.strip() in stdout and "failed" not in table, table
    # every request of a page on its replica: no queue stream cut (without each page's own cookie, the stream
    # lands on the other replica, which ends it: 6 cut for 5 visitors in a run without them)
    assert "| 1 process, no balancer | 5 | 5/5 | 0 | 0 |" in table, table
    assert "| haproxy, 2 replicas | 5 | 5/5 | 0 | 0 |" in table, table
    setups = json.loads((out / "replicas.json").read_text(encoding="utf-8"))["scenarios"]["replicas"]["setups"]
    assert set(setups) == {"direct", "haproxy-2"}
    assert setups["haproxy-2"][0]["per_replica"] == {"r1": 3, "r2": 2}  # round robin, then sticky
    assert all(cpu > 0 for cpu in setups["haproxy-2"][0]["app_cpu_s"])  # both replicas served


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


def test_baselines_get_switchboards_heap_settings() -> None:
    """One heap rule for every Gradio app measured: the baselines' settings are Switchboard's."""
    import app
    from bench import heap

    assert heap.YOUNG_THRESHOLD == app.GC_YOUNG_THRESHOLD == YOUNG_THRESHOLD
    assert heap.read_mark("noise\n" + heap.MARK + '{"threshold": 7000, "frozen": 12}\n') == {
        "threshold": 7000, "frozen": 12}
    assert heap.read_mark("no mark here\n") is None


async def test_floor_reads_the_upstream_raw_like_every_path(fake) -> None:
    """The floor is the fake's stream read with the benchmark's raw reader (one connection per stream,
    as Switchboard's HTTP API is read), not through the SDK's pydantic models: every content chunk is one
    update, the usage chunk (no choices) is skipped, and a failure is reported, never raised."""
    from fake_upstream import Behaviour

    from bench.clients import SDKTarget

    floor = SDKTarget(fake.base_url)
    fake.push(Behaviour(reply="abcd" * 8, chunk_size=4, usage=True))
    visit = await floor.visit("hello", [{"role": "system", "content": "be brief"}], "abcd" * 8)
    assert visit.ok, visit.error
    assert visit.text == "abcd" * 8 and len(visit.updates) == 8 and visit.ttft is not None
    sent = fake.last
    assert sent.stream and sent.messages[-1] == {"role": "user", "content": "hello"}
    assert sent.headers.get("authorization") == "Bearer sk-bench"
    assert sent.headers.get("connection") == "close"  # RawStream's request, not the SDK's pooled client
    assert "openai" not in sent.headers.get("user-agent", "").lower()

    fake.push(Behaviour(status=500))
    failed = await floor.visit("hello", None, "abcd" * 8)
    assert not failed.ok and "500" in (failed.error or "")
    fake.push(Behaviour(reply="abcd" * 8, chunk_size=4, cut_after=2))
    cut = await floor.visit("hello", None, "abcd" * 8)
    assert not cut.ok and cut.error
    await floor.close()


def test_report_shows_both_load_chat_variants_and_both_graces() -> None:
    from bench.report import headlines, memory_headlines

    def mem(grace, growth, sessions=1000):
        return {"grace_s": grace, "sessions": sessions, "growth_mb": growth,
                "growth_per_1000_mb": growth * 1000 / sessions}

    memory = {"sessions": 1000, "targets": {"sw_ui": mem(600.0, 80.0), "sw_ui_grace2": mem(2.0, 12.0),
                                            "lc_ui": mem(None, 6.0, 300), "lu_ui": mem(None, 40.0)}}
    rows = memory_headlines(memory)
    assert [r["result"] for r in rows] == ["MISS", "PASS"]  # 80 MB at the default grace, 12 MB at 2 s
    assert "session grace 600 s (the default)" in rows[0]["figure"] and "session grace 2 s)" in rows[1]["figure"]
    for row in rows:
        assert row["baseline"] == "load_chat 20.0 MB per 1,000; load_chat unlimited 40.0 MB per 1,000"
    assert rows[0]["ratio"] == "4.00× load_chat's"
    assert memory_headlines({"sessions": 1000, "targets": {}}) == []

    def step(n, completed, p99, deadline=60.0, censored=False):
        return {"visitors": n, "n": n, "completed": completed, "errors": 0, "ttft_p99": p99, "max_gap": 0.2,
                "vs_one_stream": 1.2, "deadline_s": deadline, "censored": censored}

    ramp = {"steps": [1, 200], "targets": {
        "sw_ui": [step(200, 200, 0.8)], "lc_ui": [step(200, 10, math.inf, 17.0, True)],
        "lu_ui": [step(200, 200, 2.5)]}}
    rows = {r["figure"]: r for r in headlines({"scenarios": {"ramp": ramp}})}
    failed = rows["200 simultaneous visitors: failed or incomplete (Switchboard UI)"]["baseline"]
    assert failed == "load_chat 190 of 200; load_chat unlimited 0 of 200"
    ttft = rows["200 visitors: TTFT p99 (Switchboard UI)"]["baseline"]
    assert ttft == "load_chat > 17.00 s (never started); load_chat unlimited 2500.0 ms"


def test_replicas_report_judges_the_top_step_of_each_balanced_setup() -> None:
    from bench.replicas import per_replica
    from bench.replicas_report import section

    assert per_replica([{"Cookie": "switchboard_replica=r2"}, {"Cookie": "a=1; switchboard_replica=r1"}, {}]) == {
        "-": 1, "r1": 1, "r2": 1}

    def row(n, p99, gap, errors=0, per=None):
        return {"visitors": n, "n": n, "completed": n - errors, "errors": errors, "error_examples": [],
                "ttft_p50": p99 / 2, "ttft_p99": p99, "max_gap": gap, "gap_p99": gap, "wall_s": 11.0,
                "app_cpu_s": [1.0] * len(per or {"-": n}), "haproxy_cpu_s": 0.5, "client_cpu_s": 2.0,
                "per_replica": per or {"-": n}}

    setups = {"direct": [row(50, 0.5, 0.2), row(200, 4.0, 0.8)],
              "haproxy-2": [row(50, 0.4, 0.2, per={"r1": 25, "r2": 25}),
                            row(200, 0.9, 0.45, per={"r1": 100, "r2": 100})],
              "haproxy-3": [row(200, 0.8, 0.3, errors=1, per={"r1": 67, "r2": 67, "r3": 66})]}
    res = {"scenarios": {"replicas": {"visitors": [50, 200], "tps": 20.0, "reply_tokens": 200, "setups": setups}}}
    text = "\n".join(section(res))
    lines = {line.split(" | ")[0] + " | " + line.split(" | ")[1]: line for line in text.splitlines()
             if line.startswith("| ") and " | " in line}
    two = lines["| haproxy, 2 replicas | 200"]
    assert "**PASS**" in two and "0.23× / 0.56×" in two and "r1 100, r2 100" in two  # against the 1 process
    assert "**MISS**" in lines["| haproxy, 3 replicas | 200"]  # one error
    setups["haproxy-2"][1]["cut_streams"] = 1
    assert "**MISS**" in "\n".join(section(res))  # a cut queue stream is an error a browser would show
    assert "PASS" not in lines["| 1 process, no balancer | 200"] and "MISS" not in lines["| haproxy, 2 replicas | 50"]

