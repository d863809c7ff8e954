"""The HTTP API (chatbot/http/routes.py), served for real: ``app.build_server`` under uvicorn on a free port, the
fake upstream behind it, real HTTP (httpx, curl), real WebSockets, SQLite and a real redis-server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import APP_START_S, TEST_KEY, RedisServer, free_port, make_settings, predict, wait_until
from fake_upstream import Behaviour, FakeUpstream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import app as switchboard
from chatbot.core.errors import render
from chatbot.core.settings import Settings
from chatbot.http.gate import is_loopback
from chatbot.http.sse import sse_data

ROOT = Path(__file__).resolve().parents[1]
TOKEN_A = "token-a-0123456789abcdefghij"
TOKEN_B = "token-b-0123456789abcdefghij"


# ------------------------------------------------------------------------------------------- helpers


def parse_sse(raw: bytes) -> list[str]:
    """Event data as an EventSource builds it (the SSE spec's parsing rules, comments dropped)."""
    events: list[str] = []
    data: list[str] | None = None
    for line in re.split(r"\r\n|\r|\n", raw.decode("utf-8")):
        if line == "":
            if data is not None:
                events.append("\n".join(data))
            data = None
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if field == "data":
                data = [*(data or []), value]
    return events


def stream(url: str, body: object, **kwargs: Any) -> tuple[httpx.Response, list[str]]:
    with httpx.Client(timeout=30) as client:
        response = client.post(url + "chat/stream", json=body, **kwargs)
    return response, parse_sse(response.content) if response.status_code == 200 else []


def text_of(events: list[str]) -> str:
    return "".join(e for e in events if e != "[DONE]" and not e.startswith("[ERROR]"))


def json_events(events: list[str]) -> list[dict]:
    return [json.loads(e) for e in events]


def ended_reply(url: str, cid: str) -> dict | None:
    """The newest stored message once it is no longer streaming, else None."""
    newest = conversation(url, cid)["messages"][-1]
    return newest if newest["status"] != "streaming" else None


def conversation(url: str, cid: str, **kwargs: Any) -> dict:
    response = httpx.get(f"{url}conversations/{cid}", timeout=10, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def start(fake_upstream: FakeUpstream, tmp_path: Path) -> Iterator[Callable[..., switchboard.RunningServer]]:
    """``start(settings=None, host="127.0.0.1", **env)``: the whole app served on a free port."""
    running: list[switchboard.RunningServer] = []

    def run(
        settings: Settings | None = None, host: str = "127.0.0.1", **env: str
    ) -> switchboard.RunningServer:
        env.setdefault("CHATBOT_DB", str(tmp_path / "switchboard.db"))
        chosen = settings or make_settings(fake_upstream.base_url, **env)
        server = switchboard.serve_in_thread(switchboard.build_server(chosen), host=host)
        running.append(server)
        return server

    yield run
    for server in running:
        server.stop()


@pytest.fixture(scope="module")
def server(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One app (SQLite) for the tests that do not care about the store; yields its URL."""
    db = tmp_path_factory.mktemp("api") / "switchboard.db"
    settings = make_settings(fake_upstream.base_url, CHATBOT_DB=str(db))
    with switchboard.serve_in_thread(switchboard.build_server(settings)) as running:
        yield running.url


@pytest.fixture(scope="module")
def tokens_server(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One app with two API tokens (``TOKEN_A``, ``TOKEN_B``) for the token tests (the same settings for
    each); yields its URL."""
    db = tmp_path_factory.mktemp("api-tokens") / "switchboard.db"
    settings = make_settings(fake_upstream.base_url, CHATBOT_DB=str(db), CHATBOT_API_TOKENS=f"{TOKEN_A}, {TOKEN_B}")
    with switchboard.serve_in_thread(switchboard.build_server(settings)) as running:
        yield running.url


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def any_store(
    request: pytest.FixtureRequest, fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The app on each store backend (the same suite against SQLite and a real redis-server)."""
    if request.param == "sqlite":
        env = {"CHATBOT_DB": str(tmp_path_factory.mktemp("api-sqlite") / "switchboard.db")}
    else:
        env = {"REDIS_URL": request.getfixturevalue("redis_server").url}
    settings = make_settings(fake_upstream.base_url, **env)
    with switchboard.serve_in_thread(switchboard.build_server(settings)) as running:
        yield running.url


# ---------------------------------------------------------------------------------------- the tutorial


def test_tutorial_curl_command_streams_text_done_and_header(server: str, fake: FakeUpstream) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed (apt-get install -y curl)")
    fake.push(Behaviour(chunk_size=3, delay=0.01))  # paced: deltas that arrive together are merged
    command = [
        curl, "-sS", "-i", "-N", "-X", "POST", f"{server}chat/stream",
        "-H", "Content-Type: application/json",
        "-d", '{"message": "¡Hola!", "model": "gpt-4.1-mini"}',
    ]
    done = subprocess.run(command, capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    headers = head.decode().lower()
    assert headers.startswith("http/1.1 200")
    assert re.search(r"^x-conversation-id: [0-9a-f]{32}\r?$", headers, re.M)
    assert "content-type: text/event-stream" in headers
    assert "cache-control: no-cache" in headers and "x-accel-buffering: no" in headers
    events = parse_sse(body)
    assert events[-1] == "[DONE]" and len(events) > 3  # streamed in pieces
    assert text_of(events) == "Hello from gpt-4.1-mini: you said ¡Hola!"
    assert body.startswith(b"data: ") and body.endswith(b"data: [DONE]\n\n")
    assert fake.last.model == "gpt-4.1-mini" and fake.last.stream


def test_chat_returns_reply_conversation_model_and_usage(server: str, fake: FakeUpstream) -> None:
    response = httpx.post(server + "chat", json={"message": "Hi", "model": "fast"}, timeout=30)
    assert response.status_code == 200
    body = response.json()
    assert body["reply"] == "Hello from gpt-4.1-mini: you said Hi"
    assert body["model"] == "gpt-4.1-mini" and body["finish_reason"] == "stop"
    assert response.headers["x-conversation-id"] == body["conversation_id"]
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0 and usage["cost"] > 0


def test_default_model_is_the_first_configured(server: str, fake: FakeUpstream) -> None:
    body = httpx.post(server + "chat", json={"message": "Hi"}, timeout=30).json()
    assert body["model"] == "gpt-4.1-mini" and fake.last.model == "gpt-4.1-mini"
    response, _ = stream(server, {"message": "Hi", "model": None, "conversation_id": None})
    assert response.status_code == 200 and fake.last.model == "gpt-4.1-mini"


def test_models_lists_the_tutorial_map_and_the_details(server: str) -> None:
    body = httpx.get(server + "models", timeout=10).json()
    assert body["models"] == {
        "fast": "gpt-4.1-mini", "smart": "claude-sonnet-4-6", "reasoning": "o3",
        "budget": "deepseek-chat", "creative": "claude-sonnet-4-6",
    }
    assert body["default"] == "fast"
    fast = next(m for m in body["available"] if m["name"] == "fast")
    assert fast["context_window"] == 1_047_576
    assert fast["prices"] == {"input": 0.4, "output": 1.6, "unit": "USD per million tokens"}


def test_openapi_schema_and_docs_page_describe_the_api(server: str) -> None:
    schema = httpx.get(server + "openapi.json", timeout=10).json()
    assert {"/chat", "/chat/stream", "/models", "/conversations/{conversation_id}"} <= set(schema["paths"])
    stream_op = schema["paths"]["/chat/stream"]["post"]
    assert "text/event-stream" in stream_op["responses"]["200"]["content"]
    assert any(p["name"] == "format" for p in stream_op["parameters"])
    assert schema["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http", "scheme": "bearer", "description": "One of the tokens in CHATBOT_API_TOKENS."}
    assert stream_op["security"] == schema["paths"]["/chat"]["post"]["security"] == [{"HTTPBearer": []}]
    assert TEST_KEY not in json.dumps(schema) and "You are a helpful" not in json.dumps(schema)
    docs = httpx.get(server + "docs", timeout=10)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_the_gradio_ui_still_answers_at_the_root(server: str, fake: FakeUpstream) -> None:
    from gradio_client import Client

    assert httpx.get(server, timeout=10).status_code == 200
    client = Client(server, verbose=False)
    reply = predict(client, "via the UI", model="fast", api_name="/chat")
    client.close()
    assert reply == "Hello from gpt-4.1-mini: you said via the UI"


# ------------------------------------------------------------------------------------------------- SSE


MULTILINE = (
    "First line\n\nSecond paragraph:\n```python\ndef f():\n    return 1\n```\n  leading spaces\n\n\nend\n"
)


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 500])
def test_reply_with_newlines_survives_sse_framing_byte_for_byte(
    server: str, fake: FakeUpstream, chunk_size: int
) -> None:
    fake.push(Behaviour(reply=MULTILINE, chunk_size=chunk_size))
    response, events = stream(server, {"message": "code please"})
    assert events[-1] == "[DONE]"
    assert text_of(events) == MULTILINE
    stored = conversation(server, response.headers["x-conversation-id"])["messages"][-1]
    assert stored["content"] == MULTILINE and stored["status"] == "complete"


@given(st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r"), min_size=1))
@settings(max_examples=300, deadline=None)
def test_sse_encoding_round_trips_any_text(text: str) -> None:
    assert parse_sse(sse_data(text)) == [text]


def test_carriage_returns_become_line_feeds() -> None:
    assert parse_sse(sse_data("a\r\nb\rc\n")) == ["a\nb\nc\n"]


def test_json_format_streams_typed_events(server: str, fake: FakeUpstream) -> None:
    fake.push(Behaviour(reply="Line one\nLine two", reasoning="Thinking it over", chunk_size=5))
    response, events = stream(server, {"message": "Hi", "model": "reasoning"}, params={"format": "json"})
    assert response.status_code == 200 and response.headers["x-conversation-id"]
    typed = json_events(events)
    kinds = [e["type"] for e in typed]
    assert kinds[0] == "reasoning" and kinds[-1] == "done" and "usage" in kinds
    assert "".join(e["text"] for e in typed if e["type"] == "reasoning") == "Thinking it over"
    assert "".join(e["text"] for e in typed if e["type"] == "delta") == "Line one\nLine two"
    done = typed[-1]
    assert done["conversation_id"] == response.headers["x-conversation-id"] and done["model"] == "o3"
    assert done["finish_reason"] == "stop" and done["interrupted"] is False
    usage = next(e for e in typed if e["type"] == "usage")
    assert usage["completion_tokens"] > 0 and usage["cost_source"] in ("upstream", "catalogue")


def test_failure_is_an_error_event_with_the_ui_wording_then_done(server: str, fake: FakeUpstream) -> None:
    response, events = stream(server, {"message": "hi [[status=429]] [[retry_after=2]]"})
    assert response.status_code == 200
    expected = render("rate_limited", wait="2 seconds")
    assert events == [f"[ERROR] {expected}", "[DONE]"]
    stored = conversation(server, response.headers["x-conversation-id"])["messages"]
    assert stored[-1]["status"] == "interrupted" and stored[-1]["error"] == "rate_limited"
    _, typed = stream(server, {"message": "hi [[status=429]] [[retry_after=2]]"}, params={"format": "json"})
    error, done = json_events(typed)
    assert error == {"type": "error", "code": "rate_limited", "message": expected, "retry_after": 2.0,
                     "partial": False}
    assert done["type"] == "done" and done["interrupted"] is True


def test_cut_reply_keeps_the_partial_text_and_is_stored_interrupted(server: str, fake: FakeUpstream) -> None:
    fake.push(Behaviour(reply="abcdefghijklmnop", chunk_size=4, cut_after=2))
    response, events = stream(server, {"message": "long story"})
    assert text_of(events) == "abcdefgh"
    assert events[-2] == f"[ERROR] {render('cut_note')} {render('cut')}" and events[-1] == "[DONE]"
    reply = conversation(server, response.headers["x-conversation-id"])["messages"][-1]
    assert (reply["content"], reply["status"], reply["error"]) == ("abcdefgh", "interrupted", "cut")


def test_chat_reports_a_failed_reply_with_its_status(server: str, fake: FakeUpstream) -> None:
    fake.push(status=429, headers={"Retry-After": "3"})
    response = httpx.post(server + "chat", json={"message": "hi"}, timeout=30)
    assert response.status_code == 429 and response.headers["retry-after"] == "3"
    body = response.json()
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["message"] == render("rate_limited", wait="3 seconds")
    assert body["conversation_id"] == response.headers["x-conversation-id"]
    fake.push(status=503)
    response = httpx.post(server + "chat", json={"message": "hi"}, timeout=30)
    assert response.status_code == 502 and response.json()["error"]["message"] == render("overloaded")


# ------------------------------------------------------------------------------------ conversations


def test_multi_turn_by_conversation_id(any_store: str, fake: FakeUpstream) -> None:
    first = httpx.post(any_store + "chat", json={"message": "My name is Ada."}, timeout=30).json()
    cid = first["conversation_id"]
    response, events = stream(any_store, {"message": "What is my name?", "conversation_id": cid})
    assert response.headers["x-conversation-id"] == cid and events[-1] == "[DONE]"
    assert fake.last.messages[1:] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello from gpt-4.1-mini: you said My name is Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    third = httpx.post(
        any_store + "chat", json={"message": "Thanks", "conversation_id": cid, "model": "smart"}, timeout=30
    )
    assert third.json()["model"] == "claude-sonnet-4-6" and len(fake.last.messages) == 6
    stored = conversation(any_store, cid)
    assert stored["conversation_id"] == cid
    roles = [(m["role"], m["status"]) for m in stored["messages"]]
    assert roles == [("user", "complete"), ("assistant", "complete")] * 3
    assert [m["model"] for m in stored["messages"]][-1] == "claude-sonnet-4-6"
    assert stored["messages"][3]["content"] == text_of(events)


def test_delete_conversation(any_store: str, fake: FakeUpstream) -> None:
    cid = httpx.post(any_store + "chat", json={"message": "forget me"}, timeout=30).json()["conversation_id"]
    assert httpx.delete(f"{any_store}conversations/{cid}").status_code == 204
    for response in (
        httpx.get(f"{any_store}conversations/{cid}"),
        httpx.delete(f"{any_store}conversations/{cid}"),
        httpx.post(any_store + "chat", json={"message": "again", "conversation_id": cid}),
    ):
        assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_conversation"


def test_racing_requests_on_one_conversation_lose_nothing(any_store: str, fake: FakeUpstream) -> None:
    fake.default = Behaviour(chunk_size=2, delay=0.005)
    cid = httpx.post(any_store + "chat", json={"message": "start"}, timeout=30).json()["conversation_id"]

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(
                client.post(any_store + ("chat" if i % 2 else "chat/stream"),
                            json={"message": f"question {i}", "conversation_id": cid})
                for i in range(16)
            ))

    responses = asyncio.run(race())
    assert all(r.status_code == 200 for r in responses)
    messages = conversation(any_store, cid)["messages"]
    assert len(messages) == 34
    pairs = list(zip(messages[::2], messages[1::2], strict=True))
    assert all(u["role"] == "user" and a["role"] == "assistant" for u, a in pairs)
    assert all(a["status"] == "complete" for _, a in pairs)
    assert all(a["content"] == f"Hello from gpt-4.1-mini: you said {u['content']}" for u, a in pairs)
    assert {u["content"] for u, _ in pairs[1:]} == {f"question {i}" for i in range(16)}


def test_restart_on_the_same_sqlite_file_continues_the_conversation(
    start, fake: FakeUpstream, tmp_path: Path
) -> None:
    db = str(tmp_path / "restart.db")
    first = start(CHATBOT_DB=db)
    response = httpx.post(first.url + "chat", json={"message": "Remember 42."}, timeout=30)
    cid = response.json()["conversation_id"]
    first.stop()
    second = start(CHATBOT_DB=db)
    body = {"message": "What number?", "conversation_id": cid}
    response = httpx.post(second.url + "chat", json=body, timeout=30)
    assert response.status_code == 200
    assert [m["content"] for m in fake.last.messages[1:]] == [
        "Remember 42.", "Hello from gpt-4.1-mini: you said Remember 42.", "What number?"
    ]
    assert len(conversation(second.url, cid)["messages"]) == 4


def test_stored_history_is_not_trimmed_but_what_is_sent_is(start, fake: FakeUpstream) -> None:
    server = start(CHATBOT_CONTEXT_TOKENS="300")
    cid = None
    for i in range(8):
        body = {"message": f"message {i} " + "word " * 40, "conversation_id": cid}
        cid = httpx.post(server.url + "chat", json=body, timeout=30).json()["conversation_id"]
    assert len(fake.last.messages) < 1 + 2 * 8  # the upstream got a trimmed history...
    assert len(conversation(server.url, cid)["messages"]) == 16  # ...the store keeps all of it


# --------------------------------------------------------------------------------------- bad input


BAD_BODIES: list[tuple[str, dict[str, Any], int, str]] = [
    ("empty message", {"json": {"message": ""}}, 422, "empty_message"),
    ("whitespace message", {"json": {"message": " \n\t "}}, 422, "empty_message"),
    ("NUL-only message", {"json": {"message": "\x00\x00"}}, 422, "empty_message"),
    ("unknown model", {"json": {"message": "hi", "model": "gpt-17"}}, 422, "unknown_model"),
    ("malformed JSON", {"content": b'{"message": "hi"', "headers": {"content-type": "application/json"}}, 400,
     "invalid_json"),
    ("not JSON at all", {"content": b"message=hi", "headers": {"content-type": "application/json"}}, 400,
     "invalid_json"),
    ("form post", {"data": {"message": "hi"}}, 422, "invalid_request"),
    ("no body", {}, 422, "invalid_request"),
    ("JSON array", {"json": ["hi"]}, 422, "invalid_request"),
    ("JSON string", {"json": "hi"}, 422, "invalid_request"),
    ("message number", {"json": {"message": 42}}, 422, "invalid_request"),
    ("message null", {"json": {"message": None}}, 422, "invalid_request"),
    ("model list", {"json": {"message": "hi", "model": ["fast"]}}, 422, "invalid_request"),
    ("conversation id number", {"json": {"message": "hi", "conversation_id": 7}}, 422, "invalid_request"),
    ("missing message", {"json": {"model": "fast"}}, 422, "invalid_request"),
    ("unknown conversation", {"json": {"message": "hi", "conversation_id": "0" * 32}}, 404,
     "unknown_conversation"),
    ("odd conversation id", {"json": {"message": "hi", "conversation_id": "../../etc"}}, 404,
     "unknown_conversation"),
    ("body over the cap", {"json": {"message": "x" * 1_100_000}}, 413, "body_too_large"),
]


@pytest.mark.parametrize("path", ["chat", "chat/stream"])
@pytest.mark.parametrize(
    ("case", "request_kwargs", "status", "code"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
def test_bad_input_is_a_readable_4xx_and_never_reaches_the_upstream(
    server: str, fake: FakeUpstream, path: str, case: str, request_kwargs: dict, status: int, code: str
) -> None:
    response = httpx.post(server + path, timeout=30, **request_kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert len(error["message"]) > 10 and "Traceback" not in error["message"]
    assert "validation error" not in error["message"].lower() and "pydantic" not in error["message"].lower()
    assert fake.requests == []


def test_lone_surrogates_and_nul_are_cleaned_not_a_crash(server: str, fake: FakeUpstream) -> None:
    raw = b'{"message": "hi \\ud800 there\\u0000!"}'
    json_type = {"content-type": "application/json"}
    response = httpx.post(server + "chat", content=raw, headers=json_type, timeout=30)
    assert response.status_code == 200
    stored = conversation(server, response.json()["conversation_id"])["messages"][0]["content"]
    assert stored == "hi ? there!" == fake.last.messages[-1]["content"]  # as chatbot.core.history.clean_text does


def test_messages_name_the_problem(server: str) -> None:
    def message(**kwargs: Any) -> str:
        return httpx.post(server + "chat", timeout=10, **kwargs).json()["error"]["message"]

    assert message(json={"message": ""}) == render("empty_message")
    assert message(json={"message": "hi", "model": "gpt-17"}) == render("unknown_model", model="gpt-17")
    assert "“message” must be a string" in message(json={"message": 42})
    assert "“message” is required" in message(json={})
    plain_text = {"content": b'{"message": "hi"}', "headers": {"content-type": "text/plain"}}
    assert "Content-Type: application/json" in message(**plain_text)
    assert "not valid JSON" in message(content=b"{", headers={"content-type": "application/json"})
    assert "CHATBOT_MAX_BODY_BYTES" in message(json={"message": "x" * 1_100_000})


def test_message_longer_than_the_limit_is_refused(start, fake: FakeUpstream) -> None:
    """Too many characters is ``input_too_long`` on every face (the chat core says the same), with the same
    message; too many tokens for the model is ``message_too_long``."""
    settings = make_settings(fake.base_url).model_copy(update={"max_message_chars": 50})
    server = start(settings)
    response = httpx.post(server.url + "chat", json={"message": "x" * 51}, timeout=10)
    assert response.status_code == 422 and response.json()["error"]["code"] == "input_too_long"
    assert response.json()["error"]["message"] == render("input_too_long", chars=51, limit=50)
    assert fake.requests == []


def test_body_cap_is_a_setting(start, fake: FakeUpstream) -> None:
    from chatbot.core.settings import ConfigError

    server = start(CHATBOT_MAX_BODY_BYTES="2048").url
    assert httpx.post(server + "chat", json={"message": "x" * 1900}, timeout=10).status_code == 200
    chunked = (part for part in [b'{"message": "', b"y" * 3000, b'"}'])  # no Content-Length: counted
    response = httpx.post(server + "chat", content=chunked, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "2,048 bytes" in response.json()["error"]["message"]
    assert len(fake.requests) == 1
    with pytest.raises(ConfigError, match="CHATBOT_MAX_BODY_BYTES"):
        make_settings(None, CHATBOT_MAX_BODY_BYTES="lots")


def test_wrong_method_and_unknown_api_paths_are_json(server: str) -> None:
    response = httpx.get(server + "chat")
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["allow"] == "POST"
    assert httpx.put(server + "conversations/" + "0" * 32).status_code == 405
    response = httpx.get(server + "conversations/a/b")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert httpx.get(server + "chat/nope").status_code == 404


# ---------------------------------------------------------------------------------------------- auth


def test_tokens_own_their_conversations(tokens_server: str, fake: FakeUpstream) -> None:
    server = tokens_server
    a = {"Authorization": f"Bearer {TOKEN_A}"}
    b = {"Authorization": f"Bearer {TOKEN_B}"}
    created = httpx.post(server + "chat", json={"message": "secret plans"}, headers=a, timeout=30)
    assert created.status_code == 200
    cid = created.json()["conversation_id"]
    assert conversation(server, cid, headers=a)["messages"][0]["content"] == "secret plans"
    calls = len(fake.requests)
    for response in (
        httpx.get(f"{server}conversations/{cid}", headers=b),
        httpx.post(server + "chat", json={"message": "me too", "conversation_id": cid}, headers=b),
        httpx.post(server + "chat/stream", json={"message": "me too", "conversation_id": cid}, headers=b),
        httpx.delete(f"{server}conversations/{cid}", headers=b),
    ):
        assert response.status_code == 404 and response.json()["error"]["code"] == "unknown_conversation"
    assert len(fake.requests) == calls
    assert len(conversation(server, cid, headers=a)["messages"]) == 2  # B changed nothing
    assert httpx.get(server + "models", headers=b).status_code == 200


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Basic dG9rZW4=", f"Bearer {TOKEN_A}x", "Bearer wrong", TOKEN_A]
)
def test_every_route_needs_a_valid_token(tokens_server: str, fake: FakeUpstream, authorization: str | None) -> None:
    server = tokens_server
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path, body in (
        ("POST", "chat", {"message": "hi"}),
        ("POST", "chat/stream", {"message": "hi"}),
        ("GET", "models", None),
        ("GET", "conversations/" + "0" * 32, None),
        ("DELETE", "conversations/" + "0" * 32, None),
        ("POST", "chat", {"message": 5}),  # auth comes before validation
    ):
        response = httpx.request(method, server + path, json=body, headers=headers, timeout=10)
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "CHATBOT_API_TOKENS" in response.json()["error"]["message"]
        assert TOKEN_A not in response.text
    assert fake.requests == []
    assert httpx.get(server, timeout=10).status_code == 200  # the UI is not the API's to lock
    assert httpx.get(server + "openapi.json", timeout=10).status_code == 200


@pytest.mark.parametrize(("host", "share"), [("0.0.0.0", False), ("192.0.2.10", False), ("127.0.0.1", True)])
def test_no_tokens_on_a_non_loopback_bind_is_refused(
    start, fake: FakeUpstream, host: str, share: bool
) -> None:
    settings = make_settings(fake.base_url).model_copy(update={"host": host, "share": share})
    server = start(settings).url  # served on loopback here, but configured as the settings say
    for response in (
        httpx.post(server + "chat", json={"message": "hi"}, timeout=10),
        httpx.get(server + "models", timeout=10),
    ):
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "api_disabled"
        assert "CHATBOT_API_TOKENS" in response.json()["error"]["message"]
    assert fake.requests == []
    tokens = make_settings(None, CHATBOT_API_TOKENS=TOKEN_A).api_tokens
    with_tokens = settings.model_copy(update={"api_tokens": tokens})
    opened = start(with_tokens).url
    response = httpx.get(opened + "models", headers={"Authorization": f"Bearer {TOKEN_A}"}, timeout=10)
    assert response.status_code == 200


def test_loopback_detection() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost", "LOCALHOST"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.2", "example.com", ""))


def test_tokens_setting_is_validated_without_showing_tokens() -> None:
    from chatbot.core.settings import ConfigError

    settings = make_settings(None, CHATBOT_API_TOKENS=f" {TOKEN_A} ,{TOKEN_B},{TOKEN_A}")
    assert [t.get_secret_value() for t in settings.api_tokens] == [TOKEN_A, TOKEN_B]
    assert TOKEN_A not in repr(settings)
    for bad in ("short", f"{TOKEN_A},has space inside-0123456789", " , "):
        with pytest.raises(ConfigError) as caught:
            make_settings(None, CHATBOT_API_TOKENS=bad)
        assert "CHATBOT_API_TOKENS" in str(caught.value)
        assert TOKEN_A not in str(caught.value) and "has space" not in str(caught.value)


# ------------------------------------------------------------------------------------------- disconnects


@pytest.mark.parametrize("stall", [0.0, 30.0])
def test_dropped_stream_closes_the_upstream_within_a_second(
    server: str, fake: FakeUpstream, stall: float
) -> None:
    fake.push(Behaviour(reply="z" * 8000, chunk_size=4, delay=0.05, stall_before_first=stall))
    with httpx.Client(timeout=30) as client, client.stream(
        "POST", server + "chat/stream", json={"message": "go"}
    ) as sse:
        cid = sse.headers["x-conversation-id"]
        fake.wait_for(lambda: fake.requests and fake.last.first_byte_at is not None, timeout=10)
        if not stall:
            lines = sse.iter_lines()
            while not next(lines).startswith("data: z"):
                pass
    fake.wait_for(lambda: fake.last.disconnected_at is not None, timeout=1.0)  # within 1 s of leaving
    assert fake.last.finished_at is None
    reply = wait_until(lambda: ended_reply(server, cid))
    assert reply["status"] == "interrupted" and reply["error"] == "disconnected"
    assert set(reply["content"]) <= {"z"} and (stall or reply["content"])


def test_dropped_chat_request_closes_the_upstream(server: str, fake: FakeUpstream) -> None:
    fake.push(Behaviour(stall_before_first=30))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server + "chat", json={"message": "think"}, timeout=httpx.Timeout(10, read=0.5))
    fake.wait_for(lambda: fake.last.disconnected_at is not None, timeout=1.0)  # within 1 s of leaving


# ---------------------------------------------------------------------------------------------- WebSocket


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://") + "chat/ws"


def test_websocket_streams_then_stops_mid_reply(server: str, fake: FakeUpstream) -> None:
    from websockets.sync.client import connect

    fake.push(Behaviour(reply="w" * 4000, chunk_size=4, delay=0.02))
    with connect(ws_url(server), open_timeout=10) as ws:
        ws.send(json.dumps({"message": "stream please", "model": "fast"}))
        start_event = json.loads(ws.recv(timeout=10))
        assert start_event["type"] == "start" and start_event["model"] == "gpt-4.1-mini"
        cid = start_event["conversation_id"]
        deltas = 0
        while deltas < 3:
            event = json.loads(ws.recv(timeout=10))
            deltas += event["type"] == "delta"
        ws.send(json.dumps({"type": "stop"}))
        while (event := json.loads(ws.recv(timeout=10)))["type"] != "done":
            assert event["type"] == "delta"
        assert event["stopped"] is True and event["interrupted"] is True and event["conversation_id"] == cid
        fake.wait_for(lambda: fake.last.disconnected_at is not None, timeout=1.0)  # within 1 s of Stop
        assert fake.last.finished_at is None
        reply = conversation(server, cid)["messages"][-1]  # stored before "done" was sent
        assert reply["status"] == "interrupted" and reply["error"] == "stopped" and reply["content"]

        fake.push(Behaviour(reply="second reply"))
        ws.send(json.dumps({"message": "and now?", "conversation_id": cid}))  # the socket stays usable
        events = []
        while not events or events[-1]["type"] != "done":
            events.append(json.loads(ws.recv(timeout=10)))
        assert "".join(e["text"] for e in events if e["type"] == "delta") == "second reply"
        assert events[-1]["interrupted"] is False
        assert fake.last.messages[-3:-1] == [
            {"role": "user", "content": "stream please"}, {"role": "assistant", "content": reply["content"]}
        ]


def test_websocket_client_leaving_closes_the_upstream(server: str, fake: FakeUpstream) -> None:
    from websockets.sync.client import connect

    fake.push(Behaviour(stall_before_first=30))
    with connect(ws_url(server), open_timeout=10) as ws:
        ws.send(json.dumps({"message": "think hard"}))
        cid = json.loads(ws.recv(timeout=10))["conversation_id"]
        fake.wait_for(lambda: fake.requests and fake.last.first_byte_at is not None, timeout=10)
    fake.wait_for(lambda: fake.last.disconnected_at is not None, timeout=1.0)  # within 1 s of leaving
    reply = wait_until(lambda: ended_reply(server, cid))
    assert reply["error"] == "disconnected"


def test_websocket_bad_requests_get_error_events_and_the_socket_stays_open(
    server: str, fake: FakeUpstream
) -> None:
    from websockets.sync.client import connect

    with connect(ws_url(server), open_timeout=10) as ws:
        for raw, status, code in (
            ("{not json", 400, "invalid_json"),
            (json.dumps({"message": ""}), 422, "empty_message"),
            (json.dumps({"message": 3}), 422, "invalid_request"),
            (json.dumps(["x"]), 422, "invalid_request"),
            (json.dumps({"message": "hi", "model": "nope"}), 422, "unknown_model"),
            (json.dumps({"message": "hi", "conversation_id": "f" * 32}), 404, "unknown_conversation"),
            (json.dumps({"type": "stop"}), None, None),  # nothing to stop: ignored
        ):
            ws.send(raw)
            if status is None:
                continue
            event = json.loads(ws.recv(timeout=10))
            assert (event["type"], event["status"], event["code"]) == ("error", status, code)
            assert event["message"]
        assert fake.requests == []
        ws.send(json.dumps({"message": "finally"}))
        kinds = []
        while not kinds or kinds[-1] != "done":
            kinds.append(json.loads(ws.recv(timeout=10))["type"])
        assert kinds[0] == "start" and "delta" in kinds


def test_websocket_needs_the_token_and_refuses_other_pages(tokens_server: str, fake: FakeUpstream) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    server = tokens_server
    for headers in ({}, {"Authorization": "Bearer nope"}):
        with pytest.raises(InvalidStatus) as caught:
            connect(ws_url(server), additional_headers=headers, open_timeout=10)
        assert caught.value.response.status_code == 401
        assert b"CHATBOT_API_TOKENS" in caught.value.response.body
    with pytest.raises(InvalidStatus) as caught:
        connect(ws_url(server), additional_headers={"Authorization": f"Bearer {TOKEN_A}"},
                origin="http://evil.example", open_timeout=10)
    assert caught.value.response.status_code == 403
    host = server.removeprefix("http://").rstrip("/")
    with connect(ws_url(server), additional_headers={"Authorization": f"Bearer {TOKEN_A}"},
                 origin=f"http://{host}", open_timeout=10) as ws:
        ws.send(json.dumps({"message": "hello"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "start"


# ------------------------------------------------------------------------------- several processes


def _spawn_app(port: int, env: dict[str, str]) -> subprocess.Popen:
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)], cwd=ROOT, env={**base, **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _stop_app(process: subprocess.Popen) -> str:
    process.terminate()
    try:
        output, _ = process.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate(timeout=15)
    return output


@pytest.mark.slow
def test_two_app_processes_sharing_redis_serve_one_conversation(
    redis_server: RedisServer, fake: FakeUpstream, tmp_path: Path
) -> None:
    """Two ``python app.py`` processes on one redis-server: each serves the UI and the HTTP API on its one port
    and says where; a conversation goes on across both, racing requests included. (``python app.py`` on a
    SQLite file, killed and started again: test_durability.py.)"""
    env = {
        "OPENAI_API_KEY": TEST_KEY, "OPENAI_BASE_URL": fake.base_url, "CHATBOT_MAX_RETRIES": "0",
        "REDIS_URL": redis_server.url, "CHATBOT_DB": str(tmp_path / "unused.db"),
    }
    ports = [free_port(), free_port()]
    processes = [_spawn_app(port, env) for port in ports]
    urls = [f"http://127.0.0.1:{port}/" for port in ports]
    try:
        for url, process in zip(urls, processes, strict=True):
            def ready(url: str = url, process: subprocess.Popen = process) -> bool:
                assert process.poll() is None, _stop_app(process)
                try:
                    return httpx.get(url + "models", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_until(ready, timeout=APP_START_S)
        assert httpx.get(urls[0], timeout=30).status_code == 200  # the UI on the API's port
        response, events = stream(urls[0], {"message": "¡Hola!", "model": "gpt-4.1-mini"})
        assert events[-1] == "[DONE]" and "¡Hola!" in text_of(events)
        cid = None
        for turn in range(6):  # alternate between the two processes
            body = {"message": f"turn {turn}", "conversation_id": cid}
            response = httpx.post(urls[turn % 2] + "chat", json=body, timeout=30)
            assert response.status_code == 200, response.text
            cid = response.json()["conversation_id"]
            assert len(fake.last.messages) == 2 + 2 * turn  # each process saw the other's turns
        fake.default = Behaviour(chunk_size=3, delay=0.005)

        async def race() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=60) as client:
                bodies = [{"message": f"race {i}", "conversation_id": cid} for i in range(12)]
                return await asyncio.gather(*(
                    client.post(urls[i % 2] + "chat/stream", json=body) for i, body in enumerate(bodies)
                ))

        assert all(r.status_code == 200 for r in asyncio.run(race()))
        for url in urls:
            messages = conversation(url, cid)["messages"]
            assert len(messages) == 12 + 24
            pairs = list(zip(messages[::2], messages[1::2], strict=True))
            assert all(a["content"] == f"Hello from gpt-4.1-mini: you said {u['content']}" for u, a in pairs)
    finally:
        outputs = [_stop_app(p) for p in processes]
    assert not any("Traceback" in out for out in outputs), outputs
    assert all(f"serving on {url}" in out for url, out in zip(urls, outputs, strict=True)), outputs


@pytest.mark.slow
def test_unreachable_redis_stops_startup_with_one_line(fake: FakeUpstream) -> None:
    env = {"OPENAI_API_KEY": TEST_KEY, "REDIS_URL": f"redis://:pw-hidden@127.0.0.1:{free_port()}/0"}
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    done = subprocess.run([sys.executable, "app.py"], cwd=ROOT, env={**base, **env}, capture_output=True,
                          text=True, timeout=APP_START_S)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("switchboard:")]
    assert len(errors) == 1 and errors[0].startswith("switchboard: REDIS_URL: cannot reach Redis (ConnectionError: ")
    assert "Connection refused" in errors[0]  # what went wrong, not only the exception's class
    assert "Traceback" not in done.stderr and "pw-hidden" not in done.stderr + done.stdout


# ----------------------------------------------------------------------------------------------- fuzz


#: uvicorn's own answer to a request that is not valid HTTP, before any app code runs.
UVICORN_REFUSED = "Invalid HTTP request received."


def test_schema_driven_fuzz_finds_no_server_error(start, fake: FakeUpstream) -> None:
    """schemathesis generates requests from /openapi.json, valid ones and invalid ones, and sends them to
    the running app over HTTP (replies come from the fake upstream): never a 5xx, and every answer has a
    documented status, content type and shape."""
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import FailureGroup
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    server = start().url
    fake.default = Behaviour(honours_max_tokens=True)  # a request's own max_tokens is kept, as OpenAI does
    schema = schemathesis.openapi.from_url(server + "openapi.json")
    checks = [
        not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance
    ]
    seen: dict[str, int] = {}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 7  # /chat, /chat/stream, /models, GET and DELETE a conversation, /metrics, /compare
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def check(case: schemathesis.Case) -> None:
                response = case.call(timeout=30)
                seen[str(response.status_code)] = seen.get(str(response.status_code), 0) + 1
                if response.status_code == 400 and response.text == UVICORN_REFUSED:
                    return  # not HTTP (a negative case's header such as "content-length: B"): the app never saw it
                try:
                    case.validate_response(response, checks=checks)
                except (Exception, FailureGroup) as exc:  # collect them all, report below
                    failures.append(f"{case.method} {case.formatted_path}: {exc}"[:1000])

            check()
    assert not failures, "\n\n".join(failures[:5])
    assert sum(seen.values()) >= 300, seen
    assert not any(status.startswith("5") for status in seen), seen


def test_shutdown_ends_open_streams_cleanly(start, fake: FakeUpstream, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    db = str(tmp_path / "shutdown.db")
    running = start(CHATBOT_DB=db)
    fake.push(Behaviour(reply="s" * 8000, chunk_size=4, delay=0.05))
    with httpx.Client(timeout=30) as client, client.stream(
        "POST", running.url + "chat/stream", json={"message": "long"}
    ) as sse:
        cid = sse.headers["x-conversation-id"]
        lines = sse.iter_lines()
        while not next(lines).startswith("data: s"):
            pass
        running.stop()  # returns once the server has shut down
        events = parse_sse("\n".join(lines).encode())
    assert events[-2:] == [f"[ERROR] {render('cut_note')} {render('shutting_down')}", "[DONE]"]
    assert fake.last.disconnected_at is not None and fake.last.finished_at is None
    assert "Exception in ASGI application" not in caplog.text
    reply = conversation(start(CHATBOT_DB=db).url, cid)["messages"][-1]
    assert reply["status"] == "interrupted" and reply["error"] == "shutting_down" and reply["content"]


def test_a_stored_conversation_sends_its_stored_context(fake: FakeUpstream, tmp_path: Path) -> None:
    """Turn after turn, while the store's newest-messages window slides, what goes upstream is the stored
    context; DELETE removes the conversation."""
    settings = make_settings(fake.base_url, CHATBOT_DB=str(tmp_path / "switchboard.db")).model_copy(
        update={"max_history_messages": 12}
    )
    app = switchboard.build_server(settings)
    server = switchboard.serve_in_thread(app)
    try:
        cid = None
        for turn in range(20):
            body = {"message": f"turn {turn}", **({"conversation_id": cid} if cid else {})}
            cid = httpx.post(server.url + "chat", json=body, timeout=30).json()["conversation_id"]
            stored = conversation(server.url, cid)["messages"][:-2]  # before this turn
            assert fake.last.messages[1:] == [
                *({"role": m["role"], "content": m["content"]} for m in stored[-12:]),
                {"role": "user", "content": f"turn {turn}"},
            ]
        assert httpx.delete(f"{server.url}conversations/{cid}").status_code == 204
        assert httpx.get(f"{server.url}conversations/{cid}", timeout=30).status_code == 404
    finally:
        server.stop()
