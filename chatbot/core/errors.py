"""Every failure as a sentence a person can act on. Pure: no network, no Gradio.

``friendly_error(exc)`` maps an exception (the openai SDK's, httpx2's, or the app's own) to a
:class:`Friendly` error: a stable ``kind`` (for the API and for tests), the text shown in the chat, and the
seconds to wait where the upstream said so. The text never holds the upstream's raw body, a status
dump like ``Error code: 429 - {...}``, or anything the request carried (such as the key).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx2
import openai

from chatbot.core.error_kinds import API_STATUS, KINDS, NOTES
from chatbot.core.i18n import DEFAULT_LANGUAGE, local_numbers
from chatbot.core.i18n import duration as _localized_duration

#: The English of every error kind and note (the table, with the other languages, is :mod:`chatbot.core.error_kinds`).
MESSAGES: dict[str, str] = {
    **{kind: entry.messages[DEFAULT_LANGUAGE] for kind, entry in KINDS.items()},
    **{key: note[DEFAULT_LANGUAGE] for key, note in NOTES.items()},
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


class StreamProblem(Exception):
    """The provider's answer is not a usable reply, or the app stopped it at one of its limits: ``kind`` is
    the message's key in :data:`MESSAGES`, ``params`` fill it in."""

    def __init__(self, kind: str, **params: object) -> None:
        super().__init__(kind)
        self.kind = kind
        self.params = params


#: The kinds of :class:`StreamProblem` raised when the app itself stopped a reply at a limit.
REPLY_LIMIT_KINDS = frozenset({"reply_cap", "reply_too_large", "reply_timeout"})


@dataclass(frozen=True)
class Friendly:
    kind: str
    text: str  # in English
    retry_after: float | None = None
    status: int | None = None
    params: Mapping[str, object] = field(default_factory=dict, compare=False, repr=False)

    def localized(self, lang: str = DEFAULT_LANGUAGE) -> str:
        """The message in ``lang`` (the English text when it cannot be rendered there)."""
        if lang == DEFAULT_LANGUAGE or self.kind not in MESSAGES:
            return self.text
        try:
            return _rendered(self.kind, lang, self.params)
        except (KeyError, IndexError, ValueError):  # built without its parameters: keep the English
            return self.text


def friendly(kind: str, *, retry_after: float | None = None, status: int | None = None, **params: object) -> Friendly:
    """A :class:`Friendly` for ``kind`` that keeps its parameters, so it can be shown in any language.
    Pass a wait as a number of seconds (``wait=42.0``): it is put into words in the visitor's language."""
    return Friendly(kind, _rendered(kind, DEFAULT_LANGUAGE, params), retry_after, status, dict(params))


def render(kind: str, lang: str = DEFAULT_LANGUAGE, **params: object) -> str:
    """The message for ``kind`` in ``lang`` (English by default) with its parameters filled in. A numeric
    ``wait`` is written as a duration in that language."""
    return _rendered(kind, lang, params)


def _rendered(kind: str, lang: str, params: Mapping[str, object]) -> str:
    wait = params.get("wait")
    if isinstance(wait, int | float) and not isinstance(wait, bool):
        params = {**params, "wait": _localized_duration(wait, lang)}
    template = _template(kind, lang)
    try:
        return template.format(**local_numbers(dict(params), lang))
    except (KeyError, IndexError, ValueError):
        if lang == DEFAULT_LANGUAGE:
            raise
        return MESSAGES[kind].format(**params)


def _template(kind: str, lang: str) -> str:
    """The template for ``kind`` (an error kind or a note) in ``lang``, falling back to English."""
    table = KINDS[kind].messages if kind in KINDS else NOTES[kind]
    return table.get(lang) or table[DEFAULT_LANGUAGE]


def status_for(kind: str) -> int:
    """The HTTP status the API answers with for an error ``kind`` (502, the provider's fault, if unknown)."""
    return API_STATUS.get(kind, 502)


def failure_text(error: Friendly, partial: bool, lang: str = DEFAULT_LANGUAGE) -> str:
    """What every face says for a failed reply: the message, after the cut-off note when some of the reply
    had already arrived (the one spelling of that note)."""
    message = error.localized(lang)
    return f"{render('cut_note', lang)} {message}" if partial else message


def friendly_error(exc: BaseException, *, model: str = "this model") -> Friendly:
    """Map any exception to the message a person sees. Never raises."""
    try:
        return _classify(exc, model)
    except Exception:  # a classifier bug must not become a traceback in the chat
        return Friendly("internal", render("internal"))


def _classify(exc: BaseException, model: str) -> Friendly:
    if isinstance(exc, FirstTokenTimeout):
        return friendly("first_token_timeout", seconds=exc.seconds)
    if isinstance(exc, IdleTimeout):
        return friendly("idle_timeout", seconds=exc.seconds)
    if isinstance(exc, StreamProblem):
        return Friendly(exc.kind, _rendered(exc.kind, DEFAULT_LANGUAGE, exc.params), params=dict(exc.params))
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
        return friendly("upstream_error", detail=_short(exc.message))
    if isinstance(exc, httpx2.TransportError | httpx2.StreamError | ConnectionError):
        return Friendly("cut", render("cut"))
    return Friendly("internal", render("internal"))


def store_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a failure of the app's own store: the conversation store, or
    the Redis server the limits share (redis-py's and the limits library's errors)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if type(seen).__name__ == "StoreError" or any(
            cls.__module__.partition(".")[0] in ("redis", "limits") for cls in type(seen).__mro__
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


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
        return friendly("model_not_found", status=status, model=model)
    if status == 413 or code == "context_length_exceeded" or (status == 400 and _mentions_context(exc)):
        return Friendly("too_long", render("too_long"), status=status)
    if status == 429:
        wait = retry_after_seconds(exc.response.headers if exc.response is not None else {})
        if wait is None:
            return Friendly("rate_limited_soon", render("rate_limited_soon"), status=status)
        return friendly("rate_limited", retry_after=wait, status=status, wait=wait)
    if status in (408, 504):
        return Friendly("timeout", render("timeout"), status=status)
    if status >= 500:
        return Friendly("overloaded", render("overloaded"), status=status)
    if status == 400 or status == 422:
        return Friendly("bad_request", render("bad_request"), status=status)
    return friendly("upstream_error", status=status, detail=f"HTTP {status}")


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
