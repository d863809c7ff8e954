"""The app served for real (UI and HTTP API on one port, SQLite, the fake upstream): a refused request
costs nothing (issue 12.4), and an answer without a reply is a clear error on every face and stored as
failed (13.6)."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from conftest import make_settings, predict
from fake_upstream import Behaviour, FakeUpstream
from gradio_client import Client

import app as switchboard
from chatbot.core.errors import render

BIG = "x" * 200_000


@pytest.fixture
def serve(fake: FakeUpstream, tmp_path: Path) -> Iterator[Callable[..., tuple[str, Path]]]:
    """``serve(**env)``: (the app's URL, its SQLite file)."""
    running = []

    def start(**env: str) -> tuple[str, Path]:
        db = tmp_path / f"{uuid.uuid4().hex}.db"
        server = switchboard.serve_in_thread(
            switchboard.build_server(make_settings(fake.base_url, CHATBOT_DB=str(db), **env))
        )
        running.append(server)
        return server.url, db

    yield start
    for server in running:
        server.stop()


def rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT count(*) FROM messages").fetchone()[0]


def ws_events(url: str, body: dict) -> list[dict]:
    """One request over the WebSocket: its events up to ``done`` (or the one error that refused it)."""
    from websockets.sync.client import connect

    events: list[dict] = []
    with connect(url.replace("http://", "ws://") + "chat/ws", open_timeout=10) as ws:
        ws.send(json.dumps(body))
        while not events or events[-1]["type"] != "done":
            events.append(json.loads(ws.recv(timeout=30)))
            if events[-1].get("status"):  # refused before it started
                break
    return events


def refusals(url: str, count: int) -> list[tuple[int, str]]:
    """``count`` requests through each door (JSON, SSE, WebSocket), each with a 200,000-character message."""
    out = []
    with httpx.Client(timeout=30) as client:
        for _ in range(count):
            for route in ("chat", "chat/stream"):
                response = client.post(url + route, json={"message": BIG})
                json_body = response.headers["content-type"].startswith("application/json")
                out.append((response.status_code, response.json()["error"]["code"] if json_body else "?"))
    for _ in range(count):
        error = next(e for e in ws_events(url, {"message": BIG}) if e["type"] == "error")
        out.append((error.get("status"), error["code"]))
    return out


# ------------------------------------------------------------------ 12.4: a refused request costs nothing


def test_requests_over_the_rate_limit_store_nothing(serve, fake: FakeUpstream) -> None:
    url, db = serve(CHATBOT_RATE_LIMIT="2/minute")
    for _ in range(2):
        assert httpx.post(url + "chat", json={"message": "hi"}, timeout=30).status_code == 200
    stored = rows(db)
    assert stored == 4
    refused = refusals(url, 5)
    assert rows(db) == stored and len(fake.requests) == 2
    assert set(refused) == {(429, "limit_messages")}


def test_requests_over_the_spending_ceiling_store_nothing(serve, fake: FakeUpstream) -> None:
    url, db = serve(CHATBOT_DAILY_BUDGET_USD="0.0000001")
    refused = refusals(url, 3)
    assert rows(db) == 0 and fake.requests == []
    assert set(refused) == {(429, "limit_budget")}


def test_a_second_stream_for_one_visitor_stores_nothing(serve, fake: FakeUpstream) -> None:
    from websockets.sync.client import connect

    url, db = serve(CHATBOT_STREAMS_PER_VISITOR="1")
    fake.push(Behaviour(stall_before_first=30))
    with connect(url.replace("http://", "ws://") + "chat/ws", open_timeout=10) as ws:
        ws.send(json.dumps({"message": "think hard"}))
        assert json.loads(ws.recv(timeout=30))["type"] == "start"
        fake.wait_for(lambda: fake.requests and fake.last.first_byte_at is not None, timeout=30)
        refused = refusals(url, 2)
        assert rows(db) == 2 and len(fake.requests) == 1
        assert set(refused) == {(429, "limit_one_at_a_time")}


# ---------------------------------------------------------------- 13.6: never a silent empty reply


@pytest.mark.parametrize(
    ("behaviour", "kind"),
    [
        (Behaviour(raw_body="<!doctype html><title>Sign in</title><p>Please sign in</p>"), "not_event_stream"),
        (Behaviour(reply="", finish_reason=None, usage=False), "server_interrupted"),
    ],
    ids=["html-page", "role-chunk-then-done"],
)
def test_an_answer_without_a_reply_is_explained_on_every_face(serve, fake: FakeUpstream, behaviour, kind) -> None:
    url, db = serve()
    message = render(kind)
    fake.default = behaviour

    response = httpx.post(url + "chat", json={"message": "hi"}, timeout=30)
    assert response.status_code == 502 and response.json()["error"] == {"code": kind, "message": message}
    cid = response.headers["x-conversation-id"]
    stored = httpx.get(f"{url}conversations/{cid}", timeout=10).json()["messages"][-1]
    assert (stored["status"], stored["error"], stored["content"]) == ("interrupted", kind, "")

    plain = httpx.post(url + "chat/stream", json={"message": "hi"}, timeout=30)
    assert plain.text == f"data: [ERROR] {message}\n\ndata: [DONE]\n\n"
    typed = httpx.post(url + "chat/stream", params={"format": "json"}, json={"message": "hi"}, timeout=30)
    events = [json.loads(line[6:]) for line in typed.text.split("\n\n") if line]
    assert [(e["type"], e.get("code")) for e in events] == [("error", kind), ("done", None)]
    assert events[-1]["interrupted"] is True

    over_ws = ws_events(url, {"message": "hi"})
    assert [(e["type"], e.get("code")) for e in over_ws] == [("start", None), ("error", kind), ("done", None)]
    assert over_ws[-1]["interrupted"] is True

    shown = predict(Client(url, verbose=False), "hi", model="fast", api_name="/chat")
    assert message in shown

    with sqlite3.connect(db) as conn:
        statuses = conn.execute("SELECT status FROM messages WHERE role = 'assistant'").fetchall()
    assert statuses and {s for (s,) in statuses} == {"interrupted"}


# ------------------------------------------------------------- 13.8: the provider connection is reused


def test_consecutive_api_replies_share_one_provider_connection(serve, fake: FakeUpstream) -> None:
    url, _ = serve()
    with httpx.Client(timeout=30) as client:
        for i in range(3):
            assert client.post(url + "chat", json={"message": f"hi {i}"}).status_code == 200
        assert client.post(url + "chat/stream", json={"message": "and a stream"}).text.endswith("[DONE]\n\n")
    ports = [r.client_port for r in fake.requests]
    assert len(ports) == 4 and len(set(ports)) == 1, ports
