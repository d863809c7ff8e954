"""The benchmark run (:class:`Bench`): the fake upstream, the apps and their targets, each scenario in turn
(bench/scenarios/<name>.py; replicas: bench/replicas.py), the results dict that bench/report/ renders."""

from __future__ import annotations

import asyncio
import importlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.before import Checkout, commit_of, resolve
from bench.clients import BrowserChatTarget
from bench.gradio_queue import fetch_config, fetch_info
from bench.procs import ROOT, AppProcess, FakeProcess
from bench.scenarios.options import SCENARIOS, START_TIMEOUT, Options
from bench.scenarios.paths import BEFORE, SHORT
from bench.targets import GradioAPITarget, HTTPStreamTarget, SDKTarget, probe_http_api
from bench.visit import Target, make_http_client


def scenario_of(name: str) -> Callable[[Bench], Awaitable[dict[str, Any]]]:
    """The function that runs scenario ``name`` on a :class:`Bench` and returns its JSON-able results."""
    module = "bench.replicas" if name == "replicas" else f"bench.scenarios.{name}"
    return importlib.import_module(module).scenario


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


class Bench:
    """One benchmark run: its apps and their targets, which every scenario module reads and starts more of."""

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
            await self.start_apps()
            for name in SCENARIOS:
                if name in o.scenarios:
                    await self.run_scenario(name)
            self.results["cold_start_samples"] = self.cold
        finally:
            await self.stop()
        self.finish(t_all)
        return self.results

    async def start_apps(self) -> None:
        """Every app the scenarios asked for share (cold start timed), then their targets."""
        o = self.opts
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

    async def run_scenario(self, name: str) -> None:
        """One scenario into the results; a broken one is reported there and in the notes, the rest still run."""
        self.log(f"scenario: {name}")
        t0 = time.perf_counter()
        try:
            self.results["scenarios"][name] = await scenario_of(name)(self)
        except Exception as exc:  # noqa: BLE001 - a broken scenario is reported, the rest still run
            import traceback

            traceback.print_exc()
            self.results["scenarios"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            self.notes.append(f"Scenario {name} failed: {type(exc).__name__}: {exc}")
        self.log(f"  {name} took {time.perf_counter() - t0:.1f} s")

    async def stop(self) -> None:
        """Every target, client and process this run started (and the --before checkout) gone."""
        assert self.client is not None and self.fake is not None
        for target in self.targets.values():
            await target.close()
        await self.client.aclose()
        for app in self.apps.values():
            app.stop()
        self.fake.stop()
        if self.before is not None:
            self.before.remove()

    def finish(self, t_all: float) -> None:
        """The run's duration, the load at its end, and a note when the machine was busy at its start."""
        self.results["meta"]["duration_s"] = time.perf_counter() - t_all
        self.results["meta"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        busy = self.results["meta"]["machine"]["load_average"][0]
        if busy > 1.0:
            self.notes.append(f"The machine was not idle when the run started (1-minute load average {busy:.1f} "
                              "on 2 cores): other processes competed for the CPU, so absolute figures are "
                              "pessimistic; the ratios to baselines measured in the same run are the fairer read.")
        self.results["meta"]["logs"] = str(self.log_dir)
