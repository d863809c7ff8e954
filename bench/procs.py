"""Subprocesses the benchmark starts (fake upstream, Switchboard, the gr.load_chat baseline) and the
psutil readings taken from them (CPU seconds, RSS, peak RSS)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
MODEL_ID = "gpt-4.1-mini"
MODEL_ALIAS = "fast"
DEFAULT_SESSION_GRACE = 600.0  # chatbot/core/settings.py's default CHATBOT_SESSION_GRACE (seconds)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate ``proc`` if it still runs; kill it if it has not ended 10 s later."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class FakeProcess:
    """``bench.fake_server`` in a subprocess."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.fake_server"], cwd=ROOT, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        line = self.proc.stdout.readline().strip() if self.proc.stdout else ""
        if not line.startswith("http"):
            self.proc.kill()
            raise RuntimeError(f"fake upstream did not start (said {line!r})")
        self.base_url = line  # http://127.0.0.1:PORT/v1
        self.root = line.rsplit("/v1", 1)[0]
        self.ps = psutil.Process(self.proc.pid)

    def configure(self, reply_tokens: int, chunk_size: int, tokens_per_second: float | None = None,
                  delay: float = 0.0) -> None:
        r = httpx.post(f"{self.root}/_bench/behaviour", json={
            "reply_tokens": reply_tokens, "chunk_size": chunk_size,
            "tokens_per_second": tokens_per_second, "delay": delay}, timeout=10)
        r.raise_for_status()

    def state(self) -> dict:
        return httpx.get(f"{self.root}/_bench/state", timeout=10).json()

    async def wait_idle(self, timeout: float = 30.0) -> bool:
        """Wait until no stream is open on the fake (a previous scenario's leftovers have ended)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=5) as client:
            while time.monotonic() < deadline:
                state = (await client.get(f"{self.root}/_bench/state")).json()
                if state["open_streams"] == 0:
                    return True
                await asyncio.sleep(0.1)
        return False

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                if self.proc.stdin:
                    self.proc.stdin.close()
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class AppProcess:
    """A Gradio app in a subprocess: Switchboard (``python app.py``), the gr.load_chat baseline (with
    Gradio's defaults, or with unlimited concurrency) or the Gradio floor (a bare ChatInterface,
    ``bench/gradio_floor_app.py``)."""

    kind: str  # "switchboard", "load_chat", "load_chat_unlimited" or "gradio_floor"
    fake_url: str
    port: int = field(default_factory=free_port)
    cold_start: float = float("nan")
    script: str = "app.py"  # Switchboard's entry point (a patched copy can be benchmarked with --app-script)
    root: Path = ROOT  # the checkout Switchboard runs from: its cwd and first PYTHONPATH entry (--before)
    data_dir: Path | None = None  # where Switchboard's SQLite file goes (never the repository)
    session_grace: float | None = None  # Switchboard's CHATBOT_SESSION_GRACE; None: its default
    heap: dict | None = None  # the heap settings a baseline printed (bench/heap.py), read from its log
    proc: subprocess.Popen | None = None
    ps: psutil.Process | None = None
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # Switchboard: settings over the benchmark's (replicas)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> tuple[list[str], dict[str, str]]:
        env = dict(os.environ)
        env.update(GRADIO_ANALYTICS_ENABLED="False", OPENAI_API_KEY="sk-bench", PYTHONUNBUFFERED="1")
        if self.kind == "switchboard":
            env.update(OPENAI_BASE_URL=self.fake_url, CHATBOT_MODELS=f"{MODEL_ALIAS}={MODEL_ID}")
            # The front end itself is measured, not visitor limits (none apply on loopback by default
            # anyway; set explicitly so a changed default cannot throttle the benchmark).
            env.update(CHATBOT_RATE_LIMIT="none", CHATBOT_TOKEN_LIMIT="none", CHATBOT_STREAMS_PER_VISITOR="0",
                       CHATBOT_MAX_CONCURRENT_STREAMS="0")
            # The fake's "tokens" are 4-character chunks (about 1.4 real tokens each) and the app stops a reply
            # that passes its cap: leave room for the longest benchmark reply (4,000 chunks).
            env["CHATBOT_MAX_TOKENS"] = "16384"
            if self.data_dir is not None:
                env["CHATBOT_DB"] = str(self.data_dir / f"bench-{self.port}.db")
            env["CHATBOT_BROWSER_SECRET"] = "switchboard-bench"  # nothing written under ./data/
            if self.session_grace is not None:  # closed sessions freed that long after closing
                env["CHATBOT_SESSION_GRACE"] = f"{self.session_grace:g}"
            else:
                env.pop("CHATBOT_SESSION_GRACE", None)
            for name in ("CHATBOT_PROVIDER", "CHATBOT_CONTEXT_TOKENS", "CHATBOT_API_TOKENS", "GRADIO_SERVER_PORT",
                         "REDIS_URL", "CHATBOT_DAILY_BUDGET_USD", "CHATBOT_AUTH", "CHATBOT_SHARE", "SPACE_ID",
                         "GRADIO_SERVER_NAME", "CHATBOT_REQUIRE_USER_KEY"):
                env.pop(name, None)
            if self.root != ROOT:  # another checkout: its own chatbot package, not this tree's
                from .before import tree_env

                env = tree_env(self.root, env)
            env.update(self.env)
            return [sys.executable, self.script, "--port", str(self.port)], env
        module = "bench.gradio_floor_app" if self.kind == "gradio_floor" else "bench.loadchat_app"
        extra = ["unlimited"] if self.kind == "load_chat_unlimited" else []
        return [sys.executable, "-m", module, self.fake_url, MODEL_ID, str(self.port), *extra], env

    @property
    def grace(self) -> float | None:
        """Switchboard's session grace in seconds (None for the other apps)."""
        if self.kind != "switchboard":
            return None
        return DEFAULT_SESSION_GRACE if self.session_grace is None else self.session_grace

    def start(self, timeout: float = 60.0, log_dir: Path | None = None) -> AppProcess:
        """Start, and time ``python app.py`` to the first 200 on ``/`` (the cold start)."""
        if log_dir is not None and self.data_dir is None:
            self.data_dir = log_dir
        cmd, env = self.command()
        out = subprocess.DEVNULL
        if log_dir is not None:
            self.log_path = log_dir / f"{self.kind}-{self.port}.log"
            out = open(self.log_path, "w")  # noqa: SIM115 - closed with the process
        t0 = time.perf_counter()
        cwd = self.root if self.kind == "switchboard" else ROOT
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.proc.pid)
        deadline = t0 + timeout
        with httpx.Client(timeout=2) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.kind} exited with {self.proc.returncode} during start-up"
                                       + (f" (log: {self.log_path})" if self.log_path else ""))
                try:
                    if client.get(self.url + "/").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.perf_counter() > deadline:
                    self.stop()
                    raise TimeoutError(f"{self.kind} did not answer on / within {timeout} s")
                time.sleep(0.01)
        self.cold_start = time.perf_counter() - t0
        if self.log_path is not None and self.kind != "switchboard":  # Switchboard settles its own heap
            from .heap import read_mark

            self.heap = read_mark(self.log_path.read_text(errors="replace"))
        return self

    def cpu(self) -> float:
        """CPU seconds (user + system, all threads) the process has used so far."""
        assert self.ps is not None
        t = self.ps.cpu_times()
        return t.user + t.system

    def rss(self) -> int:
        assert self.ps is not None
        return self.ps.memory_info().rss

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)


class Sampler:
    """Samples a process's RSS in a background thread (peak RSS over a scenario step)."""

    def __init__(self, get_rss, interval: float = 0.05) -> None:
        self.get_rss = get_rss
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.get_rss())
            except psutil.Error:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> Sampler:
        self.peak = self.get_rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.get_rss())
