"""The replicas scenario (``python -m bench --only replicas --replicas 1,2,3``): the chat tab's simultaneous
visitors through Debian's haproxy, run with deploy/haproxy.cfg as it is (the sticky-cookie config
tests/test_deploy.py tests), in front of 1, 2 and 3 replicas of Switchboard on one redis-server, each
against one process without the balancer, in the same run.

Every visitor is a browser tab with its own cookie jar: it opens the page (``GET /``, before the clock
starts), keeps the cookie the balancer set on that first response, and sends it with every request of its
submit chain, its queue stream included, so haproxy routes all of them to the replica holding its Gradio
session. One shared jar would pin every visitor to one replica; none would split a page's queue join and
its stream over two replicas (Gradio answers neither)."""

from __future__ import annotations

import asyncio
import http.cookiejar
import math
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil

from .clients import BrowserChatTarget, SessionStream, Target, Visit, fetch_config, gather_visits
from .fake_server import reply_text
from .procs import ROOT, AppProcess, free_port, stop_process

HAPROXY_CFG = ROOT / "deploy" / "haproxy.cfg"
DIRECT = "direct"  # the configuration without the balancer: one process, visited on its own port
TTFT_P99_TARGET, GAP_TARGET = 1.0, 0.5  # issue 17, item 2: at the largest step, with 0 errors


def binary(name: str) -> str:
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}")
                                        if os.access(p, os.X_OK)), None)
    if found is None:
        raise RuntimeError(f"{name} is not installed (apt-get install -y {name})")
    return found


def _cpu(ps: psutil.Process) -> float:
    t = ps.cpu_times()
    return t.user + t.system


class Server:
    """A helper process (redis-server or haproxy) on a free loopback port, stopped with ``stop``."""

    def __init__(self, command: list[str], port: int, env: dict[str, str] | None = None,
                 log: Path | None = None) -> None:
        self.port = port
        out = log.open("wb") if log is not None else subprocess.DEVNULL
        self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        self.ps = psutil.Process(self.proc.pid)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{command[0]} did not start" + (f" (log: {log})" if log else ""))
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        return _cpu(self.ps)

    def stop(self) -> None:
        stop_process(self.proc)


