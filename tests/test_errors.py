"""friendly_error: pure, no network. Exceptions are built the way the SDK builds them."""

from __future__ import annotations

import httpx2
import openai
import pytest

from chatbot.core.errors import MESSAGES, FirstTokenTimeout, IdleTimeout, friendly_error, retry_after_seconds

REQUEST = httpx2.Request("POST", "https://upstream.test/v1/chat/completions")
KEY = "sk-canary-abcdefghijklmnop123456"


def status_error(status: int, body: dict | None = None, headers: dict | None = None) -> openai.APIStatusError:
    response = httpx2.Response(status, json=body or {}, headers=headers or {}, request=REQUEST)
    client = openai.AsyncOpenAI(api_key="x", base_url="https://upstream.test/v1")
    return client._make_status_error(f"Error code: {status} - {body}", body=body, response=response)


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (401, {"error": {"message": f"bad key {KEY}"}}, "auth"),
        (402, None, "no_balance"),
        (403, {"error": {"message": "flagged"}}, "refused"),
        (404, None, "model_not_found"),
        (400, {"error": {"code": "context_length_exceeded", "message": "too many"}}, "too_long"),
        (400, {"error": {"message": "This model's maximum context length is 8192 tokens"}}, "too_long"),
        (400, {"error": {"message": "bad"}}, "bad_request"),
        (413, None, "too_long"),
        (429, None, "rate_limited_soon"),
        (500, None, "overloaded"),
        (503, None, "overloaded"),
        (504, None, "timeout"),
    ],
)
def test_status_errors(status: int, body: dict | None, kind: str) -> None:
    friendly = friendly_error(status_error(status, body), model="gpt-x")
    assert friendly.kind == kind and friendly.status == status
    assert KEY not in friendly.text and "Error code" not in friendly.text and "{" not in friendly.text


def test_rate_limit_with_retry_after_says_when() -> None:
    friendly = friendly_error(status_error(429, headers={"Retry-After": "600"}))
    assert friendly.retry_after == 600 and "10 minutes" in friendly.text
    assert "45 seconds" in friendly_error(status_error(429, headers={"retry-after-ms": "45000"})).text


def test_in_band_error_chunk_detail_is_shown_without_secrets() -> None:
    exc = openai.APIError(f"Provider failed for Bearer {KEY}", REQUEST, body={"message": "x", "code": 502})
    friendly = friendly_error(exc)
    assert friendly.kind == "upstream_error" and "Provider failed" in friendly.text
    assert KEY not in friendly.text and KEY[3:15] not in friendly.text


def test_transport_failures() -> None:
    assert friendly_error(openai.APITimeoutError(REQUEST)).kind == "timeout"
    assert friendly_error(openai.APIConnectionError(request=REQUEST)).kind == "connection"
    cut = openai.APIConnectionError(request=REQUEST)
    cut.__cause__ = httpx2.RemoteProtocolError("peer closed connection")
    assert friendly_error(cut).kind == "cut"
    assert friendly_error(httpx2.ReadError("reset")).kind == "cut"
    assert friendly_error(FirstTokenTimeout(30)).kind == "first_token_timeout"
    assert "30 seconds" in friendly_error(FirstTokenTimeout(30)).text
    assert friendly_error(IdleTimeout(5)).kind == "idle_timeout"


def test_anything_else_is_internal_and_plain() -> None:
    friendly = friendly_error(ZeroDivisionError("boom"))
    assert friendly.kind == "internal" and "boom" not in friendly.text


def test_retry_after_parsing() -> None:
    assert retry_after_seconds({"retry-after": "2"}) == 2
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after_seconds({"retry-after": "-1"}) is None
    assert retry_after_seconds(None) is None


def test_every_message_has_text() -> None:
    assert all(isinstance(text, str) and text for text in MESSAGES.values())
