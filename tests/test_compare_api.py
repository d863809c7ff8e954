"""Compare over the HTTP API (POST /compare/stream, WS /compare/ws) and gradio_client's /compare, served for real
(``app.build_server`` against the fake upstream); the core's behaviours are in test_compare.py."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from conftest import make_settings, predict, wait_until
from fake_upstream import Behaviour, FakeUpstream
from test_compare import MODELS, WAIT, four_models, record_of

# ------------------------------------------------------------------------------------------ the HTTP face

TOKEN = "compare-token-0123456789abcdef"


@pytest.fixture(scope="module")
def compare_url(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One app with the four fake models and no API token, for the tests that need nothing else (each test's
    streams end before it does); its URL."""
    import app as switchboard

    db = tmp_path_factory.mktemp("compare-api") / "switchboard.db"
    settings = make_settings(fake_upstream.base_url, CHATBOT_MODELS=",".join(MODELS), CHATBOT_DB=str(db))
    with switchboard.serve_in_thread(switchboard.build_server(settings)) as running:
        yield running.url


def sse_payloads(raw: bytes) -> list[dict]:
    return [json.loads(line[len("data: "):]) for line in raw.decode().splitlines() if line.startswith("data: ")]


def test_http_compare_streams_tagged_events_and_stores_every_column(fake: FakeUpstream, serve) -> None:
    four_models(fake)
    url = serve(CHATBOT_MODELS=",".join(MODELS), CHATBOT_API_TOKENS=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = {"message": "What is the answer?", "models": MODELS}
    with httpx.Client(timeout=WAIT) as client:
        assert client.post(url + "compare/stream", json=body).status_code == 401  # the gate, as every route
        assert fake.requests == []
        response = client.post(url + "compare/stream", json=body, headers=auth)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = sse_payloads(response.content)
        assert events[0]["type"] == "start" and [c["model"] for c in events[0]["columns"]] == MODELS
        assert events[-1] == {"type": "done", "conversation_id": events[0]["conversation_id"], "saved": True}
        text = {m: "".join(e["text"] for e in events if e["type"] == "delta" and e["model"] == m) for m in MODELS}
        assert text["fake/thinker"] == "Forty-two." and text["fake/slow"].startswith("Slowly")
        errors = [e for e in events if e["type"] == "error"]
        assert [(e["column"], e["model"], e["code"]) for e in errors] == [(2, "fake/broken", "upstream_error")]
        stats = {e["model"]: e for e in events if e["type"] == "stats"}
        assert set(stats) == set(MODELS) and stats["fake/thinker"]["cost"] == pytest.approx(0.0042)
        thinker = record_of(fake, "fake/thinker")
        assert stats["fake/thinker"]["tokens_out"] == thinker.chunks_sent + thinker.reasoning_chunks_sent
        summary = next(e for e in events if e["type"] == "summary")
        # the fastest stream is the one whose measured speed is highest (the summary reads the stats it sent;
        # which model that is depends on how the app's loop read the streams: on a loaded machine a column's
        # chunks may come in one burst, see test_compare.py for the core's choice at a known pace)
        speeds = {m: s["tokens_per_second"] for m, s in stats.items()
                  if m != "fake/broken" and s["tokens_per_second"] is not None}
        assert summary["cheapest"] == "fake/thinker" and summary["fastest_stream"] == max(speeds, key=speeds.get)

        cid = events[0]["conversation_id"]
        stored = client.get(f"{url}conversations/{cid}", headers=auth).json()["messages"]
        assert [(m["role"], m["model"] if m["role"] == "assistant" else None) for m in stored] == [
            x for m in MODELS for x in (("user", None), ("assistant", m))
        ]
        assert [m["status"] for m in stored if m["role"] == "assistant"] == [
            "complete", "complete", "interrupted", "complete"
        ]

        one = client.post(url + "compare/stream?format=json", json={**body, "models": MODELS[:2]}, headers=auth)
        assert one.status_code == 200, one.text
        answer = one.json()
        assert [c["model"] for c in answer["columns"]] == MODELS[:2] and answer["saved"] is True
        assert answer["columns"][0]["reply"].startswith("Quick") and answer["summary"]["cut_by_length"] == []

        bad = client.post(url + "compare/stream", json={**body, "models": ["fake/fast", "no/such"]}, headers=auth)
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "unknown_model"


def test_http_compare_refused_as_a_whole_by_the_limits(fake: FakeUpstream, serve) -> None:
    url = serve(CHATBOT_MODELS=",".join(MODELS), CHATBOT_API_TOKENS=TOKEN, CHATBOT_API_RATE_LIMIT="3/minute")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(timeout=WAIT) as client:
        response = client.post(url + "compare/stream", json={"message": "Hi", "models": MODELS}, headers=auth)
        assert response.status_code == 429, response.text
        assert response.json()["error"]["code"] == "limit_messages" and "Retry-After" in response.headers
        assert fake.requests == []
        ok = client.post(url + "compare/stream?format=json", json={"message": "Hi", "models": MODELS[:3]}, headers=auth)
        assert ok.status_code == 200 and len(fake.requests) == 3


def test_http_compare_client_that_leaves_closes_every_upstream_connection(fake: FakeUpstream, compare_url: str) -> None:
    fake.default = Behaviour(endless=True, delay=0.02)
    url = compare_url
    with httpx.Client(timeout=WAIT) as client, client.stream(
        "POST", url + "compare/stream", json={"message": "Go on", "models": MODELS[:3]}
    ) as response:
        assert response.status_code == 200
        seen = 0
        for line in response.iter_lines():
            seen += line.startswith("data: ") and '"delta"' in line
            if seen >= 6:
                break
    wait_until(lambda: len(fake.requests) == 3 and all(r.disconnected_at for r in fake.requests),
               timeout=WAIT, what="every column's upstream connection closed")


# ------------------------------------------------------------------------------ gradio_client's /compare


def test_gradio_client_compare_endpoint(fake: FakeUpstream, compare_url: str) -> None:
    from gradio_client import Client

    four_models(fake)
    url = compare_url
    client = Client(url, verbose=False)
    answer = predict(client, "What is the answer?", MODELS, api_name="/compare")
    columns = {c["model"]: c for c in answer["columns"]}
    assert list(columns) == MODELS
    assert columns["fake/thinker"]["reply"] == "Forty-two." and columns["fake/thinker"]["cost"] == pytest.approx(0.0042)
    assert columns["fake/broken"]["error"] and not columns["fake/fast"]["error"]
    assert answer["summary"]["cheapest"] == "fake/thinker"
    refused = predict(client, "Hi", ["fake/fast"], api_name="/compare")
    assert refused["code"] == "compare_columns" and "2" in refused["error"]


def test_websocket_compare_stops_one_column_then_all(fake: FakeUpstream, compare_url: str) -> None:
    from websockets.sync.client import connect

    fake.default = Behaviour(endless=True, delay=0.02)
    url = compare_url
    with connect(url.replace("http://", "ws://") + "compare/ws", open_timeout=10) as ws:
        ws.send(json.dumps({"message": "Go on", "models": MODELS[:3]}))
        start = json.loads(ws.recv(timeout=WAIT))
        assert start["type"] == "start" and [c["model"] for c in start["columns"]] == MODELS[:3]
        seen: set[int] = set()
        live: set[int] = set()  # the columns' stats arrive live while they stream, as over SSE
        while len(seen) < 3 or len(live) < 3:
            event = json.loads(ws.recv(timeout=WAIT))
            seen |= {event["column"]} if event["type"] == "delta" else set()
            live |= {event["column"]} if event["type"] == "stats" and not event["ended"] else set()
        ws.send(json.dumps({"type": "stop", "column": 1}))
        wait_until(lambda: record_of(fake, "fake/slow").disconnected_at is not None, timeout=WAIT,
                   what="the stopped column's upstream connection closed")
        others = [record_of(fake, m) for m in ("fake/fast", "fake/broken")]
        sent = [r.chunks_sent for r in others]
        wait_until(lambda: all(r.chunks_sent > n + 5 for r, n in zip(others, sent, strict=True)), timeout=WAIT,
                   what="the other columns streaming on")
        assert all(r.disconnected_at is None for r in others)
        ws.send(json.dumps({"type": "stop"}))
        events = []
        while not events or events[-1]["type"] != "done":
            events.append(json.loads(ws.recv(timeout=WAIT)))
        assert [e["column"] for e in events if e["type"] == "stopped"][0] == 1  # stopped first, alone
        assert sorted(e["column"] for e in events if e["type"] == "stopped") == [0, 1, 2]
        wait_until(lambda: all(r.disconnected_at is not None for r in others), timeout=WAIT,
                   what="every upstream connection closed")
        stored = httpx.get(f"{url}conversations/{start['conversation_id']}", timeout=WAIT).json()["messages"]
        ended = [(m["status"], m["error"]) for m in stored if m["role"] == "assistant"]
        assert ended == [("interrupted", "stopped")] * 3


def test_http_compare_again_continues_each_column_with_its_own_models_reply(
    fake: FakeUpstream, compare_url: str
) -> None:
    from test_compare import own_threads

    fake.by_model = {m: Behaviour(reply=f"Answer of {m}.") for m in MODELS}
    url = compare_url
    with httpx.Client(timeout=WAIT) as client:
        one = client.post(url + "compare/stream?format=json", json={"message": "One", "models": MODELS[:2]}).json()
        since = len(fake.requests)
        body = {"message": "Two", "models": ["fake/slow", "fake/thinker"], "conversation_id": one["conversation_id"]}
        assert client.post(url + "compare/stream", json=body).status_code == 200
        since_two = len(fake.requests)
        body = {"message": "Three", "model": "fake/slow", "conversation_id": one["conversation_id"]}
        assert client.post(url + "chat", json=body).status_code == 200  # a plain turn: the model's own thread
    assert own_threads(fake, since, "Two") == {
        "fake/slow": ["One", "Answer of fake/slow.", "Two"],
        "fake/thinker": ["One", "Answer of fake/fast.", "Two"],  # not compared there: the first column's
    }
    assert own_threads(fake, since_two, "Three") == {
        "fake/slow": ["One", "Answer of fake/slow.", "Two", "Answer of fake/slow.", "Three"],
    }


def test_http_compare_sends_paced_live_stats_while_streaming(fake: FakeUpstream, serve) -> None:
    priced = "gpt-4.1-mini"  # the catalogue knows its price: the cost is live too
    fake.by_model = {priced: Behaviour(reply="word " * 120, tokens_per_second=300),
                     "fake/slow": Behaviour(reply="Short.")}
    url = serve(CHATBOT_MODELS=",".join([priced, *MODELS]))
    with httpx.Client(timeout=WAIT) as client:
        body = {"message": "Hi", "models": [priced, "fake/slow"]}
        events = sse_payloads(client.post(url + "compare/stream", json=body).content)
        schema = client.get(url + "openapi.json").json()
    fast = [e for e in events if e.get("column") == 0]
    live = [e for e in fast if e["type"] == "stats" and not e["ended"]]
    deltas = [e for e in fast if e["type"] == "delta"]
    end = next(i for i, e in enumerate(fast) if e["type"] == "stats" and e["ended"])
    assert len(live) >= 3 and all(fast.index(e) < end for e in live)  # live, before the column's end
    assert len(live) < len(deltas)  # paced: not one per token
    assert live[0]["first_token_seconds"] is not None and live[0]["model"] == priced
    assert live[0]["tokens_in"] > 0 and live[0]["cost"] > 0  # the prompt as counted, priced, before any report
    outs = [e["tokens_out"] for e in live]
    assert outs == sorted(outs) and outs[-1] < fast[end]["tokens_out"] == record_of(fake, priced).chunks_sent
    data = schema["paths"]["/compare/stream"]["post"]["responses"]["200"]["content"]["text/event-stream"]
    stats_event = data["schema"]["properties"]["data"]["contentSchema"]["anyOf"][0]
    assert {"ended", "tokens_per_second", "first_token_seconds", "cost"} <= set(stats_event["properties"])


def test_gradio_client_compare_again_with_the_history_it_answered(fake: FakeUpstream, compare_url: str) -> None:
    from gradio_client import Client
    from test_compare import own_threads

    fake.by_model = {m: Behaviour(reply=f"Answer of {m}.") for m in MODELS}
    fake.by_model["fake/slow"] = Behaviour(reply="Answer of fake/slow.", finish_reason="length")
    client = Client(compare_url, verbose=False)
    earlier = [{"role": "user", "content": "Earlier"}, {"role": "assistant", "content": "Before."}]
    one = predict(client, "One", MODELS[:2], earlier, api_name="/compare")
    assert [c["cut_by_length"] for c in one["columns"]] == [False, True]  # as the HTTP API's columns say
    since = len(fake.requests)
    predict(client, "Two", ["fake/slow", "fake/thinker"], one["history"], api_name="/compare")
    assert own_threads(fake, since, "Two") == {
        "fake/slow": ["Earlier", "Before.", "One", "Answer of fake/slow.", "Two"],
        "fake/thinker": ["Earlier", "Before.", "One", "Answer of fake/fast.", "Two"],
    }
