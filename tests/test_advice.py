"""Advice that fits its reader (chatbot/core/advice.py): a visitor of a public instance is never told to set
OPENAI_API_KEY and restart; the variants keep the API's code."""

from __future__ import annotations

import pytest
from conftest import make_settings

from chatbot.core.advice import Reader, for_reader
from chatbot.core.error_kinds import KINDS
from chatbot.core.errors import friendly, render
from chatbot.core.i18n import LANGUAGES

OPERATOR_WORDS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "restart", "reinicia")


@pytest.mark.parametrize(
    ("kind", "reader", "told"),
    [
        ("auth", Reader(), "auth"),  # the operator reads it on a private instance
        ("auth", Reader(own_key=True, byok=True), "auth_own_key"),
        ("auth", Reader(public=True, byok=True, own_key=True), "auth_own_key"),
        ("auth", Reader(public=True, byok=True), "auth_public_byok"),
        ("auth", Reader(public=True), "auth_operator"),
        ("connection", Reader(public=True), "connection_operator"),
        ("not_event_stream", Reader(public=True, byok=True), "not_event_stream_operator"),
        ("connection", Reader(), "connection"),
        ("rate_limited_soon", Reader(public=True), "rate_limited_soon"),
    ],
)
def test_each_reader_gets_advice_they_can_follow(kind: str, reader: Reader, told: str) -> None:
    error = friendly(kind)
    fitted = for_reader(error, reader)
    assert fitted.kind == told and KINDS[told].code == KINDS[kind].code  # the API's code stays
    if reader.public or reader.own_key:
        for lang in LANGUAGES:
            assert not any(word in fitted.localized(lang) for word in OPERATOR_WORDS), (told, lang)


def test_the_reader_of_a_page_follows_the_settings() -> None:
    public = make_settings("http://127.0.0.1:9/v1", GRADIO_SERVER_NAME="0.0.0.0")  # noqa: S104 - a public bind
    assert Reader.of(public) == Reader(public=True, byok=True, own_key=False)
    assert Reader.of(public, "sk-visitor") == Reader(public=True, byok=True, own_key=True)
    closed = make_settings("http://127.0.0.1:9/v1", CHATBOT_ALLOW_USER_KEY="0", CHATBOT_SHARE="1")
    assert Reader.of(closed, "sk-visitor") == Reader(public=True, byok=False, own_key=False)
    assert Reader.of(make_settings("http://127.0.0.1:9/v1"), "  ") == Reader(public=False, byok=True)


@pytest.mark.parametrize("public", [True, False])
def test_the_apis_failures_fit_their_reader(serve, fake, public: bool) -> None:  # noqa: ANN001 - conftest fixtures
    """An API caller of a public instance can set no variable and has no key field: the provider's refusal of
    the app's key says whoever runs the site must fix it (same code), in the JSON answer, the SSE stream and
    the WebSocket; on a private instance (the operator calls) it says which variable to check."""
    import json

    import httpx
    from websockets.sync.client import connect

    token = "advice-test-token-0123456789abcdef"
    url = serve(CHATBOT_API_TOKENS=token, **({"CHATBOT_SHARE": "1"} if public else {}))
    headers = {"Authorization": f"Bearer {token}"}
    expected = render("auth_operator" if public else "auth")
    with httpx.Client(timeout=60, headers=headers) as http:
        fake.push(status=401)
        answer = http.post(url + "chat", json={"message": "hello"})
        assert answer.status_code == 502 and answer.json()["error"] == {"code": "auth", "message": expected}
        fake.push(status=401)
        streamed = http.post(url + "chat/stream?format=json", json={"message": "hello"}).text
        assert expected in streamed and ("OPENAI_API_KEY" in streamed) is not public, streamed
        assert '"code":"auth"' in streamed, streamed
    fake.push(status=401)
    with connect(url.replace("http://", "ws://") + "chat/ws", additional_headers=headers, open_timeout=60) as ws:
        ws.send(json.dumps({"message": "hello"}))
        events = [json.loads(ws.recv(timeout=60))]
        while events[-1]["type"] not in ("done", "error"):
            events.append(json.loads(ws.recv(timeout=60)))
    assert events[-1]["code"] == "auth" and events[-1]["message"] == expected, events
