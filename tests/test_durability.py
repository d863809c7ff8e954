"""Storage integrity under real faults (issue 13, items 1-4): the app runs as ``python app.py`` processes
and is killed with SIGKILL mid-reply; Redis is a real redis-server, killed and restarted; a full disk is a
real 2 MB tmpfs. A reply keeps what its visitor saw, never stays ``streaming``, is never reported as saved
when the store did not take it (and is stored once the store is back), and every failure has a status,
a body and a log line."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import APP_START_S, TEST_KEY, RedisServer, free_port, make_settings, stop_process, wait_until
from fake_upstream import FakeUpstream

# app processes killed (and brought back in-process), a redis-server killed, a tmpfs filled
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parent.parent
#: A reply of about 6,400 characters in 8-character deltas, one every 20 ms: about 16 s of streaming.
SLOW = "tell me [[reply_lines=400]] [[chunk=8]] [[delay=0.02]]"


class App:
    """``python app.py`` on a free port, its output collected."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.output: list[str] = []
        self.start()

    def start(self) -> None:
        base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
        self.process = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(self.port)], cwd=ROOT, env={**base, **self.env},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        threading.Thread(target=self._read, args=(self.process,), daemon=True).start()

        def ready() -> bool:
            assert self.process.poll() is None, self.log
            try:
                return httpx.get(self.url + "models", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(ready, timeout=APP_START_S, what="the app answering")
        except BaseException:
            self.stop()  # a failed start leaves no app process behind (it would load the next tests)
            raise

    def _read(self, process: subprocess.Popen) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.output.append(line)

    @property
    def log(self) -> str:
        return "".join(self.output)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(15)

    def stop(self) -> None:
        stop_process(self.process)

    def conversation(self, cid: str) -> dict:
        response = httpx.get(self.url + f"conversations/{cid}", timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def reply(self, cid: str, seq: int = 2) -> dict:
        return self.conversation(cid)["messages"][seq - 1]


class InProcess(App):
    """The same app served in the test's own process (``app.build_server``, the production assembly): for an
    app the test never kills, without the cost of a ``python app.py`` start (Gradio's imports) on a loaded
    machine. Its log is not collected."""

    def __init__(self, env: dict[str, str]) -> None:
        import app as switchboard

        settings = make_settings(env["OPENAI_BASE_URL"], **{k: v for k, v in env.items() if k != "OPENAI_BASE_URL"})
        self.server = switchboard.serve_in_thread(switchboard.build_server(settings), timeout=APP_START_S)
        self.url = self.server.url
        self.output = []

    def stop(self) -> None:
        self.server.stop()


def app_env(fake: FakeUpstream, **extra: str) -> dict[str, str]:
    return {"OPENAI_API_KEY": TEST_KEY, "OPENAI_BASE_URL": fake.base_url, "CHATBOT_MAX_RETRIES": "0", **extra}


class Reader:
    """``POST /chat/stream?format=json`` read in a thread: the text received so far, with times."""

    def __init__(self, url: str, message: str, cid: str | None = None) -> None:
        self.url = url
        self.body = {"message": message, "conversation_id": cid}
        self.cid: str | None = None
        self.text = ""
        self.events: list[dict] = []
        self.history: list[tuple[float, str]] = []  # (monotonic time, text received by then)
        self.finished = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with httpx.stream("POST", self.url + "chat/stream?format=json", json=self.body, timeout=60) as r:
                self.cid = r.headers.get("x-conversation-id")
                for line in r.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    event = json.loads(line[len("data: "):])
                    self.events.append(event)
                    if event["type"] == "delta":
                        self.text += event["text"]
                        self.history.append((time.monotonic(), self.text))
        except httpx.HTTPError:
            pass  # the app was killed
        finally:
            self.finished.set()

    def received_before(self, moment: float) -> str:
        return next((text for when, text in reversed(self.history) if when <= moment), "")

    def wait_for(self, chars: int) -> None:
        wait_until(lambda: len(self.text) >= chars, timeout=60, what=f"{chars} characters streamed")

    def done(self, timeout: float = 60) -> dict:
        assert self.finished.wait(timeout), "the stream did not end"
        assert self.events and self.events[-1]["type"] == "done", self.events[-3:]
        return self.events[-1]


def kill_mid_reply(app: App, reader: Reader) -> str:
    """SIGKILL ``app`` while ``reader`` streams; the text the client had a second before the kill."""
    reader.wait_for(400)
    time.sleep(1.5)
    kill_at = time.monotonic()
    app.kill()
    reader.finished.wait(30)
    before = reader.received_before(kill_at - 1.0)
    assert len(before) >= 300 and len(reader.text) < 6_000, "not killed mid-reply"
    return before


def test_sqlite_kill_9_mid_reply_keeps_what_the_visitor_saw_a_second_before(
    fake: FakeUpstream, tmp_path: Path
) -> None:
    env = app_env(fake, CHATBOT_DB=str(tmp_path / "c.db"))
    app, restarted = App(env), None
    try:
        reader = Reader(app.url, SLOW)
        before = kill_mid_reply(app, reader)
        assert reader.cid
        restarted = InProcess(env)  # the app again on the same CHATBOT_DB: the store opens it as at a restart
        reply = restarted.reply(reader.cid)
        assert reply["content"].startswith(before) and len(reply["content"]) >= len(before), (
            len(reply["content"]), len(before),
        )
        assert reply["status"] == "interrupted" and reply["error"] == "restart"
        # The next turn sees the saved text as context.
        response = httpx.post(restarted.url + "chat", json={"message": "go on", "conversation_id": reader.cid},
                              timeout=60)
        assert response.status_code == 200
        assert fake.last.messages[-2]["content"] == reply["content"]
    finally:
        app.stop()
        if restarted is not None:
            restarted.stop()


def test_replica_killed_mid_reply_leaves_no_reply_streaming(fake: FakeUpstream, tmp_path: Path) -> None:
    redis = RedisServer()
    env = app_env(fake, REDIS_URL=redis.url, CHATBOT_DB=str(tmp_path / "unused.db"))
    a, b = App(env), InProcess(env)  # a is killed; b, the other replica, never is
    replicas = [a, b]
    try:
        reader = Reader(a.url, SLOW)
        before = kill_mid_reply(a, reader)
        assert reader.cid
        reply = b.reply(reader.cid)  # the other replica reads it
        assert reply["status"] == "interrupted" and reply["error"] == "lease_expired", reply["status"]
        assert reply["content"].startswith(before) and len(reply["content"]) >= len(before)
        replicas.append(InProcess(env))  # a replica comes back in a's place; later turns go through both
        for app in replicas[1:]:
            response = httpx.post(app.url + "chat", json={"message": "next", "conversation_id": reader.cid},
                                  timeout=60)
            assert response.status_code == 200, response.text
        messages = replicas[2].conversation(reader.cid)["messages"]
        assert [m["status"] for m in messages] == ["complete", "interrupted"] + ["complete"] * 4
        assert messages[1]["content"] == reply["content"]
    finally:
        for app in replicas:
            app.stop()
        redis.stop()


@contextlib.contextmanager
def small_tmpfs(where: Path) -> Iterator[Path]:
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)], capture_output=True,
                          text=True, timeout=30)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}): needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; the filler file to delete to free it."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (65_536, 4_096, 512, 64, 1):
            with contextlib.suppress(OSError):
                for _ in range(2 * 1024 * 1024 // size + 1):  # at most the 2 MB tmpfs: ends at "disk full"
                    out.write(b"\0" * size)
    return filler


MEDIUM = "tell me [[reply_lines=150]] [[chunk=8]] [[delay=0.01]]"  # about 2,300 characters, 3 s


def test_full_disk_mid_reply_is_reported_unsaved_then_repaired(fake: FakeUpstream, tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk") as disk:
        app = App(app_env(fake, CHATBOT_DB=str(disk / "c.db")))
        try:
            reader = Reader(app.url, MEDIUM)
            reader.wait_for(200)
            filler = fill(disk)
            done = reader.done()
            assert done["saved"] is False and done["interrupted"] is False
            errors = [e for e in reader.events if e["type"] == "error"]
            assert [e["code"] for e in errors] == ["not_saved"] and "could not be saved" in errors[0]["message"]
            assert reader.cid
            # the app's output is read by a thread: the line may land a moment after the done event
            wait_until(lambda: "could not store a reply" in app.log, timeout=30, what="the failed save logged")
            filler.unlink()  # the disk has room again: the kept reply is stored
            wait_until(lambda: app.reply(str(reader.cid))["status"] == "complete", timeout=30,
                       what="the reply repaired")
            assert app.reply(reader.cid)["content"] == reader.text
        finally:
            app.stop()


def stream_text_face(app: App, redis: RedisServer) -> str:
    """The plain SSE face, Redis killed mid-reply: an [ERROR] line before [DONE]."""
    with httpx.stream("POST", app.url + "chat/stream", json={"message": MEDIUM}, timeout=60) as r:
        cid = r.headers["x-conversation-id"]
        lines = []
        for line in r.iter_lines():
            lines.append(line)
            if len(lines) == 40:
                redis.kill()
    data = [line for line in lines if line.startswith("data: ")]
    assert data[-1] == "data: [DONE]"
    assert data[-2].startswith("data: [ERROR] This reply could not be saved"), data[-3:]
    return cid


def stream_ws_face(app: App, redis: RedisServer) -> str:
    """The WebSocket face, Redis killed mid-reply: an error event not_saved, then done saved false."""
    from websockets.sync.client import connect

    events = []
    with connect(app.url.replace("http://", "ws://") + "chat/ws", open_timeout=30) as ws:
        ws.send(json.dumps({"message": MEDIUM}))
        while not events or events[-1]["type"] != "done":
            events.append(json.loads(ws.recv(timeout=60)))
            if len(events) == 20:
                redis.kill()
    assert events[-1]["saved"] is False
    assert [e["code"] for e in events if e["type"] == "error"] == ["not_saved"]
    return events[0]["conversation_id"]


def stream_json_face(app: App, redis: RedisServer) -> str:
    reader = Reader(app.url, MEDIUM)
    reader.wait_for(200)
    redis.kill()
    done = reader.done()
    assert done["saved"] is False and done["interrupted"] is False
    assert [e["code"] for e in reader.events if e["type"] == "error"] == ["not_saved"]
    return str(reader.cid)


def test_redis_killed_mid_reply_is_reported_unsaved_then_repaired(fake: FakeUpstream, tmp_path: Path) -> None:
    data = tmp_path / "redis"
    data.mkdir()
    redis = RedisServer("--appendonly", "yes", "--appendfsync", "always", "--dir", str(data))
    app = App(app_env(fake, REDIS_URL=redis.url, CHATBOT_DB=str(tmp_path / "unused.db")))
    try:
        for face in (stream_json_face, stream_text_face, stream_ws_face):
            cid = face(app, redis)
            redis.start()  # the same data: the conversation is there, its reply still streaming
            wait_until(lambda cid=cid: app.reply(cid)["status"] == "complete", timeout=30, what="repaired")
            assert len(app.reply(cid)["content"]) > 2_000, face.__name__
    finally:
        app.stop()
        redis.stop()
    assert app.log.count("could not store a reply") == 3
    assert app.log.count("stored a reply of conversation") == 3


def test_a_redis_restart_is_reconnected_and_retried_on_every_route(fake: FakeUpstream, tmp_path: Path) -> None:
    """Measured before: after a Redis restart, a 503, then HTTP 499 with an empty body (/chat) and a 200
    stream cut with neither [ERROR] nor [DONE] (/chat/stream). Now every request after a restart works:
    the store and the visitor limits (which share the Redis) reconnect and retry."""
    password = "pw-never-in-logs-0123456789"
    redis = RedisServer("--requirepass", password)
    url = f"redis://:{password}@127.0.0.1:{redis.port}/0"
    app = App(app_env(fake, REDIS_URL=url, CHATBOT_DB=str(tmp_path / "unused.db"),
                      CHATBOT_RATE_LIMIT="1000/minute", CHATBOT_STREAMS_PER_VISITOR="4"))
    outcomes: list[tuple[str, int, str]] = []
    try:
        assert httpx.post(app.url + "chat", json={"message": "hi"}, timeout=60).status_code == 200
        for route in ("chat", "chat/stream", "chat", "chat/stream"):
            redis.kill()
            redis.start()
            for _ in range(3):
                r = httpx.post(app.url + route, json={"message": "hi"}, timeout=60)
                outcomes.append((route, r.status_code, r.text))
    finally:
        app.stop()
        redis.stop()
    for route, status, text in outcomes:
        if route == "chat/stream":
            data = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
            assert data[-1] == "[DONE]", text
            text = "".join(data[:-1])
        assert status == 200 and "Hello from" in text and "[ERROR]" not in text, (route, status, text)
    assert password not in app.log


async def test_chat_tab_with_redis_down_says_so_and_does_not_claim_the_message_is_kept(fake: FakeUpstream) -> None:
    from conftest import make_settings

    from chatbot.core.upstream import Upstream
    from chatbot.web.ui import ChatUI

    redis = RedisServer()
    settings = make_settings(fake.base_url, REDIS_URL=redis.url, CHATBOT_RATE_LIMIT="100/minute",
                             CHATBOT_STREAMS_PER_VISITOR="2")
    redis.kill()
    ui = ChatUI(settings, Upstream(settings))
    final = [update async for update in ui.respond("hello", [], "fast")][-1]
    shown = json.dumps(final, ensure_ascii=False)
    assert "(Redis) cannot be reached" in shown and "nothing was saved" in shown, shown
    assert "Your message is kept" not in shown
    assert fake.requests == []


def test_a_saved_reply_says_so_on_every_face(fake: FakeUpstream, tmp_path: Path) -> None:
    app = InProcess(app_env(fake, CHATBOT_DB=str(tmp_path / "c.db")))
    try:
        response = httpx.post(app.url + "chat", json={"message": "hi"}, timeout=60)
        assert response.status_code == 200 and response.json()["saved"] is True
        reader = Reader(app.url, "hello")
        done = reader.done()
        assert done["saved"] is True and not [e for e in reader.events if e["type"] == "error"]
    finally:
        app.stop()


def test_limits_redis_down_is_a_503_before_anything_is_stored_and_a_log_line(
    fake: FakeUpstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The visitor limits' Redis is down (the conversation store, SQLite here, is fine): the limits come
    before anything is stored, so /chat, /chat/stream and its JSON events each answer a JSON 503
    ``store_unavailable`` before any stream starts, nothing is stored or sent upstream, and each failure is
    logged with its traceback and without the Redis password."""
    from conftest import make_settings

    import app as switchboard
    from chatbot.core.sqlite_store import SQLiteStore

    password = "pw-never-in-logs-0123456789"
    settings = make_settings(fake.base_url, REDIS_URL=f"redis://:{password}@127.0.0.1:{free_port()}/0",
                             CHATBOT_RATE_LIMIT="100/minute", CHATBOT_STREAMS_PER_VISITOR="2")
    store = SQLiteStore(tmp_path / "c.db")
    with caplog.at_level("INFO"), switchboard.serve_in_thread(switchboard.build_server(settings, store=store)) as app:
        for route in ("chat", "chat/stream", "chat/stream?format=json"):
            r = httpx.post(app.url + route, json={"message": "hi"}, timeout=60)
            assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable", (route, r.text)
            assert "(Redis) cannot be reached" in r.json()["error"]["message"]
            assert "x-conversation-id" not in r.headers  # nothing was stored
    failures = [r for r in caplog.records if r.getMessage().startswith("the limits' store failed")]
    assert len(failures) == 3 and all(r.exc_text and "Traceback" in r.exc_text for r in failures)
    assert password not in caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert fake.requests == []

