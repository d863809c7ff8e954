"""History cost per turn: the core timed in a process of its own (bench/history_core.py), then every path
through the app against the upstream floor, at growing conversation lengths."""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.before import tree_env, write_conversation
from bench.clients import BrowserChatTarget
from bench.fake_server import reply_text
from bench.history_core import plain_history, sentence, ui_history
from bench.procs import ROOT, AppProcess
from bench.scenarios.options import SYSTEM_PROMPT
from bench.scenarios.paths import BEFORE, SHORT
from bench.stats import summary
from bench.visit import Visit

if TYPE_CHECKING:
    from bench.scenarios.runner import Bench


def _stored_conversation(app: AppProcess, turns: int) -> str:
    """A conversation of ``turns`` finished turns written into ``app``'s database (the one its benchmark
    process uses) through the store of the app's own tree, owned as an API caller without a token is."""
    assert app.data_dir is not None
    return write_conversation(app.root, app.data_dir / f"bench-{app.port}.db", plain_history(turns))


async def _history_core(bench: Bench, root: Path) -> Any:
    """``bench.history_core`` of the tree at ``root`` (its own module timing its own core), or an error."""
    o = bench.opts
    spec = json.dumps({"turns": list(o.history_core_turns), "reps": o.history_core_reps})
    proc = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "bench.history_core", spec], cwd=root, capture_output=True,
        text=True, timeout=600, env=tree_env(root))
    if proc.returncode == 0:
        return json.loads(proc.stdout.strip().splitlines()[-1])["results"]
    error = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    bench.notes.append(f"History (core{', before' if root != ROOT else ''}) failed: {error['error']}")
    return error


async def scenario(bench: Bench) -> dict[str, Any]:
    """History cost per turn: the core in-process, then through the app against the upstream floor."""
    o = bench.opts
    assert bench.fake is not None
    core = await _history_core(bench, ROOT)
    core_before = await _history_core(bench, bench.before.root) if bench.before is not None else None
    await asyncio.to_thread(bench.fake.configure, o.history_reply_tokens, o.chunk_size, o.history_tps)
    expected = reply_text(o.history_reply_tokens, o.chunk_size)
    if "gradio_floor" not in bench.apps:  # the bare ChatInterface with the same chat
        await bench.start_app("gradio_floor")
        await bench.build_targets()
    keys = bench.with_before(("sdk", "sw_api", "sw_ui", "gf_ui", "sw_http"))
    app_rows: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
    for n in o.history_app_turns:
        times: dict[str, float] = {}
        for k in keys:
            row, times[k] = await _turns(bench, k, n, expected)
            app_rows[k].append(row)
        bench.log(f"    {n} turns: " + ", ".join(f"{SHORT[k]} {times[k]*1000:.0f} ms" for k in keys))
    # added latency over the upstream floor with the same messages
    for k in keys:
        if k == "sdk":
            continue
        for row, base in zip(app_rows[k], app_rows["sdk"], strict=False):
            row["added_total"] = row["total"]["median"] - base["total"]["median"]
            row["added_ttft"] = row["ttft"]["median"] - base["ttft"]["median"]
    out = {"core": core, "app": app_rows, "reply_tokens": o.history_reply_tokens, "tps": o.history_tps,
           "reps": o.history_app_reps}
    if core_before is not None:
        out["core_before"] = core_before
    return out


async def _turns(bench: Bench, k: str, n: int, expected: str) -> tuple[dict[str, Any], float]:
    """Path ``k`` at ``n`` turns: a warm-up turn, then the timed ones; (its row, the median turn time)."""
    o = bench.opts
    app = bench.app_of(k)
    totals: list[float] = []
    ttfts: list[float] = []
    errs = 0
    cpu0 = 0.0
    # The chat UIs: one page whose conversation grows by a turn each time, as a visitor's does
    # (the browser sends the whole chat every turn). /chat: one API client (one session, as a
    # gradio_client Client keeps) whose conversation grows the same way, the whole history sent
    # with each call; the upstream floor sends the same messages. The HTTP API: a stored conversation
    # of n turns, each request carrying only the new message.
    page, conversation = None, None
    convo = plain_history(n)
    if k.removeprefix(BEFORE) in ("sw_ui", "gf_ui"):
        target = bench.targets[k]
        assert isinstance(target, BrowserChatTarget)
        page = target.new_page()
        page[target.chatbot] = ui_history(plain_history(n))
    elif k.removeprefix(BEFORE) == "sw_http":
        assert app is not None
        conversation = await asyncio.to_thread(_stored_conversation, app, n)
    for rep in range(o.history_app_reps + 1):  # the first is a warm-up (earlier turns counted)
        if rep == 1 and app:
            cpu0 = app.cpu()
        message = f"New question {rep}: {sentence(rep, 12)}"
        v = await _send(bench, k, n, message, expected, convo, page, conversation)
        convo += [{"role": "user", "content": message}, {"role": "assistant", "content": expected}]
        if rep == 0:
            continue
        if not v.ok:
            errs += 1
            continue
        totals.append(v.total)
        ttfts.append(v.ttft)
    # CPU over the block of turns / turns (psutil reads CPU in 10 ms ticks)
    cpu = (app.cpu() - cpu0) / o.history_app_reps if app else math.nan
    payload = 0 if conversation is not None else len(json.dumps(plain_history(n)))  # history sent
    row = {"turns": n, "payload_bytes": payload, "errors": errs,
           "total": summary(totals), "ttft": summary(ttfts), "app_cpu": summary([cpu])}
    return row, statistics.median(totals) if totals else math.nan


async def _send(bench: Bench, k: str, n: int, message: str, expected: str, convo: list[dict],
                page: dict | None, conversation: str | None) -> Visit:
    """One turn on path ``k``: from the page, in the stored conversation, or with the history ``convo``."""
    if page is not None:
        return await bench.targets[k].visit(message, None, expected, page=page,
                                            session_hash=f"history-{k}-{n}")
    if conversation is not None:
        return await bench.targets[k].visit(message, None, expected,
                                            conversation_id=conversation)
    if k == "sdk":
        return await bench.targets[k].visit(
            message, [{"role": "system", "content": SYSTEM_PROMPT}, *convo], expected)
    return await bench.targets[k].visit(message, list(convo), expected,
                                        session_hash=f"history-{k}-{n}")