def start_redis() -> Server:
    port = free_port()
    return Server([binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no"], port)


def flush_redis(redis: Server) -> None:
    """Empty the store between configurations, so none inherits another's conversations or counters."""
    with socket.create_connection(("127.0.0.1", redis.port), timeout=5) as conn:
        conn.sendall(b"FLUSHALL\r\n")
        conn.recv(64)


class _NoJar(http.cookiejar.CookieJar):
    """A jar that keeps nothing: each page's cookies are read from its own first response."""

    def extract_cookies(self, response, request) -> None:  # noqa: ANN001 - http.cookiejar's signature
        return None


def start_haproxy(replicas: list[AppProcess], log_dir: Path) -> Server:
    """deploy/haproxy.cfg as it is, the addresses from the environment as README's steps give them."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env["SWITCHBOARD_LISTEN"] = f"127.0.0.1:{port}"
    env.update({f"SWITCHBOARD_REPLICA_{i}": f"127.0.0.1:{r.port}" for i, r in enumerate(replicas, 1)})
    server = Server([binary("haproxy"), "-db", "-f", str(HAPROXY_CFG)], port, env, log_dir / f"haproxy-{port}.log")
    deadline = time.monotonic() + 30  # every replica passes its health check (inter 2s, rise 2) first
    with httpx.Client(timeout=5, cookies=_NoJar()) as client:
        while time.monotonic() < deadline:
            seen = {client.get(server.url + "/healthz").headers.get("set-cookie", "") for _ in replicas}
            if len({c.split(";")[0] for c in seen}) == len(replicas):
                return server
            time.sleep(0.5)
    server.stop()
    raise RuntimeError("haproxy did not route to every replica within 30 s")


async def open_pages(url: str, count: int, concurrency: int = 20) -> list[dict[str, str]]:
    """``count`` visitors open the page (``GET /``); each one's request headers from then on: the cookies
    that first response set (the balancer's sticky cookie), as a browser's own jar would send them."""
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=120, cookies=_NoJar()) as client:
        async def one() -> dict[str, str]:
            async with sem:
                r = await client.get(url + "/")
            r.raise_for_status()
            pairs = [c.split(";", 1)[0].strip() for c in r.headers.get_list("set-cookie")]
            return {"Cookie": "; ".join(pairs)} if pairs else {}

        return list(await asyncio.gather(*(one() for _ in range(count))))


class Pages(Target):
    """The chat tab's visitors, each with the page (and cookies) it opened: one per ``visit``. :meth:`load` first
    sends each page's load events, as a browser does once it shows the page (before the clock starts)."""

    def __init__(self, target: BrowserChatTarget, pages: list[dict[str, str]]) -> None:
        self.target, self.name = target, target.name
        self.pages: list[tuple[dict[str, str], dict | None, str | None]] = [(h, None, None) for h in pages]

    async def load(self, concurrency: int = 20) -> list[str]:
        """Every page's load events (bench/page_steps.py); the errors."""
        steps, sem = self.target.page_steps, asyncio.Semaphore(concurrency)
        if steps is None:
            return []

        async def one(headers: dict[str, str]) -> tuple[tuple[dict[str, str], dict, str], str | None]:
            values, session = self.target.new_page(), uuid.uuid4().hex[:12]
            async with sem, self.target.pages.page() as client:
                seen = await steps.load(values, session, client, headers)
            return (headers, values, session), seen.error

        loaded = await asyncio.gather(*(one(h) for h, _, _ in self.pages))
        self.pages = [page for page, _ in loaded]
        return [error for _, error in loaded if error]

    async def visit(self, message, history=None, expected=None, v=None) -> Visit:
        headers, values, session = self.pages.pop()
        return await self.target.visit(message, history, expected, v, page=values, session_hash=session,
                                       headers=headers)


def per_replica(pages: list[dict[str, str]]) -> dict[str, int]:
    """How many visitors the balancer's cookie sent to each replica (``r1``, ``r2``, ...)."""
    counts: dict[str, int] = {}
    for page in pages:
        cookie = page.get("Cookie", "")
        name = next((p.split("=", 1)[1] for p in cookie.split("; ") if p.startswith("switchboard_replica=")), "-")
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


class Replicas:
    """The scenario's processes: redis-server, Switchboard replicas on it, haproxy in front of some."""

    def __init__(self, bench) -> None:  # noqa: ANN001 - scenarios.Bench (imports this module)
        self.bench = bench
        self.redis = start_redis()
        self.apps: list[AppProcess] = []

    async def ensure(self, count: int, fresh: bool, most: int) -> list[AppProcess]:
        """``count`` replicas running, started at once: all restarted when ``fresh``, else the first call
        starts the ``most`` any setup needs and later ones reuse them."""
        from .scenarios import START_TIMEOUT

        if fresh:
            self.stop_apps()
        b = self.bench
        new = [AppProcess("switchboard", b.fake.base_url, script=b.opts.app_script,
                          env={"REDIS_URL": f"redis://127.0.0.1:{self.redis.port}/0", "CHATBOT_TRUSTED_PROXIES": "1"})
               for _ in range((count if fresh else max(count, most)) - len(self.apps))]
        started = await asyncio.gather(*(asyncio.to_thread(a.start, START_TIMEOUT, b.log_dir) for a in new),
                                       return_exceptions=True)
        self.apps += [a for a, s in zip(new, started, strict=True) if not isinstance(s, BaseException)]
        failed = [s for s in started if isinstance(s, BaseException)]
        if failed:
            raise failed[0]
        for app in new:
            b.cold["switchboard"].append(app.cold_start)
        return self.apps[:count]

    def stop_apps(self) -> None:
        for app in self.apps:
            app.stop()
        self.apps = []

    def stop(self) -> None:
        self.stop_apps()
        self.redis.stop()


async def measure(bench, setup: str, url: str, apps: list[AppProcess], balancer: Server | None,
                  expected: str) -> list[dict[str, Any]]:
    """The visitor steps against one setup (``url``: the balancer's, or the one process's)."""
    from .scenarios import visit_stats

    o, client = bench.opts, bench.client
    target = BrowserChatTarget(setup, apps[0], client, await fetch_config(client, apps[0].url))
    target.url = url  # the page is the balancer's (or the one process's); its config is every replica's
    for app in apps:  # the first message after start-up (lazy imports, first connection) is not measured
        warm = BrowserChatTarget(setup, app, client, await fetch_config(client, app.url))
        page = Pages(warm, await open_pages(app.url, 1))
        await page.load()
        await page.visit("warm-up", None, expected)
        await warm.close()
    one_stream = o.ramp_reply_tokens / o.ramp_tps
    deadline = max(60.0, 8 * one_stream)
    rows = []
    try:
        for n in o.replica_visitors:
            await bench.fake.wait_idle(60)
            pages = Pages(target, await open_pages(url, n))
            load_errors = await pages.load()
            await asyncio.sleep(0.1 if o.quick else 0.5)
            cpu0 = [a.cpu() for a in apps]
            lb0 = balancer.cpu() if balancer else 0.0
            me0 = time.process_time()
            cut0 = SessionStream.cut
            sent0 = sum(target.page_steps.sent.values()) if target.page_steps else 0
            cookies = [h for h, _, _ in pages.pages]
            visits, t0, t1, censored = await gather_visits(pages, n, f"replicas {n}", expected, deadline)
            row = {"setup": setup, "replicas": len(apps), "visitors": n, **visit_stats(visits), "wall_s": t1 - t0,
                   "censored": censored, "per_replica": per_replica(cookies), "cut_streams": SessionStream.cut - cut0,
                   "load_errors": len(load_errors), "requests_per_visitor": (
                       (sum(target.page_steps.sent.values()) - sent0) / n if target.page_steps else math.nan),
                   "app_cpu_s": [a.cpu() - c for a, c in zip(apps, cpu0, strict=True)],
                   "haproxy_cpu_s": balancer.cpu() - lb0 if balancer else math.nan,
                   "client_cpu_s": time.process_time() - me0}
            rows.append(row)
            bench.log(f"    {setup:10s} {n:4d} visitors: {row['completed']}/{n} ok, TTFT p50 "
                      f"{row['ttft_p50'] * 1000:.0f} ms p99 {row['ttft_p99'] * 1000:.0f} ms, longest gap "
                      f"{row['max_gap'] * 1000:.0f} ms, per replica {row['per_replica']}, "
                      f"queue streams cut {row['cut_streams']}, requests per visitor "
                      f"{row['requests_per_visitor']:.1f}, app CPU per visitor "
                      f"{sum(row['app_cpu_s']) / n * 1000:.0f} ms"
                      + (f", load errors {len(load_errors)}: {load_errors[0]}" if load_errors else ""))
    finally:
        await target.close()
    return rows


async def scenario(bench) -> dict[str, Any]:  # noqa: ANN001 - scenarios.Bench
    o = bench.opts
    await asyncio.to_thread(bench.fake.configure, o.ramp_reply_tokens, o.chunk_size, o.ramp_tps)
    expected = reply_text(o.ramp_reply_tokens, o.chunk_size)
    out: dict[str, Any] = {"replicas": list(o.replicas), "visitors": list(o.replica_visitors), "tps": o.ramp_tps,
                           "reply_tokens": o.ramp_reply_tokens, "fresh": o.fresh_apps, "setups": {}}
    procs = await asyncio.to_thread(Replicas, bench)
    try:
        for count in (0, *o.replicas):  # 0: one process, no balancer
            apps = await procs.ensure(max(1, count), o.fresh_apps, max(o.replicas))
            await asyncio.to_thread(flush_redis, procs.redis)
            balancer = await asyncio.to_thread(start_haproxy, apps, bench.log_dir) if count else None
            setup = f"haproxy-{count}" if count else DIRECT
            try:
                out["setups"][setup] = await measure(bench, setup, balancer.url if balancer else apps[0].url,
                                                     apps, balancer, expected)
            finally:
                if balancer is not None:
                    balancer.stop()
    finally:
        await asyncio.to_thread(procs.stop)
    return out
