"""The benchmark's scenarios. Each returns a JSON-able dict that ``report.py`` turns into tables and plots."""

from __future__ import annotations

import asyncio
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from .before import Checkout, commit_of, resolve, tree_env, write_conversation
from .clients import (
    BrowserChatTarget,
    GradioAPITarget,
    HTTPStreamTarget,
    SDKTarget,
    Target,
    Visit,
    fetch_config,
    fetch_info,
    gather_visits,
    make_http_client,
    probe_http_api,
)
from .fake_server import reply_text
from .history_core import plain_history, sentence, ui_history
from .procs import ROOT, AppProcess, FakeProcess, Sampler, free_port
from .stats import percentile, summary

LABELS = {
    "sdk": "Upstream floor (the fake's stream read straight, raw, as every path is read; no front end)",
    "sw_ui": "Switchboard: chat UI (browser submit chain)",
    "sw_api": "Switchboard: Gradio API /chat",
    "sw_http": "Switchboard: HTTP API /chat/stream",
    "lc_ui": "gr.load_chat: chat UI (browser submit chain)",
    "lc_api": "gr.load_chat: Gradio API",
    "lu_ui": "gr.load_chat with default_concurrency_limit=None and 512 threads: chat UI (browser submit chain)",
    "gf_ui": "Gradio floor: a bare gr.ChatInterface streaming from the fake (browser submit chain)",
}
SHORT = {"sdk": "Upstream floor", "sw_ui": "Switchboard UI", "sw_api": "Switchboard /chat",
         "sw_http": "Switchboard HTTP", "lc_ui": "load_chat UI", "lc_api": "load_chat API",
         "lu_ui": "load_chat unlimited UI", "gf_ui": "Gradio floor UI",
         "sw_ui_grace2": "Switchboard UI, 2 s grace"}  # the last: the memory scenario's short-grace run
BEFORE = "before_"  # key prefix of the paths on the --before checkout's Switchboard ("before_sw_http", ...)
for _k in ("sw_ui", "sw_api", "sw_http", "sw_ui_grace2"):
    SHORT[BEFORE + _k] = f"Before: {SHORT[_k]}"
    if _k in LABELS:
        LABELS[BEFORE + _k] = f"the same path on the --before checkout's Switchboard ({LABELS[_k]})"
SCENARIOS = ("ttft", "throughput", "ramp", "history", "memory", "coldstart", "replicas")
DEFAULT_SCENARIOS = SCENARIOS[:-1]  # replicas only when asked for (--only replicas): it writes replicas.md
START_TIMEOUT = 300.0  # seconds for an app to answer on / (a loaded 2-core machine, several apps starting at once)
SYSTEM_PROMPT = "You are a helpful assistant. Be concise and direct."  # Switchboard's default, for the floor


