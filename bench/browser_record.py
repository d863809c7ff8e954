"""What a real browser sends the server for one chat-tab message (``python -m bench.browser_record``).

Debian's chromium (Playwright) opens the app in its production assembly (``app.build_server``, as
tests/browser_kit.py serves it) against the fake upstream paced like the replicas benchmark (200 tokens at
20 a second: a 10 s reply), waits for the page's load events to settle, sends one message, waits for the
reply and everything after it to end, and counts every request the page sent meanwhile (Chrome's network
log): queue joins and ``run/predict`` calls by the step they ran (fn_index and its name in /config), and
the bytes each way. Run it in another checkout (``cd /tmp/before && python -m bench.browser_record``) to
compare. Prints a Markdown table (``--json`` for the raw counts)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _path in (ROOT, ROOT / "tests"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-background-networking", "--disable-gpu",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
WAIT_MS = 90_000


def _names(config: dict[str, Any]) -> dict[int, str]:
    """fn_index -> a readable name: the step's api_name (Gradio names a private step after its function)."""
    return {d["id"]: str(d.get("api_name") or f"fn{d['id']}") for d in config["dependencies"]}


class Recorder:
    """Chrome's network events for one page: every request with its body and the bytes that came back."""

    def __init__(self) -> None:
        self.requests: dict[str, dict[str, Any]] = {}
        self.recording = False

    def attach(self, cdp: Any) -> None:
        cdp.send("Network.enable")
        cdp.on("Network.requestWillBeSent", self._sent)
        cdp.on("Network.dataReceived", self._data)
        cdp.on("Network.loadingFinished", self._finished)

    def _sent(self, event: dict[str, Any]) -> None:
        if not self.recording:
            return
        req = event["request"]
        body = req.get("postData") or ""
        self.requests[event["requestId"]] = {"url": req["url"], "method": req["method"], "body": body,
                                             "up": len(body.encode()), "down": 0, "finished": None}

    def _data(self, event: dict[str, Any]) -> None:
        if event["requestId"] in self.requests:
            self.requests[event["requestId"]]["down"] += event.get("dataLength", 0)

    def _finished(self, event: dict[str, Any]) -> None:
        if event["requestId"] in self.requests:
            self.requests[event["requestId"]]["finished"] = event.get("encodedDataLength")


def table(requests: list[dict[str, Any]], names: dict[int, str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows (kind, step, count, bytes up, bytes down) and totals."""
    rows: dict[tuple[str, str], Counter] = {}
    for r in requests:
        if "/gradio_api/" not in r["url"]:  # the chat's scripts and styles, fetched once for the first reply
            path = "static files (once per page)"
        else:
            path = r["url"].split("?", 1)[0].split("/gradio_api/", 1)[-1]
        step = ""
        if r["method"] == "POST" and path in ("queue/join", "run/predict"):
            try:
                fn = json.loads(r["body"]).get("fn_index")
                step = f"{fn} {names.get(fn, '?')}"
            except ValueError:
                step = "?"
        c = rows.setdefault((f"{r['method']} {path}", step), Counter())
        c["count"] += 1
        c["up"] += r["up"]
        c["down"] += r["down"]
    out = [{"request": k, "step": s, **c} for (k, s), c in sorted(rows.items())]
    joins = sum(r["count"] for r in out if r["request"] == "POST queue/join")
    predicts = sum(r["count"] for r in out if r["request"] == "POST run/predict")
    api = [r for r in out if not r["request"].endswith("(once per page)")]
    totals = {"requests": sum(r["count"] for r in api), "queue_joins": joins, "run_predict": predicts,
              "up": sum(r["up"] for r in api), "down": sum(r["down"] for r in api)}
    return out, totals


def record(message: str, reply_tokens: int, tps: float, settle_s: float, after_s: float) -> dict[str, Any]:
    import httpx
    from fake_upstream import Behaviour, FakeUpstream
    from playwright.sync_api import expect, sync_playwright

    import app as switchboard
    from bench.fake_server import reply_text
    from chatbot.core.settings import Settings

    with FakeUpstream() as fake, tempfile.TemporaryDirectory() as tmp:
        fake.default = Behaviour(reply=reply_text(reply_tokens, 4), chunk_size=4, tokens_per_second=tps)
        environ = {"OPENAI_API_KEY": "sk-bench", "OPENAI_BASE_URL": fake.base_url,
                   "CHATBOT_MAX_RETRIES": "0", "CHATBOT_LIVE_MODELS": "0",
                   "CHATBOT_BROWSER_SECRET": "record-secret-0123456789", "CHATBOT_DB": f"{tmp}/chats.db"}
        settings = Settings.load([], environ=environ, env_file=None)
        server = switchboard.serve_in_thread(switchboard.build_server(settings), timeout=60)
        try:
            names = _names(httpx.get(server.url + "config", timeout=30).json())
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                expect.set_options(timeout=WAIT_MS)
                rec = Recorder()
                rec.attach(page.context.new_cdp_session(page))
                page.goto(server.url, timeout=WAIT_MS)
                page.wait_for_selector("#chatbot", timeout=WAIT_MS)
                time.sleep(settle_s)  # the page's load events end before the message is sent
                rec.recording = True
                box = page.locator("#message textarea")
                box.fill(message)
                box.press("Enter")
                stop = page.locator("#message").get_by_role("button", name="Stop")
                expect(stop).to_have_count(1)
                expect(stop).to_have_count(0, timeout=WAIT_MS)  # the reply and its chain ended
                time.sleep(after_s)  # what follows the reply (saves, the last timer tick)
                rec.recording = False
                shown = page.locator("#chatbot").inner_text()
                browser.close()
        finally:
            server.stop()
    rows, totals = table(list(rec.requests.values()), names)
    return {"rows": rows, "totals": totals, "reply_shown": reply_text(reply_tokens, 4)[-20:] in shown}


def markdown(result: dict[str, Any]) -> str:
    lines = ["| Request | Step (fn_index name) | Count | Bytes up | Bytes down |", "|---|---|---|---|---|"]
    lines += [f"| {r['request']} | {r['step']} | {r['count']} | {r['up']:,} | {r['down']:,} |" for r in result["rows"]]
    t = result["totals"]
    lines.append(f"| **all but static files** | queue joins {t['queue_joins']}, run/predict {t['run_predict']} "
                 f"| **{t['requests']}** | {t['up']:,} | {t['down']:,} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.browser_record", description=__doc__.split("\n\n")[0])
    p.add_argument("--message", default="Tell me about lighthouses.")
    p.add_argument("--reply-tokens", type=int, default=200)
    p.add_argument("--tps", type=float, default=20.0)
    p.add_argument("--settle", type=float, default=4.0, help="seconds after the page loads, before the message")
    p.add_argument("--after", type=float, default=5.0, help="seconds recorded after the reply ended")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    result = record(a.message, a.reply_tokens, a.tps, a.settle, a.after)
    print(json.dumps(result, indent=1) if a.json else markdown(result))
    if not result["reply_shown"]:
        print("WARNING: the reply's end was not on the page", file=sys.stderr)


if __name__ == "__main__":
    main()
