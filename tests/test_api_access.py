"""Who may use the HTTP API and how much (chatbot/http/gate.py's Gate, chatbot/core/limits.py's API limits), served
for real: ``app.build_server`` under uvicorn, the fake upstream behind it, real HTTP and WebSockets.

- API tokens are counted against ``CHATBOT_API_RATE_LIMIT`` / ``CHATBOT_API_TOKEN_LIMIT`` (default: the
  visitor limits), each token on its own; not against the signed-in users' higher limits.
- With a login (``CHATBOT_AUTH``), every API route and the docs need a token or the login (HTTP Basic)."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
from conftest import make_settings
from fake_upstream import FakeUpstream

from chatbot.core.settings import Settings

TOKEN_A = "token-a-0123456789abcdefghij"
TOKEN_B = "token-b-0123456789abcdefghij"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def ws_reply(url: str, headers: dict[str, str], message: str = "hi over ws") -> list[dict]:
    """The events for one message over ``/chat/ws``, up to ``done`` (or a request-level error)."""
    from websockets.sync.client import connect

    events: list[dict] = []
    with connect(url.replace("http://", "ws://") + "chat/ws", additional_headers=headers, open_timeout=20) as ws:
        ws.send(json.dumps({"message": message}))
        while not events or (events[-1]["type"] != "done" and "status" not in events[-1]):
            events.append(json.loads(ws.recv(timeout=20)))
    return events


def ws_refused(events: list[dict], text: str) -> bool:
    return not any(e["type"] == "delta" for e in events) and any(
        e["type"] == "error" and text in e["message"] for e in events
    )


def chat(url: str, headers: dict[str, str], message: str = "hi") -> httpx.Response:
    return httpx.post(url + "chat", json={"message": message}, headers=headers, timeout=30)


# ------------------------------------------------------------------------------------ API rate limits


def test_api_limits_default_to_the_visitor_limits() -> None:
    settings = make_settings(None, CHATBOT_RATE_LIMIT="5/minute", CHATBOT_TOKEN_LIMIT="1000/day")
    assert [str(i) for i in settings.policy.api_rate] == ["5 per 1 minute"]
    assert [str(i) for i in settings.policy.api_tokens] == ["1000 per 1 day"]
    public = Settings.load([], environ={"GRADIO_SERVER_NAME": "0.0.0.0"}, env_file=None).policy
    assert public.api_rate == public.rate and public.api_tokens == public.tokens
    own = make_settings(None, CHATBOT_RATE_LIMIT="5/minute", CHATBOT_API_RATE_LIMIT="100/hour",
                        CHATBOT_API_TOKEN_LIMIT="none").policy
    assert [str(i) for i in own.api_rate] == ["100 per 1 hour"] and own.api_tokens == ()


def test_a_token_gets_the_visitor_limit_not_the_signed_in_one(serve, fake: FakeUpstream) -> None:
    """Measured before: with 5/minute for visitors, each token got the signed-in 20/minute."""
    url = serve(CHATBOT_API_TOKENS=f"{TOKEN_A},{TOKEN_B}", CHATBOT_RATE_LIMIT="2/minute",
                CHATBOT_SIGNED_IN_RATE_LIMIT="20/minute")
    assert [chat(url, bearer(TOKEN_A)).status_code for _ in range(2)] == [200, 200]
    refused = chat(url, bearer(TOKEN_A))
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "limit_messages"
    assert "2 messages per minute" in refused.json()["error"]["message"]
    assert ws_refused(ws_reply(url, bearer(TOKEN_A)), "2 messages per minute")  # one bucket, any door
    # each token is counted on its own (README: N tokens get N times the limit)
    assert chat(url, bearer(TOKEN_B)).status_code == 200
    assert len(fake.requests) == 3


def test_api_rate_limit_is_its_own_setting_on_http_and_ws(serve, fake: FakeUpstream) -> None:
    url = serve(CHATBOT_API_TOKENS=TOKEN_A, CHATBOT_RATE_LIMIT="1/minute", CHATBOT_API_RATE_LIMIT="3/minute")
    assert chat(url, bearer(TOKEN_A)).status_code == 200
    assert [e["type"] for e in ws_reply(url, bearer(TOKEN_A))][-1] == "done"
    assert chat(url, bearer(TOKEN_A)).status_code == 200
    assert ws_refused(ws_reply(url, bearer(TOKEN_A)), "3 messages per minute")
    assert "3 messages per minute" in chat(url, bearer(TOKEN_A)).json()["error"]["message"]
    assert len(fake.requests) == 3


def test_api_token_limit_counts_tokens_per_api_token(serve, fake: FakeUpstream) -> None:
    url = serve(CHATBOT_API_TOKENS=TOKEN_A, CHATBOT_API_TOKEN_LIMIT="10/day",
                CHATBOT_SIGNED_IN_TOKEN_LIMIT="100000/day")
    assert chat(url, bearer(TOKEN_A)).status_code == 200  # a reply uses more than 10 tokens
    refused = chat(url, bearer(TOKEN_A))
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "limit_tokens"
    assert ws_refused(ws_reply(url, bearer(TOKEN_A)), "10 tokens per day")
    assert len(fake.requests) == 1


# ------------------------------------------------------------------------------ a login covers the API

ALICE = ("alice", "wonderland-pass-1")
LOGIN = f"{ALICE[0]}:{ALICE[1]},bob:builder-pass-22"
ANONYMOUS_DOORS = (
    ("POST", "chat", {"message": "hi"}),
    ("POST", "chat/stream", {"message": "hi"}),
    ("GET", "models", None),
    ("GET", "conversations/" + "0" * 32, None),
    ("DELETE", "conversations/" + "0" * 32, None),
    ("GET", "docs", None),
    ("GET", "openapi.json", None),
)


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.mark.parametrize("tokens", [False, True])
def test_with_a_login_nothing_answers_anonymously(serve, fake: FakeUpstream, tokens: bool) -> None:
    """Measured before: with CHATBOT_AUTH set on loopback, POST /chat and GET /models answered anyone."""
    env = {"CHATBOT_AUTH": LOGIN, **({"CHATBOT_API_TOKENS": TOKEN_A} if tokens else {})}
    url = serve(**env)
    for authorization in (None, "Bearer nope-0123456789abcdef", "Basic !!!", "Basic " + "eA==",
                          basic("alice", "wrong")["Authorization"], basic("mallory", ALICE[1])["Authorization"]):
        headers = {} if authorization is None else {"Authorization": authorization}
        for method, path, body in ANONYMOUS_DOORS:
            response = httpx.request(method, url + path, json=body, headers=headers, timeout=10)
            assert response.status_code == 401, (authorization, method, path, response.text)
            assert "Basic" in response.headers["www-authenticate"]
            assert ("Bearer" in response.headers["www-authenticate"]) is tokens
            assert "CHATBOT_AUTH" in response.json()["error"]["message"]
            assert ALICE[1] not in response.text
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        with pytest.raises(InvalidStatus) as caught:
            connect(url.replace("http://", "ws://") + "chat/ws", additional_headers=headers, open_timeout=10)
        assert caught.value.response.status_code == 401
    assert fake.requests == []


def test_the_login_opens_every_door_as_that_user(serve, fake: FakeUpstream) -> None:
    url = serve(CHATBOT_AUTH=LOGIN, CHATBOT_SIGNED_IN_RATE_LIMIT="3/minute", CHATBOT_RATE_LIMIT="1/minute")
    alice, bob = basic(*ALICE), basic("bob", "builder-pass-22")
    created = chat(url, alice, "alice's plans")
    assert created.status_code == 200, created.text
    cid = created.json()["conversation_id"]
    read = httpx.get(f"{url}conversations/{cid}", headers=alice, timeout=10)
    assert read.status_code == 200 and read.json()["messages"][0]["content"] == "alice's plans"
    assert httpx.get(f"{url}conversations/{cid}", headers=bob, timeout=10).status_code == 404  # hers only
    for path in ("models", "docs", "openapi.json"):
        assert httpx.get(url + path, headers=alice, timeout=10).status_code == 200, path
    assert [e["type"] for e in ws_reply(url, alice)][-1] == "done"
    # counted as the signed-in user alice (her limits, as in the UI), not as an anonymous visitor
    assert chat(url, alice).status_code == 200
    assert ws_refused(ws_reply(url, alice), "3 messages per minute")
    assert chat(url, bob).status_code == 200
    assert len(fake.requests) == 4


def test_tokens_still_work_beside_the_login(serve, fake: FakeUpstream) -> None:
    url = serve(CHATBOT_AUTH=LOGIN, CHATBOT_API_TOKENS=TOKEN_A)
    assert chat(url, bearer(TOKEN_A)).status_code == 200
    assert chat(url, basic(*ALICE)).status_code == 200
    assert [e["type"] for e in ws_reply(url, bearer(TOKEN_A))][-1] == "done"


def test_api_basic_shares_the_login_pages_throttle(serve, fake: FakeUpstream) -> None:
    """Wrong passwords on the login page count for HTTP Basic too: the API is no unthrottled oracle."""
    url = serve(CHATBOT_AUTH=LOGIN)
    for i in range(5):
        wrong = httpx.post(url + "login", data={"username": "alice", "password": f"guess-{i}"}, timeout=10)
        assert wrong.status_code == 400
    refused = chat(url, basic(*ALICE))
    assert refused.status_code == 401 and "too many wrong tries" in refused.json()["error"]["message"]
    for i in range(5):  # and the other way round
        assert chat(url, basic("bob", f"guess-{i}")).status_code == 401
    right = httpx.post(url + "login", data={"username": "bob", "password": "builder-pass-22"}, timeout=10)
    assert right.status_code == 400
    assert fake.requests == []