@dataclass
class Options:
    quick: bool = False
    out: Path = ROOT / "docs" / "benchmarks"
    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    chunk_size: int = 4
    ttft_rounds: int = 3
    ttft_samples: int = 40
    ttft_reply_tokens: int = 20
    throughput_tokens: int = 4000
    throughput_runs: int = 3
    ramp: tuple[int, ...] = (1, 25, 50, 100, 200)
    ramp_tps: float = 20.0
    ramp_reply_tokens: int = 200
    # load_chat (defaults) last: the visitors it has not served by its deadline stay queued in it for a while
    ramp_targets: tuple[str, ...] = ("sdk", "sw_ui", "sw_http", "sw_api", "lu_ui", "gf_ui", "lc_ui")
    lc_deadline_factor: float = 1.5
    history_core_turns: tuple[int, ...] = (10, 100, 500, 1000, 2000)
    history_core_reps: int = 20
    history_app_turns: tuple[int, ...] = (10, 100, 1000, 2000)
    history_app_reps: int = 5
    history_reply_tokens: int = 20
    history_tps: float = 100.0
    sessions: int = 1000
    session_concurrency: int = 20
    memory_warmup: int = 200  # same concurrency: the allocator's working set is reached before measuring
    memory_baselines: tuple[str, ...] = ("lc_ui", "lu_ui")  # beside Switchboard at its default grace and at 2 s
    memory_baseline_sessions: int = 300  # gr.load_chat serves one event at a time: fewer, scaled per 1,000
    extra_cold_starts: int = 1
    fresh_apps: bool = True  # restart the apps before the ramp and the memory scenario
    keep_logs: bool = False
    app_script: str = "app.py"
    before: str | None = None  # a checkout (directory or git revision) measured beside this tree, same run
    warmups: int = 3
    memory_settle_s: float = 3.0
    parallel_start: bool = False  # start both apps at once (quick mode: faster, cold start less clean)
    render: Path | None = None  # only re-render a results directory (python -m bench --render DIR)
    replicas: tuple[int, ...] = (1, 2, 3)  # replicas behind haproxy, each against one process (bench/replicas.py)
    replica_visitors: tuple[int, ...] = (50, 200)  # simultaneous chat-tab visitors per step

    @classmethod
    def quick_mode(cls, **over: Any) -> Options:
        base = dict(
            quick=True, out=ROOT / "docs" / "benchmarks" / "quick", ttft_rounds=2, ttft_samples=5,
            warmups=1, throughput_tokens=500, throughput_runs=2, ramp=(1, 20), ramp_reply_tokens=20, ramp_tps=40.0,
            ramp_targets=("sdk", "sw_ui", "sw_http", "lu_ui", "lc_ui"), lc_deadline_factor=1.5,
            history_core_turns=(10, 2000), history_core_reps=3, history_app_turns=(10, 200),
            history_app_reps=2, history_reply_tokens=10, sessions=30, session_concurrency=20, memory_warmup=5,
            memory_baselines=(), memory_settle_s=1.0, extra_cold_starts=0, fresh_apps=False,
            parallel_start=True, replicas=(2,), replica_visitors=(5,),
        )
        base.update(over)
        return cls(**base)


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import gradio
    import openai

    return {
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu": cpu, "logical_cores": psutil.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(), "gradio": gradio.__version__, "openai": openai.__version__,
        "platform": platform.platform(),
    }


def visit_stats(visits: list[Visit]) -> dict[str, Any]:
    ttfts = [v.ttft if v.ttft is not None else math.inf for v in visits]
    gaps = [v.max_gap for v in visits if v.ok and v.max_gap is not None]
    errors = [v.error for v in visits if not v.ok]
    return {
        "n": len(visits), "completed": sum(v.ok for v in visits), "errors": len(errors),
        "error_examples": sorted(set(e for e in errors if e))[:3],
        "ttft_p50": percentile(ttfts, 50), "ttft_p99": percentile(ttfts, 99), "ttft_max": max(ttfts, default=math.nan),
        "max_gap": max(gaps, default=math.nan), "gap_p99": percentile(gaps, 99) if gaps else math.nan,
        "updates": sum(len(v.updates) for v in visits),
    }


