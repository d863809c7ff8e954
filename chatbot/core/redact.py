"""Secrets kept out of log lines, tracebacks included: the provider key, the API tokens, the Redis URL and
its password never reach a log handler.

:func:`redact_logs` adds a :class:`SecretFilter` to the app's loggers (a logger's filter does not apply to
its children, so each is named). The filter renders the record's message and traceback itself and masks
every secret in them, so ``log.exception`` is safe wherever an exception's text could quote a secret.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

from chatbot.core.settings import Settings

MASK = "[redacted]"

#: The app's loggers, every one of which may carry a failure's text (tests/test_redact.py checks the list).
LOGGERS = (
    "switchboard", "switchboard.api", "switchboard.store", "switchboard.checkpoints", "switchboard.ui",
    "switchboard.upstream", "switchboard.models", "switchboard.chats", "switchboard.sessions",
    "switchboard.access", "switchboard.events", "switchboard.reply", "switchboard.health", "switchboard.compare",
)


class SecretFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a URL is masked whole before the password inside it.
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def secrets_of(settings: Settings) -> list[str]:
    secrets = (settings.api_key, settings.redis_url, *settings.api_tokens)
    values = [s.get_secret_value() for s in secrets if s is not None]
    if settings.redis_url is not None:
        password = urlsplit(settings.redis_url.get_secret_value()).password
        if password:
            values += [password, unquote(password)]
    return values


def redact_logs(settings: Settings) -> SecretFilter:
    """Install (once per logger) a filter masking ``settings``' secrets."""
    found = SecretFilter(secrets_of(settings))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, SecretFilter)]:
            logger.removeFilter(old)
        logger.addFilter(found)
    return found
