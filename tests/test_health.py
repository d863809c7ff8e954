"""``GET /healthz`` (chatbot/http/health.py): 200 while the conversation store answers, 503 while it does
not (a real redis-server stopped, then started again), outside the login and the API tokens, and saying
nothing about the deployment."""

from __future__ import annotations

import httpx
import pytest
from conftest import RedisServer

TOKEN = "health-test-token-0123456789"
PRIVATE = {"CHATBOT_AUTH": "ana:correct-horse-battery", "CHATBOT_API_TOKENS": TOKEN}


def _health(url: str) -> httpx.Response:
    return httpx.get(url + "healthz", timeout=30)


def test_healthz_answers_200_with_sqlite_outside_the_login_and_tokens(serve) -> None:
    url = serve(**PRIVATE)
    response = _health(url)
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"
    assert httpx.head(url + "healthz", timeout=30).status_code == 200
    # the rest stays behind them
    assert httpx.post(url + "chat", json={"message": "hi"}, timeout=30).status_code == 401


@pytest.mark.slow
def test_healthz_follows_a_real_redis_stopped_and_started(serve) -> None:
    redis = RedisServer("--requirepass", "redis-secret-pw")
    try:
        url = serve(REDIS_URL=f"redis://:redis-secret-pw@127.0.0.1:{redis.port}/0", **PRIVATE)
        assert _health(url).status_code == 200
        redis.stop()
        down = _health(url)
        assert down.status_code == 503, down.text
        assert down.json() == {"status": "unavailable"}
        assert "redis-secret-pw" not in down.text and str(redis.port) not in down.text
        redis.start()
        up = _health(url)
        assert up.status_code == 200, up.text
    finally:
        redis.stop()