class Bench:
    def __init__(self, opts: Options, log=print) -> None:
        self.opts = opts
        self.log = log
        self.fake: FakeProcess | None = None
        self.apps: dict[str, AppProcess] = {}
        self.client: httpx.AsyncClient | None = None
        self.targets: dict[str, Target] = {}
        self.notes: list[str] = []
        self.cold: dict[str, list[float]] = {"switchboard": [], "load_chat": [], "load_chat_unlimited": [],
                                             "gradio_floor": [], "switchboard_before": []}
        self.before: Checkout | None = None
        self.first_visit: dict[str, float] = {}
        self.http_api_note: str | None = None
        self.log_dir = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
        self.results: dict[str, Any] = {}

    # ------------------------------------------------------------------ processes and targets

    def new_app(self, kind: str, grace: float | None = None, before: bool = False) -> AppProcess:
        """An app process (not started); ``before``: Switchboard from the --before checkout."""
        assert self.fake is not None
        extra = {}
        if before:
            assert self.before is not None
            extra = {"root": self.before.root, "script": "app.py"}
        return AppProcess(kind, self.fake.base_url, **{"script": self.opts.app_script, **extra},
                          session_grace=grace)

    async def start_app(self, kind: str, name: str | None = None, grace: float | None = None) -> AppProcess:
        """Start (or restart) the app ``name`` (default: ``kind``); ``grace``: Switchboard's session grace.
        ``kind`` "switchboard_before" is Switchboard run from the --before checkout."""
        name = name or kind
        old = self.apps.pop(name, None)
        if old is not None:
            old.stop()
        before = kind == "switchboard_before"
        proc = self.new_app("switchboard" if before else kind, grace, before)
        app = await asyncio.to_thread(proc.start, START_TIMEOUT, self.log_dir)
        self.cold[kind].append(app.cold_start)
        self.apps[name] = app
        self.results.setdefault("meta", {}).setdefault("heap", {})[name] = (
            "app.settle_heap (its own)" if kind.startswith("switchboard") else app.heap)
        self.log(f"  {name} up on :{app.port} in {app.cold_start:.2f} s")
        return app

    async def build_targets(self) -> None:
        assert self.client is not None and self.fake is not None
        for old in self.targets.values():
            await old.close()
        self.targets = {"sdk": SDKTarget(self.fake.base_url, SHORT["sdk"])}
        sw, lc = self.apps["switchboard"], self.apps["load_chat"]
        cfg_sw = await fetch_config(self.client, sw.url)
        cfg_lc = await fetch_config(self.client, lc.url)
        self.targets["sw_ui"] = BrowserChatTarget(SHORT["sw_ui"], sw, self.client, cfg_sw)
        self.targets["sw_api"] = GradioAPITarget(SHORT["sw_api"], sw, self.client, cfg_sw, "switchboard",
                                                await fetch_info(self.client, sw.url))
        self.http_api_note = await probe_http_api(self.client, sw.url)
        if self.http_api_note is None:
            self.targets["sw_http"] = HTTPStreamTarget(SHORT["sw_http"], sw, self.client)
        self.targets["lc_ui"] = BrowserChatTarget(SHORT["lc_ui"], lc, self.client, cfg_lc)
        self.targets["lc_api"] = GradioAPITarget(SHORT["lc_api"], lc, self.client, cfg_lc, "load_chat")
        if "switchboard_before" in self.apps:  # the same three paths on the old checkout
            await self.build_before_targets(self.apps["switchboard_before"])
        if "load_chat_unlimited" in self.apps:
            lu = self.apps["load_chat_unlimited"]
            self.targets["lu_ui"] = BrowserChatTarget(SHORT["lu_ui"], lu, self.client,
                                                      await fetch_config(self.client, lu.url))
        if "gradio_floor" in self.apps:
            gf = self.apps["gradio_floor"]
            self.targets["gf_ui"] = BrowserChatTarget(SHORT["gf_ui"], gf, self.client,
                                                      await fetch_config(self.client, gf.url))

    async def build_before_targets(self, old: AppProcess) -> None:
        assert self.client is not None
        b = BEFORE
        cfg = await fetch_config(self.client, old.url)
        self.targets[b + "sw_ui"] = BrowserChatTarget(SHORT[b + "sw_ui"], old, self.client, cfg)
        self.targets[b + "sw_api"] = GradioAPITarget(SHORT[b + "sw_api"], old, self.client, cfg, "switchboard",
                                                     await fetch_info(self.client, old.url))
        note = await probe_http_api(self.client, old.url)
        if note is None:
            self.targets[b + "sw_http"] = HTTPStreamTarget(SHORT[b + "sw_http"], old, self.client)
        else:
            self.notes.append(f"Before: HTTP API path skipped: {note}.")

    def with_before(self, keys) -> list[str]:
        """``keys`` that have a target, each Switchboard path followed by its --before twin (measured next
        to each other, so drift in the machine's load hits both alike)."""
        out = []
        for k in keys:
            out += [x for x in (k, BEFORE + k) if x in self.targets]
        return out

    def app_kinds(self) -> tuple[str, ...]:
        return ("switchboard", *(("switchboard_before",) if self.before else ()), "load_chat", "load_chat_unlimited")

    async def restart_apps(self, floor: bool = False) -> None:
        """Fresh app processes; the Gradio floor too when ``floor`` (only the ramp measures it)."""
        for kind in (*self.app_kinds(), *(("gradio_floor",) if floor else ())):
            await self.start_app(kind)
        if not floor and "gradio_floor" in self.apps:
            self.apps.pop("gradio_floor").stop()
        await self.build_targets()

    def app_of(self, key: str) -> AppProcess | None:
        return getattr(self.targets.get(key), "app", None)

    async def run(self) -> dict[str, Any]:
        o = self.opts
        t_all = time.perf_counter()
        self.results = {"meta": {"machine": machine_info(), "options": {k: (str(v) if isinstance(v, Path) else v)
                                                                        for k, v in asdict(o).items()},
                                 "command": " ".join(["python -m bench", *sys.argv[1:]]),
                                 "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")},
                        "scenarios": {}, "notes": self.notes}
        if o.before:
            self.before = await asyncio.to_thread(resolve, o.before)
            self.results["meta"]["before"] = self.before.describe()
            self.results["meta"]["after"] = {"root": str(ROOT), "commit": commit_of(ROOT)}
            self.log(f"before: {self.before.describe()}")
        self.log("starting the fake upstream")
        self.fake = await asyncio.to_thread(FakeProcess)
        self.client = make_http_client()
        try:
            kinds = self.app_kinds() if set(o.scenarios) - {"replicas"} else ()  # replicas starts its own
            if kinds:
                self.log("starting Switchboard and gr.load_chat, defaults and unlimited (cold start timed)")
            if o.parallel_start and kinds:  # the memory scenario's 2 s-grace Switchboard too
                grace2 = [self.start_app(kind, f"{kind}_grace2", 2.0) for kind in kinds
                          if kind.startswith("switchboard") and "memory" in o.scenarios]
                started = await asyncio.gather(*(self.start_app(kind) for kind in kinds), *grace2,
                                               return_exceptions=True)  # all settle: none left running unseen
                failed = [x for x in started if isinstance(x, BaseException)]
                if failed:
                    raise failed[0]
                self.notes.append("Quick mode starts the apps at once, so its cold-start figures include "
                                  "contention for the CPU.")
            else:
                for kind in kinds:
                    await self.start_app(kind)
            if kinds:
                await self.build_targets()
            if self.http_api_note:
                self.notes.append(f"HTTP API scenario skipped: {self.http_api_note}.")
            for name in SCENARIOS:
                if name not in o.scenarios:
                    continue
                self.log(f"scenario: {name}")
                t0 = time.perf_counter()
                try:
                    self.results["scenarios"][name] = await getattr(self, f"scenario_{name}")()
                except Exception as exc:  # noqa: BLE001 - a broken scenario is reported, the rest still run
                    import traceback

                    traceback.print_exc()
                    self.results["scenarios"][name] = {"error": f"{type(exc).__name__}: {exc}"}
                    self.notes.append(f"Scenario {name} failed: {type(exc).__name__}: {exc}")
                self.log(f"  {name} took {time.perf_counter() - t0:.1f} s")
            self.results["cold_start_samples"] = self.cold
        finally:
            for target in self.targets.values():
                await target.close()
            await self.client.aclose()
            for app in self.apps.values():
                app.stop()
            self.fake.stop()
            if self.before is not None:
                self.before.remove()
        self.results["meta"]["duration_s"] = time.perf_counter() - t_all
        self.results["meta"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        busy = self.results["meta"]["machine"]["load_average"][0]
        if busy > 1.0:
            self.notes.append(f"The machine was not idle when the run started (1-minute load average {busy:.1f} "
                              "on 2 cores): other processes competed for the CPU, so absolute figures are "
                              "pessimistic; the ratios to baselines measured in the same run are the fairer read.")
        self.results["meta"]["logs"] = str(self.log_dir)
        return self.results

    # ------------------------------------------------------------------ scenarios

    async def scenario_replicas(self) -> dict[str, Any]:
        """The chat tab through haproxy in front of 1, 2, 3 replicas on one Redis, against one process."""
        from .replicas import scenario

        return await scenario(self)

    async def scenario_ttft(self) -> dict[str, Any]:
        """Added time to first token, one visitor at a time; interleaved so drift hits all alike."""
        o = self.opts
        assert self.fake is not None
        await asyncio.to_thread(self.fake.configure, o.ttft_reply_tokens, o.chunk_size)
        expected = reply_text(o.ttft_reply_tokens, o.chunk_size)
        if "gradio_floor" not in self.apps:  # the bare ChatInterface: what Gradio's chain alone costs
            await self.start_app("gradio_floor")
            await self.build_targets()
        keys = self.with_before(("sdk", "sw_ui", "sw_api", "sw_http", "lc_ui", "lc_api", "lu_ui", "gf_ui"))
        first: dict[str, float | None] = {}
        for k in keys:  # the first message after start-up (lazy imports, tokenizer load, first connection)
            v = await self.targets[k].visit("first message", None, expected)
            first[k] = v.ttft
            for _ in range(o.warmups):
                await self.targets[k].visit("warm-up", None, expected)
        rounds: dict[str, list[list[float]]] = {k: [] for k in keys}
        before: dict[str, list[float]] = {k: [] for k in keys}  # chat UI chains: send -> the reply step
        errors: dict[str, list[str]] = {k: [] for k in keys}
        for _ in range(o.ttft_rounds):
            samples: dict[str, list[float]] = {k: [] for k in keys}
            for i in range(o.ttft_samples):
                for k in keys:
                    v = await self.targets[k].visit(f"ttft {i}", None, expected)
                    if v.ok and v.ttft is not None:
                        samples[k].append(v.ttft)
                        if v.reply_step is not None:
                            before[k].append(v.reply_step)
                    else:
                        errors[k].append(v.error or "no text")
            for k in keys:
                rounds[k].append(samples[k])
        out: dict[str, Any] = {"targets": {}, "reply_tokens": o.ttft_reply_tokens, "rounds": o.ttft_rounds,
                               "samples_per_round": o.ttft_samples}
        sdk_p50 = [percentile(r, 50) for r in rounds["sdk"]]
        sdk_p99 = [percentile(r, 99) for r in rounds["sdk"]]
        for k in keys:
            p50 = [percentile(r, 50) for r in rounds[k]]
            p99 = [percentile(r, 99) for r in rounds[k]]
            out["targets"][k] = {
                "p50": summary(p50), "p99": summary(p99),
                "added_p50": summary([a - b for a, b in zip(p50, sdk_p50, strict=False)]),
                "added_p99": summary([a - b for a, b in zip(p99, sdk_p99, strict=False)]),
                "first_after_start": first[k], "errors": len(errors[k]), "error_examples": errors[k][:2],
                "before_reply_step_p50": percentile(before[k], 50) if before[k] else None,
                "all": [x for r in rounds[k] for x in r],
            }
        return out

    async def scenario_throughput(self) -> dict[str, Any]:
        """One stream, upstream with no delay: tokens/s delivered and app CPU per 1,000 tokens."""
        o = self.opts
        assert self.fake is not None
        tokens = o.throughput_tokens
        await asyncio.to_thread(self.fake.configure, tokens, o.chunk_size)
        expected = reply_text(tokens, o.chunk_size)
        keys = self.with_before(("sdk", "sw_api", "sw_ui", "sw_http", "lc_api", "lc_ui"))
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in keys}
        errors: dict[str, list[str]] = {k: [] for k in keys}
        for k in keys:  # one warm-up each
            await self.targets[k].visit("warm-up", None, expected)
        for _ in range(o.throughput_runs):
            for k in keys:
                app = self.app_of(k)
                cpu0 = app.cpu() if app else 0.0
                fake0 = self.fake.cpu()
                me0 = time.process_time()
                v = await self.targets[k].visit("throughput", None, expected)
                cpu = (app.cpu() - cpu0) if app else math.nan
                if not v.ok:
                    errors[k].append(v.error or "?")
                    continue
                runs[k].append({
                    "tokens_per_s": tokens / v.total, "seconds": v.total, "ttft": v.ttft,
                    "app_cpu_per_1k": cpu / (tokens / 1000), "updates": len(v.updates),
                    "app_cpu_per_update_s": (cpu / max(1, len(v.updates))) if app else math.nan,
                    "fake_cpu_per_1k": (self.fake.cpu() - fake0) / (tokens / 1000),
                    "client_cpu_per_1k": (time.process_time() - me0) / (tokens / 1000),
                })
        out: dict[str, Any] = {"tokens": tokens, "runs": o.throughput_runs, "targets": {}}
        for k in keys:
            r = runs[k]
            out["targets"][k] = {name: summary(x[name] for x in r) for name in (r[0] if r else {})}
            out["targets"][k]["errors"] = len(errors[k])
            out["targets"][k]["error_examples"] = errors[k][:2]
        return out

    async def scenario_ramp(self) -> dict[str, Any]:
        """Concurrency ramp: N simultaneous visitors, upstream paced at ramp_tps tokens/s each."""
        o = self.opts
        assert self.fake is not None
        floor = "gf_ui" in o.ramp_targets
        if o.fresh_apps or (floor and "gradio_floor" not in self.apps):
            await self.restart_apps(floor=floor)
        await asyncio.to_thread(self.fake.configure, o.ramp_reply_tokens, o.chunk_size, o.ramp_tps)
        expected = reply_text(o.ramp_reply_tokens, o.chunk_size)
        one_stream = o.ramp_reply_tokens / o.ramp_tps
        keys = self.with_before(o.ramp_targets)
        out: dict[str, Any] = {"tps": o.ramp_tps, "reply_tokens": o.ramp_reply_tokens, "steps": list(o.ramp),
                               "nominal_stream_s": one_stream, "targets": {}}
        for k in keys:
            target = self.targets[k]
            app = self.app_of(k)
            # gr.load_chat with its defaults serves one event at a time: its steps stop at a deadline
            deadline = (o.lc_deadline_factor * one_stream + 2) if k.startswith("lc") else max(60.0, 8 * one_stream)
            steps = list(o.ramp) if 1 in o.ramp else [1, *o.ramp]
            rows = []
            single: float | None = None
            await self.fake.wait_idle(60)
            await target.visit("warm-up", None, expected)  # the first message after start-up is not measured
            for n in steps:
                await self.fake.wait_idle(60)
                await asyncio.sleep(0.1 if o.quick else 0.5)
                cpu0 = app.cpu() if app else 0.0
                fake0 = self.fake.cpu()
                me0 = time.process_time()
                sampler = Sampler(app.rss) if app else None
                if sampler:
                    sampler.__enter__()
                try:
                    visits, t0, t1, censored = await gather_visits(target, n, f"ramp {n}", expected, deadline)
                finally:
                    if sampler:
                        sampler.__exit__()
                wall = t1 - t0
                row = {"visitors": n, **visit_stats(visits), "wall_s": wall, "deadline_s": deadline,
                       "censored": censored,
                       "app_cpu_s": (app.cpu() - cpu0) if app else math.nan,
                       "peak_rss_mb": sampler.peak / 1e6 if sampler else math.nan,
                       "fake_cpu_s": self.fake.cpu() - fake0, "client_cpu_s": time.process_time() - me0}
                row["app_cpu_per_update_s"] = row["app_cpu_s"] / max(1, row["updates"])
                if n == 1:
                    single = wall
                row["vs_one_stream"] = wall / single if single else math.nan
                rows.append(row)
                self.log(f"    {SHORT[k]:18s} {n:4d} visitors: {row['completed']}/{n} ok, "
                         f"TTFT p50 {row['ttft_p50']*1000:.0f} ms p99 {row['ttft_p99']*1000:.0f} ms, "
                         f"wall {wall:.1f} s ({row['vs_one_stream']:.2f}x), max gap {row['max_gap']*1000:.0f} ms, "
                         f"app CPU {row['app_cpu_s']:.1f} s, client CPU {row['client_cpu_s']:.1f} s")
            out["targets"][k] = rows
        return out

    def _stored_conversation(self, app: AppProcess, turns: int) -> str:
        """A conversation of ``turns`` finished turns written into ``app``'s database (the one its benchmark
        process uses) through the store of the app's own tree, owned as an API caller without a token is."""
        assert app.data_dir is not None
        return write_conversation(app.root, app.data_dir / f"bench-{app.port}.db", plain_history(turns))

    async def _history_core(self, root: Path) -> Any:
        """``bench.history_core`` of the tree at ``root`` (its own module timing its own core), or an error."""
        o = self.opts
        spec = json.dumps({"turns": list(o.history_core_turns), "reps": o.history_core_reps})
        proc = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "bench.history_core", spec], cwd=root, capture_output=True,
            text=True, timeout=600, env=tree_env(root))
        if proc.returncode == 0:
            return json.loads(proc.stdout.strip().splitlines()[-1])["results"]
        error = {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
        self.notes.append(f"History (core{', before' if root != ROOT else ''}) failed: {error['error']}")
        return error

    async def scenario_history(self) -> dict[str, Any]:
        """History cost per turn: the core in-process, then through the app against the upstream floor."""
        o = self.opts
        assert self.fake is not None
        core = await self._history_core(ROOT)
        core_before = await self._history_core(self.before.root) if self.before is not None else None
        await asyncio.to_thread(self.fake.configure, o.history_reply_tokens, o.chunk_size, o.history_tps)
        expected = reply_text(o.history_reply_tokens, o.chunk_size)
        if "gradio_floor" not in self.apps:  # the bare ChatInterface with the same chat
            await self.start_app("gradio_floor")
            await self.build_targets()
        keys = self.with_before(("sdk", "sw_api", "sw_ui", "gf_ui", "sw_http"))
        app_rows: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
        for n in o.history_app_turns:
            times: dict[str, float] = {}
            for k in keys:
                app = self.app_of(k)
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
                    target = self.targets[k]
                    assert isinstance(target, BrowserChatTarget)
                    page = target.new_page()
                    page[target.chatbot] = ui_history(plain_history(n))
                elif k.removeprefix(BEFORE) == "sw_http":
                    assert app is not None
                    conversation = await asyncio.to_thread(self._stored_conversation, app, n)
                for rep in range(o.history_app_reps + 1):  # the first is a warm-up (earlier turns counted)
                    if rep == 1 and app:
                        cpu0 = app.cpu()
                    message = f"New question {rep}: {sentence(rep, 12)}"
                    if page is not None:
                        v = await self.targets[k].visit(message, None, expected, page=page,
                                                        session_hash=f"history-{k}-{n}")
                    elif conversation is not None:
                        v = await self.targets[k].visit(message, None, expected, conversation_id=conversation)
                    elif k == "sdk":
                        v = await self.targets[k].visit(
                            message, [{"role": "system", "content": SYSTEM_PROMPT}, *convo], expected)
                    else:
                        v = await self.targets[k].visit(message, list(convo), expected,
                                                        session_hash=f"history-{k}-{n}")
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
                times[k] = statistics.median(totals) if totals else math.nan
                payload = 0 if conversation is not None else len(json.dumps(plain_history(n)))  # history sent
                app_rows[k].append({"turns": n, "payload_bytes": payload, "errors": errs,
                                    "total": summary(totals), "ttft": summary(ttfts), "app_cpu": summary([cpu])})
            self.log(f"    {n} turns: " + ", ".join(f"{SHORT[k]} {times[k]*1000:.0f} ms" for k in keys))
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

    async def _browser_session(self, target: BrowserChatTarget, expected: str) -> Visit:
        """One visitor: load the page, hold the heartbeat stream, send one message, leave."""
        assert self.client is not None
        sh = uuid.uuid4().hex[:12]
        url = target.url
        await self.client.get(url + "/")

        async def heartbeat() -> None:
            async with self.client.stream("GET", f"{url}/gradio_api/heartbeat/{sh}") as r:
                async for _ in r.aiter_bytes():
                    pass

        hb = asyncio.create_task(heartbeat())
        try:
            return await target.visit("hello", None, expected, session_hash=sh)
        finally:
            hb.cancel()
            await asyncio.gather(hb, return_exceptions=True)

    async def _sessions(self, target: BrowserChatTarget, count: int, expected: str,
                        on_progress=None) -> list[Visit]:
        sem = asyncio.Semaphore(self.opts.session_concurrency)
        done = 0

        async def one() -> Visit:
            nonlocal done
            async with sem:
                v = await self._browser_session(target, expected)
            done += 1
            if on_progress:
                on_progress(done)
            return v

        return await asyncio.gather(*(one() for _ in range(count)))

    async def scenario_memory(self) -> dict[str, Any]:
        """RSS after N browser sessions opened (page, heartbeat, one message) and closed: Switchboard at its
        default session grace and, in a second fresh process, at 2 s; the load_chat baselines beside."""
        o = self.opts
        assert self.fake is not None and self.client is not None
        if o.fresh_apps:
            await self.restart_apps()
        await asyncio.to_thread(self.fake.configure, 5, o.chunk_size)
        expected = reply_text(5, o.chunk_size)
        out: dict[str, Any] = {"sessions": o.sessions, "concurrency": o.session_concurrency, "targets": {},
                               "settle_s": o.memory_settle_s}
        targets: dict[str, Target] = {}
        shorts: dict[str, BrowserChatTarget] = {}
        try:
            for kind, prefix in (("switchboard", ""), ("switchboard_before", BEFORE)):
                if prefix + "sw_ui" not in self.targets:
                    continue
                short = self.apps.get(f"{kind}_grace2")
                if short is None or o.fresh_apps:
                    short = await self.start_app(kind, name=f"{kind}_grace2", grace=2.0)
                shorts[kind] = BrowserChatTarget(SHORT[prefix + "sw_ui_grace2"], short, self.client,
                                                 await fetch_config(self.client, short.url))
                targets[prefix + "sw_ui"] = self.targets[prefix + "sw_ui"]
                targets[prefix + "sw_ui_grace2"] = shorts[kind]
            targets.update({k: self.targets[k] for k in o.memory_baselines if k in self.targets})
            for k, target in targets.items():
                assert isinstance(target, BrowserChatTarget)
                out["targets"][k] = await self._memory_of(k, target, expected)
        finally:
            for short_target in shorts.values():
                await short_target.close()
            for kind in ("switchboard_grace2", "switchboard_before_grace2"):
                if kind in self.apps:
                    self.apps.pop(kind).stop()
        return out

    async def _memory_of(self, k: str, target: BrowserChatTarget, expected: str) -> dict[str, Any]:
        o = self.opts
        app = target.app
        await self._sessions(target, o.memory_warmup, expected)
        await asyncio.sleep(o.memory_settle_s)
        rss0 = app.rss()
        curve = [(0, rss0 / 1e6)]
        count = min(o.sessions, o.memory_baseline_sessions) if k == "lc_ui" else o.sessions
        step = max(1, count // 10)
        t0 = time.perf_counter()
        cpu0 = app.cpu()
        visits = await self._sessions(target, count, expected,
                                      lambda done: curve.append((done, app.rss() / 1e6)) if done % step == 0 else None)
        elapsed = time.perf_counter() - t0
        cpu = app.cpu() - cpu0
        await asyncio.sleep(o.memory_settle_s)  # let the server notice the closed heartbeats
        rss1 = app.rss()
        curve.append((count, rss1 / 1e6))
        growth = (rss1 - rss0) / 1e6
        half = [c for c in curve if c[0] >= count // 2]  # slope over the second half: what scales
        slope = ((half[-1][1] - half[0][1]) * 1000 / (half[-1][0] - half[0][0])
                 if len(half) >= 2 and half[-1][0] > half[0][0] else math.nan)
        self.log(f"    {SHORT[k]}: RSS {rss0/1e6:.0f} -> {rss1/1e6:.0f} MB after {count} sessions ({elapsed:.1f} s)")
        return {
            "slope_per_1000_mb": slope, "grace_s": app.grace,
            "sessions": count, "rss_before_mb": rss0 / 1e6, "rss_after_mb": rss1 / 1e6, "growth_mb": growth,
            "growth_per_1000_mb": growth * 1000 / count, "curve": curve,
            "errors": sum(not v.ok for v in visits),
            "error_examples": sorted({v.error for v in visits if v.error})[:2],
            "seconds": elapsed, "app_cpu_per_session_s": cpu / count,
        }

    async def scenario_coldstart(self) -> dict[str, Any]:
        """`python app.py` to the first 200 on `/`: every launch of this run, plus extra ones."""
        o = self.opts
        for _ in range(o.extra_cold_starts):
            for kind in (k for k in self.app_kinds() if k != "load_chat_unlimited"):
                app = self.new_app("switchboard" if kind == "switchboard_before" else kind,
                                   before=kind == "switchboard_before")
                await asyncio.to_thread(app.start, START_TIMEOUT, self.log_dir)
                self.cold[kind].append(app.cold_start)
                app.stop()
        idle: dict[str, float] = {}
        window = 1.0 if o.quick else 3.0
        await asyncio.sleep(0.5)
        before = {kind: app.cpu() for kind, app in self.apps.items()}
        await asyncio.sleep(window)
        for kind, app in self.apps.items():
            idle[kind] = (app.cpu() - before[kind]) / window
        bare: list[float] = []
        if not o.quick:
            for _ in range(max(2, o.extra_cold_starts)):
                bare.append(await asyncio.to_thread(bare_gradio_cold_start))
        return {"samples": self.cold, "bare_gradio": bare, "idle_cpu": idle, "idle_window_s": window,
                "switchboard": summary(self.cold["switchboard"]), "load_chat": summary(self.cold["load_chat"]),
                "switchboard_before": summary(self.cold["switchboard_before"]), "bare": summary(bare)}


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
