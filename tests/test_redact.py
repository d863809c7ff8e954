"""Secrets never reach a log line, tracebacks included."""

from __future__ import annotations

import logging

import pytest

from chatbot.config import Settings
from chatbot.redact import redact_logs


def test_log_exception_masks_the_redis_password_the_key_and_the_tokens(caplog: pytest.LogCaptureFixture) -> None:
    environ = {"REDIS_URL": "redis://:pw%2Fsecret-42@127.0.0.1:6379/0", "OPENAI_API_KEY": "sk-secret-key-1234567890",
               "CHATBOT_API_TOKENS": "token-secret-abc"}
    settings = Settings.load([], environ=environ, env_file=None)
    redact_logs(settings)
    log = logging.getLogger("switchboard.api")
    with caplog.at_level("INFO", logger="switchboard.api"):
        try:
            raise ConnectionError(f"cannot reach {environ['REDIS_URL']} (password pw/secret-42) with token-secret-abc")
        except ConnectionError:
            log.exception("a reply failed with %s", "sk-secret-key-1234567890")
    text = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert "Traceback" in text and "[redacted]" in text
    for secret in ("pw%2Fsecret-42", "pw/secret-42", "sk-secret-key-1234567890", "token-secret-abc"):
        assert secret not in text, secret
