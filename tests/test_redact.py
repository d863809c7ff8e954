"""Secrets never reach a log line, tracebacks included."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import TEST_KEY, free_port, make_settings
from fake_upstream import FakeUpstream

from chatbot.core.redact import LOGGERS, redact_logs
from chatbot.core.settings import Settings
from chatbot.core.sqlite_store import SQLiteStore


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


def test_every_app_logger_is_redacted() -> None:
    """Each module's logger gets the filter (a filter on ``switchboard`` does not reach its children)."""
    root = Path(__file__).resolve().parent.parent
    sources = [root / "app.py", *sorted((root / "chatbot").rglob("*.py"))]
    names = {name for path in sources for name in re.findall(r'getLogger\("(switchboard[\w.]*)"\)', path.read_text())}
    assert "switchboard.upstream" in names
    assert names <= set(LOGGERS), names - set(LOGGERS)


class QuotingStore(SQLiteStore):
    """A store whose driver fails with a message quoting what it was given (here the provider key)."""

    async def begin_turn(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"the driver failed while holding {TEST_KEY}")


def test_an_internal_failure_logs_a_traceback_without_the_key(
    fake: FakeUpstream, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected failure in an API route: the client gets a 500 ``internal``; the operator gets the
    traceback, from the app's (redacting) logger, with the key masked; nothing logs it unmasked (uvicorn
    logged it in full before)."""
    import app as switchboard

    settings = make_settings(fake.base_url)
    server = switchboard.build_server(settings, store=QuotingStore(tmp_path / "c.db"))
    with caplog.at_level("INFO"), switchboard.serve_in_thread(server) as running:
        response = httpx.post(running.url + "chat", json={"message": "hi"}, timeout=60)
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal", response.text
    assert TEST_KEY not in response.text
    traced = [r for r in caplog.records if r.name.startswith("switchboard") and "Traceback" in (r.exc_text or "")]
    assert traced and "RuntimeError: the driver failed while holding [redacted]" in traced[0].exc_text
    logged = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert TEST_KEY not in logged and fake.requests == []


async def test_a_chat_tab_failure_logs_a_traceback_without_the_redis_password(
    fake: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    """The chat tab's handler, its limits' Redis unreachable: the visitor reads a sentence, the log has the
    traceback (it had only the exception's class name), with the password masked."""
    from chatbot.core.upstream import Upstream
    from chatbot.web.ui import ChatUI

    password = "pw-secret-chat-tab-42"
    settings = make_settings(fake.base_url, REDIS_URL=f"redis://:{password}@127.0.0.1:{free_port()}/0",
                             CHATBOT_RATE_LIMIT="100/minute")
    redact_logs(settings)
    ui = ChatUI(settings, Upstream(settings))
    with caplog.at_level("INFO"):
        final = [update async for update in ui.respond("hello", [], "fast")][-1]
    assert "(Redis) cannot be reached" in str(final) and "Traceback" not in str(final)
    failed = [r for r in caplog.records if r.getMessage() in ("chat handler failed", "a reply failed")]
    assert failed and "Traceback" in (failed[0].exc_text or "")
    assert password not in caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert fake.requests == []
