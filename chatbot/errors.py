"""Every failure as a sentence a person can act on. Pure: no network, no Gradio.

``friendly_error(exc)`` maps an exception (the openai SDK's, httpx2's, or the app's own) to a
:class:`Friendly` error: a stable ``kind`` (for the API and for tests), the text shown in the chat, and the
seconds to wait where the upstream said so. The text never holds the upstream's raw body, a status
dump like ``Error code: 429 - {...}``, or anything the request carried (such as the key).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass

import httpx2
import openai

MESSAGES: dict[str, str] = {
    "auth": "The provider refused the API key (it is missing, wrong or revoked). "
    "Check OPENAI_API_KEY (or your provider's key variable) and restart.",
    "no_balance": "The provider says the account has no credit left. Add credit with the provider, "
    "or pick a cheaper model.",
    "refused": "The provider refused this request (content policy or access rules). "
    "Rephrase the message or pick another model.",
    "model_not_found": "The provider does not know the model “{model}”. Pick another model from the list.",
    "too_long": "The conversation is too long for this model. Start a new chat or pick a model "
    "with a larger context window.",
    "message_too_long": "Your message is too long for {model}: about {tokens:,} tokens, and this model "
    "takes at most {budget:,} here. Shorten it or split it into parts. Nothing was sent.",
    "rate_limited": "The provider is rate limiting requests. Try again in {wait}.",
    "rate_limited_soon": "The provider is rate limiting requests. Wait a moment and try again.",
    "overloaded": "The provider is overloaded or down right now. Try again in a minute, or pick another model.",
    "timeout": "The provider did not answer in time. Try again, or pick a faster model.",
    "first_token_timeout": "The model sent nothing for {seconds:g} seconds, so the request was stopped. "
    "Try again or pick another model.",
    "idle_timeout": "The model went silent for {seconds:g} seconds mid-reply, so the request was stopped.",
    "connection": "Could not reach the provider at its address. Check the network and OPENAI_BASE_URL.",
    "cut": "The connection to the provider broke before the reply was complete.",
    "upstream_error": "The provider reported an error while answering: {detail}",
    "bad_request": "The provider rejected the request as invalid. Try rephrasing, or pick another model.",
    "unknown_model": "“{model}” is not one of the models offered here. Pick one from the list.",
    "empty_message": "Type a message first.",
    "internal": "Something went wrong on our side. Your message is kept: try sending it again.",
    "cut_note": "The reply was cut off here.",
    "trimmed_note": "{turns} older turn(s) were left out of what the model sees, to fit its context window.",
}


class FirstTokenTimeout(Exception):
    """The upstream sent headers (or nothing) but no token within the first-token time-out."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no token within {seconds:g} s")
        self.seconds = seconds


