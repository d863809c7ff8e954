"""How the HTTP API says no: :class:`ApiError` (a status, a stable code and a readable message, rendered as
``{"error": {"code", "message"}}``), the readable 400/422 for a body FastAPI or pydantic refused, and a failed
reply's advice fitted to an API caller (:func:`fitted`)."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from chatbot.core.advice import Reader, for_reader
from chatbot.core.error_kinds import KINDS
from chatbot.core.errors import render, status_for
from chatbot.core.events import ErrorEvent
from chatbot.core.settings import Settings
from chatbot.core.store import StoreError
from chatbot.http.schemas import EXAMPLE_JSON


class ApiError(Exception):
    """A 4xx (or 503) answer with a readable message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        conversation_id: str | None = None,
        reply: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.conversation_id = conversation_id
        self.reply = reply
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": {"code": self.code, "message": self.message}}
        if self.retry_after is not None:
            out["error"]["retry_after"] = self.retry_after
        if self.conversation_id is not None:
            out["conversation_id"] = self.conversation_id
        if self.reply:
            out["reply"] = self.reply
        return out

    def response(self) -> JSONResponse:
        headers = dict(self.headers)
        if self.conversation_id:
            headers["X-Conversation-ID"] = self.conversation_id
        if self.retry_after is not None:
            headers["Retry-After"] = str(max(1, round(self.retry_after)))
        return JSONResponse(self.body(), status_code=self.status, headers=headers)

    @classmethod
    def of(cls, kind: str, message: str | None = None, **extra: Any) -> ApiError:
        """The error for ``kind`` with its status and code from the error table (:mod:`chatbot.core.error_kinds`);
        ``message`` defaults to the kind's English message."""
        code = KINDS[kind].code if kind in KINDS else kind
        return cls(status_for(kind), code, render(kind) if message is None else message, **extra)


def api_reader(settings: Settings) -> Reader:
    """Who reads the API's failures: on a public instance a caller who can set no variable and restart nothing,
    and the API has no field for a key of their own (chatbot.core.advice)."""
    return Reader(public=settings.public)


def fitted(event: ErrorEvent, reader: Reader) -> ErrorEvent:
    """A failed reply's event with the advice ``reader`` can follow (its ``code`` stays)."""
    error = for_reader(event.error, reader)
    return event if error is event.error else ErrorEvent(error, event.partial)


def store_down(what: str, exc: StoreError) -> ApiError:
    """The 503 for a store that failed while conversations were being ``what`` (stored, read, deleted)."""
    return ApiError.of("store_unavailable", f"Conversations cannot be {what} right now: {exc}.")


def body_too_large(limit: int) -> ApiError:
    """The 413 for a request body over ``CHATBOT_MAX_BODY_BYTES``."""
    return ApiError.of(
        "body_too_large", f"The request body is larger than {limit:,} bytes (CHATBOT_MAX_BODY_BYTES)."
    )


def printable(value: object, limit: int = 60) -> str:
    """``value`` on one line and at most ``limit`` characters, to quote back in a message."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def validation_error(
    exc: RequestValidationError | ValidationError, content_type: str | None = ""
) -> ApiError:
    """A readable 400/422 for a body FastAPI or pydantic refused (never echoing the input)."""
    errors = exc.errors()
    for error in errors:
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error", "malformed JSON")
            return ApiError.of(
                "invalid_json",
                f"The request body is not valid JSON ({reason}). Send an object such as {EXAMPLE_JSON}.",
            )
    problems = [_problem(error, content_type) for error in errors]
    text = "; ".join(dict.fromkeys(problems)) or "the request is not valid"
    text = text[0].upper() + text[1:]
    return ApiError.of("invalid_request", f"{text}. Example body: {EXAMPLE_JSON}.")


def _problem(error: Any, content_type: str | None) -> str:
    """One validation error in words."""
    loc = [str(part) for part in error.get("loc", ()) if part != "body"]
    kind = error.get("type", "")
    if not loc:
        if kind == "missing":
            return "the request needs a JSON body"
        if content_type is None or "json" not in content_type.lower():
            return "send the body as JSON, with the header 'Content-Type: application/json'"
        return "the body must be a JSON object with a \"message\" string"
    field = ".".join(loc)
    if kind == "missing":
        return f"“{field}” is required"
    if kind == "string_type":
        return f"“{field}” must be a string"
    return f"“{field}”: {error.get('msg', 'invalid value')}"
