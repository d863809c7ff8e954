"""``python -m bench``: run the benchmark suite and write docs/benchmarks/ (see ``--help``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

from .scenarios import SCENARIOS, Options


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.replace(" ", "").split(",") if x)


def parse(argv: list[str] | None = None) -> Options:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark Switchboard against the upstream floor and gr.load_chat, side by side, "
                    "on a local fake upstream. Writes results.md, results.json and PNG plots.",
    )
    p.add_argument("--quick", action="store_true", help="small counts: a sanity pass in well under a minute")
    p.add_argument("--out", type=Path, help="output directory (default docs/benchmarks, or docs/benchmarks/quick)")
    p.add_argument("--only", help=f"comma-separated scenarios to run (of {', '.join(SCENARIOS)})")
    p.add_argument("--chunk-size", type=int, help="characters per upstream chunk; one chunk = one token")
    p.add_argument("--tps", type=float, help="ramp: upstream tokens per second per stream (default 20)")
    p.add_argument("--reply-tokens", type=int, help="ramp: reply length in tokens (default 200)")
    p.add_argument("--ramp", type=_ints, help="ramp steps, e.g. 1,25,50,100,200")
    p.add_argument("--ramp-paths", help="ramp paths (sdk,sw_ui,sw_api,sw_http,lc_ui,lc_api,lu_ui,gf_ui)")
    p.add_argument("--throughput-tokens", type=int, help="throughput: reply length (default 4000)")
    p.add_argument("--runs", type=int, help="repetitions for the throughput scenario")
    p.add_argument("--ttft-rounds", type=int, help="TTFT: rounds (default 3)")
    p.add_argument("--ttft-samples", type=int, help="TTFT: messages per round per path")
    p.add_argument("--history-turns", type=_ints, help="history: conversation lengths through the app")
    p.add_argument("--sessions", type=int, help="memory: sessions opened and closed (default 1000)")
    p.add_argument("--replicas", type=_ints, help="replicas: how many replicas behind haproxy, e.g. 1,2,3")
    p.add_argument("--replica-visitors", type=_ints, help="replicas: simultaneous chat-tab visitors, e.g. 50,200")
    p.add_argument("--keep-logs", action="store_true", help="keep the app processes' logs")
    p.add_argument("--render", type=Path, metavar="DIR",
                   help="only re-render DIR/results.md and the plots from DIR/results.json (no run)")
    p.add_argument("--app-script", help="Switchboard entry point run as `python SCRIPT --port P` (default app.py; "
                                        "with this tree's chatbot package; for another checkout use --before)")
    p.add_argument("--before", metavar="REV_OR_DIR",
                   help="also measure Switchboard from another checkout in the same run (a directory holding its "
                        "app.py, run with that tree's own chatbot package, or a git revision of this repository, "
                        "extracted to a temporary directory), every Switchboard path beside its twin, and write a "
                        "Before/after table (after/before ratios); e.g. --before 7515705")
    a = p.parse_args(argv)
    o = Options.quick_mode() if a.quick else Options()
    over = {
        "out": a.out, "chunk_size": a.chunk_size, "ramp_tps": a.tps, "ramp_reply_tokens": a.reply_tokens,
        "ramp": a.ramp, "throughput_tokens": a.throughput_tokens, "throughput_runs": a.runs,
        "ttft_rounds": a.ttft_rounds, "ttft_samples": a.ttft_samples, "history_app_turns": a.history_turns,
        "sessions": a.sessions, "app_script": a.app_script, "before": a.before, "replicas": a.replicas,
        "replica_visitors": a.replica_visitors,
        "ramp_targets": tuple(a.ramp_paths.split(",")) if a.ramp_paths else None,
        "scenarios": tuple(s.strip() for s in a.only.split(",")) if a.only else None,
    }
    o = replace(o, **{k: v for k, v in over.items() if v is not None}, keep_logs=a.keep_logs, render=a.render)
    unknown = set(o.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return o


def _jsonable(obj):
    if isinstance(obj, float) and (math.isinf(obj) or math.isnan(obj)):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    return obj


def _from_json(obj):
    if isinstance(obj, dict):
        return {k: _from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_json(v) for v in obj]
    if obj == "inf":
        return math.inf
    return math.nan if obj is None else obj


def render(directory: Path) -> int:
    from .report import markdown, plots

    if not (directory / "results.json").exists() and (directory / "replicas.json").exists():
        from .replicas_report import document

        text = document(_from_json(json.loads((directory / "replicas.json").read_text(encoding="utf-8"))))
        (directory / "replicas.md").write_text(text, encoding="utf-8")
        print(text)
        return 0
    results = _from_json(json.loads((directory / "results.json").read_text(encoding="utf-8")))
    images = plots(results, directory)
    text = markdown(results, images)
    (directory / "results.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    if opts.render is not None:
        return render(opts.render)
    from .report import markdown, plots
    from .scenarios import Bench

    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    bench = Bench(opts, log=log)
    results = asyncio.run(bench.run())
    if opts.scenarios == ("replicas",):  # its own document, beside the suite's results.md
        from .replicas_report import document

        stem, images, text = "replicas", [], document(results).rstrip()
    else:
        stem, images = "results", plots(results, out)
        text = markdown(results, images)
    (out / f"{stem}.md").write_text(text + "\n", encoding="utf-8")
    (out / f"{stem}.json").write_text(json.dumps(_jsonable(results), indent=1) + "\n", encoding="utf-8")
    print(text)
    log(f"wrote {out / (stem + '.md')}, {stem}.json and {len(images)} plots in {time.perf_counter() - t0:.0f} s")
    if not opts.keep_logs:
        shutil.rmtree(bench.log_dir, ignore_errors=True)
    else:
        log(f"app logs kept in {bench.log_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