class IdleTimeout(Exception):
    """The upstream went silent mid-reply for longer than the idle time-out."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"silent for {seconds:g} s")
        self.seconds = seconds


@dataclass(frozen=True)
class Friendly:
    kind: str
    text: str
    retry_after: float | None = None
    status: int | None = None


def render(kind: str, **params: object) -> str:
    """The message for ``kind`` with its parameters filled in."""
    return MESSAGES[kind].format(**params)


def friendly_error(exc: BaseException, *, model: str = "this model") -> Friendly:
    """Map any exception to the message a person sees. Never raises."""
    try:
        return _classify(exc, model)
    except Exception:  # a classifier bug must not become a traceback in the chat
        return Friendly("internal", render("internal"))


def _classify(exc: BaseException, model: str) -> Friendly:
    if isinstance(exc, FirstTokenTimeout):
        return Friendly("first_token_timeout", render("first_token_timeout", seconds=exc.seconds))
    if isinstance(exc, IdleTimeout):
        return Friendly("idle_timeout", render("idle_timeout", seconds=exc.seconds))
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException | asyncio.TimeoutError):
        return Friendly("timeout", render("timeout"))
    if isinstance(exc, openai.APIConnectionError) and isinstance(
        exc.__cause__, httpx2.RemoteProtocolError | httpx2.ReadError
    ):  # the connection was up and broke mid-body
        return Friendly("cut", render("cut"))
    if isinstance(exc, openai.APIConnectionError | httpx2.ConnectError | httpx2.ConnectTimeout):
        return Friendly("connection", render("connection"))
    if isinstance(exc, openai.APIStatusError):
        return _from_status(exc, model)
    if isinstance(exc, openai.APIError):  # an error chunk inside a 200 stream (OpenRouter's style)
        code = _body_field(exc.body, "code")
        if code in (402, "402"):
            return Friendly("no_balance", render("no_balance"))
        if code in (429, "429"):
            return Friendly("rate_limited_soon", render("rate_limited_soon"))
        return Friendly("upstream_error", render("upstream_error", detail=_short(exc.message)))
    if isinstance(exc, httpx2.TransportError | httpx2.StreamError | ConnectionError):
        return Friendly("cut", render("cut"))
    return Friendly("internal", render("internal"))


def _from_status(exc: openai.APIStatusError, model: str) -> Friendly:
    status = exc.status_code
    code = _body_field(exc.body, "code") or getattr(exc, "code", None)
    if status == 401:
        return Friendly("auth", render("auth"), status=status)
    if status == 402:
        return Friendly("no_balance", render("no_balance"), status=status)
    if status == 403:
        return Friendly("refused", render("refused"), status=status)
    if status == 404:
        return Friendly("model_not_found", render("model_not_found", model=model), status=status)
    if status == 413 or code == "context_length_exceeded" or (status == 400 and _mentions_context(exc)):
        return Friendly("too_long", render("too_long"), status=status)
    if status == 429:
        wait = retry_after_seconds(exc.response.headers if exc.response is not None else {})
        if wait is None:
            return Friendly("rate_limited_soon", render("rate_limited_soon"), status=status)
        return Friendly("rate_limited", render("rate_limited", wait=_duration(wait)), wait, status)
    if status in (408, 504):
        return Friendly("timeout", render("timeout"), status=status)
    if status >= 500:
        return Friendly("overloaded", render("overloaded"), status=status)
    if status == 400 or status == 422:
        return Friendly("bad_request", render("bad_request"), status=status)
    return Friendly("upstream_error", render("upstream_error", detail=f"HTTP {status}"), status=status)


def retry_after_seconds(headers: object) -> float | None:
    """Seconds from ``Retry-After`` / ``retry-after-ms`` (numbers only), or None."""
    getter = getattr(headers, "get", None)
    if getter is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = getter(name)
        if raw is None:
            continue
        try:
            value = float(raw) / divisor
        except ValueError:
            continue
        if math.isfinite(value) and value >= 0:
            return value
    return None


def _duration(seconds: float) -> str:
    seconds = math.ceil(seconds)
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    if minutes < 90:
        return f"{minutes} minutes"
    return f"{math.ceil(minutes / 60)} hours"


def _body_field(body: object, name: str) -> object:
    if isinstance(body, dict):
        if name in body:
            return body[name]
        inner = body.get("error")
        if isinstance(inner, dict):
            return inner.get(name)
    return None


def _mentions_context(exc: openai.APIStatusError) -> bool:
    message = str(_body_field(exc.body, "message") or "").lower()
    return "context" in message and ("length" in message or "window" in message or "token" in message)


def _short(text: object, limit: int = 160) -> str:
    """A provider's message made safe to show: one line, bounded, no secrets-looking tokens."""
    line = " ".join(str(text or "").split())
    words = [("[hidden]" if _looks_secret(w) else w) for w in line.split(" ")]
    line = " ".join(words)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _looks_secret(word: str) -> bool:
    stripped = word.strip("'\",.;:()[]{}<>")
    lowered = stripped.lower()
    return (
        lowered.startswith(("sk-", "bearer", "key-", "api_key", "apikey"))
        or (len(stripped) >= 24 and any(c.isdigit() for c in stripped) and any(c.isalpha() for c in stripped))
    )
