"""Issue 17 item 2: where the HTTP API holds pieces back under load. N simultaneous ``POST /chat/stream``
streams of ``--tokens`` tokens at ``--tps`` (issue 17's Open WebUI comparison: 50 streams, 400 tokens at
20/s), against the upstream floor read the same way in the same run; prints per step the time to first token,
the longest gap between two pieces, its p99 over visitors, when in the stream the long gaps fall, and the
app's CPU. With ``--profile DIR``, py-spy records the app process during each step (``--native`` off; a
flame graph SVG and a raw collapsed-stack file per step).

Run from the repository root:
    python -m bench.probes.http_gaps --streams 50,200
    python -m bench.probes.http_gaps --streams 200 --profile /tmp/gaps --root /path/to/other/checkout
    python -m bench.probes.http_gaps --streams 200 --env CHATBOT_X=1   # an app setting for this run
    python -m bench.probes.http_gaps --root . --root /tmp/proto   # two trees, each step interleaved (A/B)
    python -m bench.probes.http_gaps --root . --root .:PYTHONPATH=/tmp/extra  # the same tree, an extra path
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.fake_server import reply_text
from bench.procs import ROOT, AppProcess, FakeProcess
from bench.stats import percentile
from bench.targets import HTTPStreamTarget, SDKTarget
from bench.visit import gather_visits, make_http_client


def describe(name: str, n: int, visits, wall: float, cpu: float | None) -> str:
    ok = [v for v in visits if v.ok]
    ttft = [v.ttft if v.ttft is not None else math.inf for v in visits]
    gaps = [v.max_gap for v in ok if v.max_gap is not None]
    every = [b - a for v in ok for a, b in zip(v.updates, v.updates[1:], strict=False)]
    # when the long gaps end, in seconds after the visitor sent (all visitors send at once)
    late = sorted(round(b - v.t0, 1) for v in ok for a, b in zip(v.updates, v.updates[1:], strict=False)
                  if b - a > 0.2)
    by_second: dict[int, int] = {}
    for t in late:
        by_second[int(t)] = by_second.get(int(t), 0) + 1
    return (f"{name:15s} {n:4d} streams: {len(ok)}/{n} ok, TTFT p50 {percentile(ttft, 50) * 1000:.0f} ms "
            f"p99 {percentile(ttft, 99) * 1000:.0f} ms, longest gap {max(gaps, default=math.nan) * 1000:.0f} ms, "
            f"gap p99 {percentile(gaps, 99) * 1000:.0f} ms, pieces >200 ms apart {len(late)} of {len(every)}"
            f" (by the second they end in: {by_second}), wall {wall:.1f} s"
            + (f", app CPU {cpu:.1f} s" if cpu is not None else ""))


def _with_env(app: AppProcess, extra: dict[str, str], path: str):
    """``app.command`` with ``extra`` in its environment and ``path`` first on its PYTHONPATH."""
    command = app.command

    def cmd_env():
        cmd, env = command()
        env.update(extra)
        if path:
            env["PYTHONPATH"] = os.pathsep.join(x for x in (path, str(app.root), env.get("PYTHONPATH", "")) if x)
        return cmd, env

    return cmd_env


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.probes.http_gaps")
    p.add_argument("--streams", default="50,200")
    p.add_argument("--tokens", type=int, default=400)
    p.add_argument("--tps", type=float, default=20.0)
    p.add_argument("--chunk-size", type=int, default=4)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--root", action="append", default=[],
                   help="a checkout whose app.py is run (default this one); repeat for an A/B, each step "
                        "interleaved; DIR:PYTHONPATH=EXTRA puts EXTRA before the tree on the app's path")
    p.add_argument("--profile", type=Path, help="py-spy record the app into DIR during each step")
    p.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the app's environment")
    p.add_argument("--no-floor", action="store_true", help="skip the upstream floor steps")
    return p.parse_args(argv)


def app_processes(a: argparse.Namespace, fake: FakeProcess) -> dict[str, AppProcess]:
    """One Switchboard per ``--root`` (default this checkout), with ``--env`` and its extra PYTHONPATH."""
    apps: dict[str, AppProcess] = {}
    for i, spec in enumerate(a.root or [str(ROOT)]):
        root, _, path = spec.partition(":PYTHONPATH=")
        app = AppProcess("switchboard", fake.base_url, root=Path(os.path.realpath(root)))
        app.command = _with_env(app, dict(kv.split("=", 1) for kv in a.env), path)  # type: ignore[method-assign]
        apps[f"HTTP#{i}" if len(a.root) > 1 else "HTTP"] = app
    return apps


async def main() -> None:
    a = parse()
    steps = [int(x) for x in a.streams.split(",") if x]
    fake = FakeProcess()
    logs = Path(tempfile.mkdtemp(prefix="http-gaps-"))
    apps = app_processes(a, fake)
    try:
        for app in apps.values():
            app.start(180.0, logs)
        fake.configure(a.tokens, a.chunk_size, a.tps)
        expected = reply_text(a.tokens, a.chunk_size)
        client = make_http_client()
        targets = {name: HTTPStreamTarget(name, app, client) for name, app in apps.items()}
        floor = SDKTarget(fake.base_url)
        for target in targets.values():
            await target.visit("warm-up", None, expected)
        order = ((("floor", floor),) if not a.no_floor else ()) + tuple(targets.items())
        for _ in range(a.rounds):
            for n in steps:
                for name, target in order:
                    app = apps.get(name)
                    await fake.wait_idle(120)
                    await asyncio.sleep(0.5)
                    spy = None
                    if a.profile and app is not None:
                        a.profile.mkdir(parents=True, exist_ok=True)
                        stem = a.profile / f"{name.replace('#', '')}-{n}-{int(time.time())}"
                        spy = subprocess.Popen(  # noqa: ASYNC220 - started once per step, returns at once
                            [shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")),
                             "record", "-p", str(app.proc.pid), "-r", str(a.rate), "-f", "raw", "-o",
                             f"{stem}.txt", "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                        await asyncio.sleep(1.0)
                    cpu0 = app.cpu() if app else 0.0
                    visits, t0, t1, _ = await gather_visits(target, n, f"gaps {n}", expected, 8 * a.tokens / a.tps)
                    cpu = app.cpu() - cpu0 if app else None
                    if spy is not None:
                        spy.send_signal(2)
                        spy.wait(60)
                    print(describe(name, n, visits, t1 - t0, cpu), flush=True)
        for target in targets.values():
            await target.close()
        await client.aclose()
    finally:
        for app in apps.values():
            app.stop()
        fake.stop()
        shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
