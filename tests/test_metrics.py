"""``GET /metrics`` (chatbot/core/metrics.py, chatbot/http/metrics.py): scraped from the running app after a
known sequence of chats through every door, and its values checked against what the fake upstream sent."""

from __future__ import annotations

import httpx
import pytest
from conftest import predict
from fake_upstream import FakeUpstream
from gradio_client import Client
from prometheus_client.parser import text_string_to_metric_families

from chatbot.core.error_kinds import KINDS
from chatbot.core.metrics import REFUSAL_KINDS, REQUEST_KINDS, STORE_KINDS, UPSTREAM_KINDS

TOKEN = "metrics-token-0123456789"
MODEL = "gpt-4.1-mini"  # the alias "fast"


def scrape(url: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = httpx.get(url + "metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_every_error_kind_has_one_metric_class() -> None:
    """A new error kind must be placed: a refusal, the provider's, the store's, or the request's own."""
    classes = (REFUSAL_KINDS, UPSTREAM_KINDS, STORE_KINDS, REQUEST_KINDS)
    for kind in KINDS:
        assert sum(kind in group for group in classes) == 1, kind


def test_metrics_after_known_chats_through_every_door(serve, fake: FakeUpstream) -> None:
    url = serve(CHATBOT_RATE_LIMIT="3/minute", CHATBOT_API_TOKENS=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(url + "metrics", timeout=30).status_code == 401  # the API's token guards it

    usages = []
    for message in ("one", "two"):
        reply = httpx.post(url + "chat", json={"message": message, "model": "fast"}, headers=auth, timeout=60)
        assert reply.status_code == 200, reply.text
        usages.append(reply.json()["usage"])
    fake.push(status=503)  # the provider fails once
    failed = httpx.post(url + "chat", json={"message": "three", "model": "fast"}, headers=auth, timeout=60)
    assert failed.status_code == 502 and failed.json()["error"]["code"] == "overloaded"
    ui = Client(url, verbose=False)  # the chat tab's programmatic door: a visitor of its own (its own 3/minute)
    assert "you said four" in predict(ui, "four", "fast", api_name="/chat")
    refused = httpx.post(url + "chat", json={"message": "five", "model": "fast"}, headers=auth, timeout=60)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "limit_messages"

    samples = scrape(url, **auth)
    assert value(samples, "switchboard_replies_total", model=MODEL, outcome="complete") == 3
    assert value(samples, "switchboard_replies_total", model=MODEL, outcome="error") == 1
    assert value(samples, "switchboard_upstream_errors_total", kind="overloaded") == 1
    assert value(samples, "switchboard_refusals_total", limit="limit_messages") == 1
    assert value(samples, "switchboard_active_streams") == 0
    assert value(samples, "switchboard_time_to_first_token_seconds_count", model=MODEL) == 3
    assert value(samples, "switchboard_reply_duration_seconds_count", model=MODEL) == 4
    prompt = value(samples, "switchboard_tokens_total", direction="prompt")
    completion = value(samples, "switchboard_tokens_total", direction="completion")
    api_prompt = sum(u["prompt_tokens"] for u in usages)
    api_completion = sum(u["completion_tokens"] for u in usages)
    assert prompt > api_prompt and completion > api_completion  # the chat tab's reply counts too
    assert value(samples, "switchboard_tokens_today") == prompt + completion
    spend = value(samples, "switchboard_spend_usd_total")
    assert spend > sum(u["cost"] for u in usages) > 0
    assert value(samples, "switchboard_spend_today_usd") == pytest.approx(spend)
    assert value(samples, "switchboard_store_errors_total", kind="store_unavailable") == 0


def test_a_public_bind_without_tokens_serves_no_metrics(serve) -> None:
    url = serve(SPACE_ID="someone/switchboard")  # public: a Space
    response = httpx.get(url + "metrics", timeout=30)
    assert response.status_code == 403 and "CHATBOT_API_TOKENS" in response.text


def test_model_names_a_visitor_invents_share_one_label(serve) -> None:
    """With any model allowed, a request names any id: the metrics keep one label for all of them."""
    url = serve(CHATBOT_ALLOW_ANY_MODEL="1")
    for name in ("made-up-model-1", "made-up-model-2"):
        reply = httpx.post(url + "chat", json={"message": "hi", "model": name}, timeout=60)
        assert reply.status_code == 200, reply.text
    samples = scrape(url)
    assert value(samples, "switchboard_replies_total", model="other", outcome="complete") == 2
    assert not any(dict(labels).get("model", "").startswith("made-up") for _, labels in samples)
