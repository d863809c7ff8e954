"""The HTTP API of the tutorial Switchboard grew from, on the same chat core as the Gradio UI.

Routes (all JSON unless said otherwise; the OpenAPI schema is at ``/openapi.json``, the docs at ``/docs``):

- ``POST /chat``: one reply, ``{"reply", "conversation_id", "model", "usage"}``.
- ``POST /chat/stream``: ``text/event-stream``. Plain (the tutorial's format): each text delta is one event
  whose lines are ``data:`` lines (so a reply with newlines arrives intact: join the lines of one event
  with ``"\\n"``, as EventSource does), failures are ``data: [ERROR] <message>``, ``data: [DONE]`` is last.
  With ``?format=json`` each event is ``data: {"type": "delta" | "reasoning" | "usage" | "error" | "done"}``.
- ``GET /models``, ``GET /conversations/{id}``, ``DELETE /conversations/{id}``.
- ``WS /chat/ws``: send ``{"message", "model", "conversation_id"}``, receive the JSON events (after a
  ``start`` event), send ``{"type": "stop"}`` to stop a reply midway.

Auth (:class:`Gate`): with ``CHATBOT_API_TOKENS`` set, every route needs ``Authorization: Bearer <token>``
and a conversation belongs to the token that created it. With a login (``CHATBOT_AUTH``), HTTP Basic with
its credentials works too (the docs need it as well) and nothing answers anonymously. With neither, the API
answers only on a loopback bind (and not behind a share link). Bad input is a 4xx with
``{"error": {"code", "message"}}`` and never reaches the upstream.

Every message is stored (:mod:`chatbot.core.store`) the moment it is accepted; the reply is stored when it ends,
however it ends: a dropped client or a Stop cancels the request task, which closes the upstream
connection (see :mod:`chatbot.core.upstream`) and stores what was produced, marked ``interrupted``. While it
streams, its text so far is saved about every second (:mod:`chatbot.core.checkpoints`). A reply the store did
not take is never reported as saved: ``done`` says ``"saved": false`` after an error event ``not_saved``
(plain SSE: an ``[ERROR]`` line), ``/chat`` answers ``"saved": false``, and the save is retried until the
store takes it. A failure after the stream started is an error event then the end of the stream; before,
a JSON error with its status; both are logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import json
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import urlsplit

from fastapi import FastAPI, Path, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr, ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect, WebSocketState

from chatbot.core.checkpoints import Checkpoints, Outcome, Progress
from chatbot.core.error_kinds import KINDS
from chatbot.core.errors import Friendly, failure_text, friendly, render, status_for, store_failure
from chatbot.core.history import History, clean_text
from chatbot.core.limits import Visitor, request_address, visitor_bucket, visitor_from
from chatbot.core.redact import redact_logs
from chatbot.core.settings import Settings
from chatbot.core.store import Conversation, Store, StoreError, Turn
from chatbot.core.upstream import (
    Admission,
    Done,
    ErrorEvent,
    Event,
    HistoryTrimmed,
    Idle,
    ReasoningDelta,
    TextDelta,
    Upstream,
    Usage,
)
from chatbot.http.access import LoginChecker, basic_credentials, login_checker
from chatbot.http.metrics import metrics_router

log = logging.getLogger("switchboard.api")

#: An SSE comment is sent after this many seconds without an event, so proxies keep the stream open.
KEEPALIVE_SECONDS = 15.0

EXAMPLE = {"message": "¡Hola!", "model": "gpt-4.1-mini"}
EXAMPLE_JSON = json.dumps(EXAMPLE, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------- schema


class ChatRequest(BaseModel):
    """A message to send. Unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", json_schema_extra={"examples": [EXAMPLE]})

    message: StrictStr = Field(description="The text to send: not empty, not longer than the server accepts.")
    model: StrictStr | None = Field(
        None, description="A model alias or id from GET /models; leave out for the first one listed."
    )
    conversation_id: StrictStr | None = Field(
        None, description="Continue this conversation; leave out to start a new one (its id is returned)."
    )


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    cost: float | None = Field(None, description="USD, when known.")
    cost_source: str = Field(description='"upstream" (the provider\'s figure), "catalogue" or "unknown".')


class ChatReply(BaseModel):
    reply: str
    conversation_id: str
    model: str = Field(description="The model id that answered.")
    usage: UsageOut | None
    finish_reason: str | None = None
    saved: bool = Field(True, description="False when the server could not store the reply (it retries).")


class ErrorDetail(BaseModel):
    code: str = Field(description="A stable identifier, e.g. unknown_model, rate_limited, unauthorized.")
    message: str = Field(description="What went wrong and what to do, for a person.")
    retry_after: float | None = Field(None, description="Seconds to wait before trying again, when known.")


class ErrorOut(BaseModel):
    error: ErrorDetail
    conversation_id: str | None = Field(None, description="The conversation, when one was involved.")
    reply: str | None = Field(None, description="Text produced before a failure cut the reply, if any.")


class Prices(BaseModel):
    input: float | None
    output: float | None
    unit: str = "USD per million tokens"


class ModelInfo(BaseModel):
    name: str = Field(description="What to send as `model`: an alias or an id.")
    id: str
    context_window: int
    max_output: int | None
    prices: Prices
    reasoning: bool
    vision: bool


class ModelsOut(BaseModel):
    models: dict[str, str] = Field(description="Name (alias or id) to model id, as in the tutorial.")
    default: str
    available: list[ModelInfo]


class MessageOut(BaseModel):
    role: Literal["user", "assistant"]
    content: str
    status: Literal["complete", "streaming", "interrupted"] = Field(
        description="interrupted: the reply was cut (error, disconnect, stop); content is what was produced."
    )
    created_at: str
    model: str | None = None
    error: str | None = Field(None, description="Why an interrupted reply ended (an error code).")
    finish_reason: str | None = None
    usage: UsageOut | None = None


class ConversationOut(BaseModel):
    conversation_id: str
    created_at: str
    updated_at: str
    messages: list[MessageOut]


# ----------------------------------------------------------------------------------------------- errors


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


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The body is not valid JSON."},
    401: {"model": ErrorOut, "description": "No token, or not one of CHATBOT_API_TOKENS."},
    403: {"model": ErrorOut, "description": "No CHATBOT_API_TOKENS on a non-loopback bind: the API is off."},
    413: {"model": ErrorOut, "description": "The body is larger than CHATBOT_MAX_BODY_BYTES."},
    422: {"model": ErrorOut, "description": "A field is missing, of the wrong type, or not acceptable."},
    503: {"model": ErrorOut, "description": "The conversation store is unavailable."},
}
CHAT_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    404: {"model": ErrorOut, "description": "No such conversation for this token."},
    429: {"model": ErrorOut, "description": "The provider is rate limiting; see Retry-After."},
    502: {"model": ErrorOut, "description": "The provider failed or refused the key."},
    504: {"model": ErrorOut, "description": "The provider did not answer in time."},
}


def _store_down(what: str, exc: StoreError) -> ApiError:
    return ApiError.of("store_unavailable", f"Conversations cannot be {what} right now: {exc}.")


def _printable(value: object, limit: int = 60) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _validation_error(
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
    problems: list[str] = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ()) if part != "body"]
        kind = error.get("type", "")
        if not loc:
            if kind == "missing":
                problems.append("the request needs a JSON body")
            elif content_type is None or "json" not in content_type.lower():
                problems.append("send the body as JSON, with the header 'Content-Type: application/json'")
            else:
                problems.append("the body must be a JSON object with a \"message\" string")
            continue
        field = ".".join(loc)
        if kind == "missing":
            problems.append(f"“{field}” is required")
        elif kind == "string_type":
            problems.append(f"“{field}” must be a string")
        else:
            problems.append(f"“{field}”: {error.get('msg', 'invalid value')}")
    text = "; ".join(dict.fromkeys(problems)) or "the request is not valid"
    text = text[0].upper() + text[1:]
    return ApiError.of("invalid_request", f"{text}. Example body: {EXAMPLE_JSON}.")


# ------------------------------------------------------------------------------------------------- auth


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Caller:
    """Who sends an API request: the owner its conversations belong to, and the login's user name when
    it signed in with HTTP Basic (its limits are then that user's, as in the UI)."""

    owner: str
    user: str | None = None


LOGIN_NEEDED = (
    "This API needs the login: send HTTP Basic credentials ('Authorization: Basic ...', e.g. curl -u "
    "user:password) with a user and password set in CHATBOT_AUTH."
)
LOGIN_TOO = ", or HTTP Basic credentials of a user set in CHATBOT_AUTH."
LOGIN_REFUSED = (
    "Wrong user name or password, or too many wrong tries from this address recently (wait a minute). "
    "Send the user and password of the login (CHATBOT_AUTH) as HTTP Basic credentials."
)
#: The docs and the schema: with a login set, they need it too.
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/openapi.json"})


class Gate:
    """Who may use the API, and as which owner.

    With tokens, the owner is a hash of the token (the token itself is stored nowhere). With a login
    (``CHATBOT_AUTH``), HTTP Basic with its user and password is accepted too (the login page's throttle
    applies) and the owner is a hash of the user name; nothing answers anonymously. With neither, the
    owner is ``""`` and the API is open only when the server cannot be reached from elsewhere."""

    def __init__(self, settings: Settings, login: LoginChecker | None = None) -> None:
        self._tokens = [t.get_secret_value().encode() for t in settings.api_tokens]
        self._login = login if settings.auth else None
        self._trusted_proxies = settings.trusted_proxies
        self.refusal: ApiError | None = None
        if not self._tokens and self._login is None:
            if settings.share:
                where = "a share link makes this server public"
            elif not is_loopback(settings.host):
                where = f"this server listens on {settings.host}, which is not loopback"
            elif settings.public:
                where = "this server is reachable from other machines"
            else:
                where = ""
            if where:
                self.refusal = ApiError.of(
                    "api_disabled",
                    f"The HTTP API is off: {where}, and CHATBOT_API_TOKENS is not set, so anyone who can "
                    "reach it could spend your provider credit. Set CHATBOT_API_TOKENS to one or more "
                    "secret tokens (comma-separated), restart, and send 'Authorization: Bearer <token>'.",
                )

    @property
    def guards_docs(self) -> bool:
        """With a login, the docs and the schema need it too."""
        return self._login is not None

    def caller(self, headers: Headers, peer: str | None) -> Caller:
        """Who sends a request (its ``Authorization`` header; ``peer`` and ``X-Forwarded-For`` name the
        client for the login throttle); raises :class:`ApiError` (401/403)."""
        authorization = headers.get("authorization")
        if self._login is not None and basic_credentials(authorization) is not None:
            user, password = basic_credentials(authorization) or ("", "")
            client = visitor_bucket(request_address(peer, headers, self._trusted_proxies))
            if not self._login.check(user, password, client):
                raise ApiError.of("unauthorized", LOGIN_REFUSED, headers=self._challenge())
            return Caller(hashlib.sha256(b"switchboard-user:" + user.encode()).hexdigest()[:32], user)
        if self._login is not None and not self._tokens:
            raise ApiError.of("unauthorized", LOGIN_NEEDED, headers=self._challenge())
        return Caller(self.owner(authorization))

    def _challenge(self) -> dict[str, str]:
        schemes = ['Bearer realm="switchboard"'] if self._tokens else []
        schemes += ['Basic realm="switchboard", charset="UTF-8"'] if self._login is not None else []
        return {"WWW-Authenticate": ", ".join(schemes)}

    def owner(self, authorization: str | None) -> str:
        """The owner for a request's bearer token; raises :class:`ApiError` (401/403)."""
        if self.refusal is not None:
            raise self.refusal
        if not self._tokens:
            return ""
        challenge = self._challenge()
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError.of(
                "unauthorized",
                "This API needs a token: send the header 'Authorization: Bearer <token>' with one of the "
                "tokens set in CHATBOT_API_TOKENS" + (LOGIN_TOO if self._login is not None else "."),
                headers=challenge,
            )
        given = token.strip().encode("utf-8", "replace")
        matched = False
        for known in self._tokens:  # compare with every token, in constant time each
            matched |= hmac.compare_digest(given, known)
        if not matched:
            raise ApiError.of(
                "unauthorized",
                "The token is not one of those set in CHATBOT_API_TOKENS"
                + (LOGIN_TOO.replace(", or", "; or send") if self._login is not None else "."),
                headers=challenge,
            )
        return hashlib.sha256(b"switchboard-owner:" + given).hexdigest()[:32]


#: The API's HTTP paths and their methods (``/conversations/*`` stands for one id segment).
API_METHODS: dict[str, tuple[str, ...]] = {
    "/chat": ("POST",),
    "/chat/stream": ("POST",),
    "/models": ("GET",),
    "/conversations/*": ("GET", "DELETE"),
    "/metrics": ("GET",),
}


def _api_route(path: str) -> str | None:
    """The :data:`API_METHODS` key for a request path, ``""`` for a path that only looks like one
    (answered 404 here rather than by the Gradio app), or None for a path that is not the API's."""
    if path in API_METHODS:
        return path
    if path == "/conversations" or path.startswith("/conversations/"):
        rest = path[len("/conversations/"):]
        return "/conversations/*" if rest and "/" not in rest else ""
    if path.startswith(("/chat/", "/models/")) and path != "/chat/ws":
        return ""
    return None


class ApiGate:
    """ASGI middleware for the API's HTTP routes: auth before anything else, then the body size cap
    (the body is read here, so an oversized one is refused without being parsed). Other paths (the
    Gradio app; the docs unless a login is set) pass through untouched."""

    def __init__(self, app: ASGIApp, gate: Gate, max_body_bytes: int) -> None:
        self.app = app
        self.gate = gate
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = _api_route(scope["path"]) if scope["type"] == "http" else None
        if route is None and scope["type"] == "http" and self.gate.guards_docs and scope["path"] in DOCS_PATHS:
            route = scope["path"]
        if route is None:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            if not route:
                raise ApiError.of("not_found", f"There is no API route {scope['path']}. See /docs.")
            allowed = API_METHODS.get(route, ("GET", "HEAD"))
            if scope["method"] not in allowed:
                raise ApiError.of(
                    "method_not_allowed",
                    f"{scope['method']} is not allowed here; use {' or '.join(allowed)}.",
                    headers={"Allow": ", ".join(allowed)},
                )
            client = scope.get("client")
            caller = self.gate.caller(headers, client[0] if client else None)
            scope.setdefault("state", {}).update(switchboard_owner=caller.owner, switchboard_user=caller.user)
            if scope["method"] in ("POST", "PUT", "PATCH"):
                receive = await self._buffered(headers, receive)
        except ApiError as exc:
            await exc.response()(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except Exception:  # a bug: logged here with secrets masked (the server would log it unmasked)
            log.exception("%s %s failed", scope["method"], route)
            with contextlib.suppress(Exception):  # fails when the response had started: nothing more to say
                await ApiError.of("internal").response()(scope, receive, send)

    async def _buffered(self, headers: Headers, receive: Receive) -> Receive:
        too_big = ApiError.of(
            "body_too_large",
            f"The request body is larger than {self.max_body_bytes:,} bytes (CHATBOT_MAX_BODY_BYTES).",
        )
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise too_big
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see the disconnect
                return _replaying(message)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise too_big
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the app expects

        return replay


def _replaying(message: Message) -> Receive:
    async def receive() -> Message:
        return message

    return receive


# ------------------------------------------------------------------------------------------------- core


def sse_data(text: str) -> bytes:
    """One SSE event carrying ``text``: a ``data:`` line per line (SSE treats CR, LF and CRLF alike as
    line ends, so each becomes a line break the client joins back with LF)."""
    return ("".join(f"data: {line}\n" for line in re.split(r"\r\n|\r|\n", text)) + "\n").encode()


def sse_json(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "cost": usage.cost,
        "cost_source": usage.cost_source,
    }


#: Tries of a reply whose visitor limits' Redis failed before anything was sent upstream (the limits use two
#: Redis clients; each reconnects after its first failure once Redis has restarted).
STORE_ATTEMPTS = 3


def error_text(event: ErrorEvent) -> str:
    """The wording the UI shows for a failed reply (without its emoji), in English."""
    return failure_text(event.error, event.partial)


def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Reply:
    """One turn's reply: runs the upstream stream, keeps what arrives, and stores the reply when the
    stream ends, whether it completed, failed, or was cancelled (a dropped client, a Stop)."""

    def __init__(
        self, service: ChatService, turn: Turn, message: str, model_name: str, visitor: Visitor,
        admission: Admission | None = None,
    ) -> None:
        self.service = service
        self.turn = turn
        self.message = message
        self.model_name = model_name
        self.visitor = visitor
        self.admission = admission  # the limits were checked before the turn was stored
        self.text: list[str] = []
        self.usage: Usage | None = None
        self.error: ErrorEvent | None = None
        self.done: Done | None = None
        self.trimmed = 0
        self.cancel_reason = "disconnected"
        self.saved = False
        self.stored: Outcome | None = None
        """How storing the reply's end went (None until it was tried, or when a bug stopped it)."""
        self._progress: Progress | None = None

    @property
    def reply(self) -> str:
        return "".join(self.text)

    async def events(self) -> AsyncIterator[Event]:
        self._progress = self.service.checkpoints.track(self.turn, self.text)
        try:
            for attempt in range(1, STORE_ATTEMPTS + 1):
                started = False
                try:
                    async for event in self._upstream_events():
                        started = True
                        yield event
                    break
                except Exception as exc:  # a failure of the app itself (its Redis): an error event, logged
                    if store_failure(exc) and not started and attempt < STORE_ATTEMPTS:
                        # The visitor limits' Redis restarted: each of its clients reconnects on its first
                        # failure. Nothing was sent upstream yet (the limits come first): try again.
                        log.warning("the shared store failed (%s); trying again", type(exc).__name__)
                        continue
                    log.exception("a reply failed")
                    if self.done is not None and self.error is None:
                        break  # the reply was whole; only its accounting (the limits) failed afterwards
                    failure = friendly("store_unavailable" if store_failure(exc) else "internal")
                    self.error = ErrorEvent(failure, partial=bool(self.text))
                    yield self.error
                    break
        finally:
            await self.save()

    async def _upstream_events(self) -> AsyncIterator[Event]:
        history = History.of(self.turn.history, self.service.settings)  # the stored context, text only
        upstream = self.service.upstream
        stream = upstream.stream(
            self.message, history, self.model_name, visitor=self.visitor, admission=self.admission
        )
        async with contextlib.aclosing(stream):
            async for event in stream:
                if self.service.closing:
                    ending = friendly("shutting_down")
                    self.error = ErrorEvent(ending, partial=bool(self.text))
                    yield self.error
                    break
                if isinstance(event, TextDelta):
                    self.text.append(event.text)
                elif isinstance(event, Usage):
                    self.usage = event
                elif isinstance(event, ErrorEvent):
                    self.error = event
                elif isinstance(event, Done):
                    self.done = event
                elif isinstance(event, HistoryTrimmed):
                    self.trimmed = event.dropped_turns
                yield event

    async def save(self) -> None:
        """Store the reply (once). Runs in a task of its own, so a cancelled request still stores it."""
        await self.service.upstream.release(self.admission)  # a reply that never started frees its slot
        if self.saved:
            return
        self.saved = True
        self.service.checkpoints.untrack(self._progress)
        complete = self.done is not None and self.error is None
        if complete:
            reason = None
        elif self.error is not None:
            reason = self.error.error.kind
        else:
            reason = self.cancel_reason
        write = self.service.checkpoints.finish(
            self.turn, self.reply, "complete" if complete else "interrupted", error=reason,
            finish_reason=self.done.finish_reason if self.done else None,
            usage=usage_json(self.usage) if self.usage else None,
        )
        self.stored = await self.service.background(write)
        if self.stored in ("failed", None):
            self.service.upstream.metrics.store_error("not_saved")

    def not_saved(self) -> ErrorEvent | None:
        """The event telling the client the store refused its reply (None when it took it, or when the
        conversation was deleted meanwhile)."""
        if self.stored not in ("failed", None):
            return None
        return ErrorEvent(friendly("not_saved"), partial=False)


class ChatService:
    """Validation, storage and streaming shared by the HTTP routes and the WebSocket."""

    def __init__(self, settings: Settings, upstream: Upstream, store: Store) -> None:
        self.settings = settings
        self.upstream = upstream
        self.store = store
        self.closing = False
        self._tasks: set[asyncio.Task] = set()
        self.checkpoints = Checkpoints(store)

    def close(self) -> None:
        """The server is shutting down: replies in progress end now (stored as interrupted), new
        requests are refused."""
        self.closing = True

    async def background(self, work: Coroutine[Any, Any, Any]) -> Any:
        """Run ``work`` to completion even if the caller is cancelled meanwhile (the caller still sees
        its cancellation) and return its result. Failures are logged, never raised (None)."""
        task = asyncio.get_running_loop().create_task(self._logged(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(task)

    @staticmethod
    async def _logged(work: Awaitable[Any]) -> Any:
        try:
            return await work
        except StoreError as exc:
            log.error("could not store a reply: %s", exc)
        except Exception:  # pragma: no cover - a bug must not vanish silently
            log.exception("could not store a reply")
        return None

    async def drain(self) -> None:
        """Wait for pending writes (at shutdown), and give the refused ones a last try."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.checkpoints.close()

    def check(self, request: ChatRequest) -> tuple[str, str, str]:
        """(clean message, model name to send, model id), or :class:`ApiError` 422."""
        raw = request.message
        limit = self.settings.max_message_chars
        if len(raw) > limit:
            raise ApiError.of("input_too_long", render("input_too_long", chars=len(raw), limit=limit))
        message = clean_text(raw, limit)
        if not message.strip():
            raise ApiError.of("empty_message", render("empty_message"))
        model = self.upstream.resolve(request.model)
        if model is None:
            raise ApiError.of("unknown_model", render("unknown_model", model=_printable(request.model)))
        name = request.model if request.model and request.model.strip() else self.upstream.catalogue.default
        return message, name.strip(), model.id

    def visitor(self, owner: str, peer: str | None, headers: Mapping[str, str], user: str | None = None) -> Visitor:
        """Whom the limits count: the login's user (HTTP Basic) as in the UI; a token, against the API limits
        (``CHATBOT_API_RATE_LIMIT`` / ``CHATBOT_API_TOKEN_LIMIT``, each token on its own); without either,
        the client address as a visitor."""
        if user:
            return visitor_from(peer, headers, self.settings.trusted_proxies, username=user)
        if owner:
            return Visitor(f"api-token:{owner[:16]}", api=True)
        return visitor_from(peer, headers, self.settings.trusted_proxies)

    async def begin(self, owner: str, request: ChatRequest, visitor: Visitor) -> Reply:
        """Validate, admit (every limit is checked before anything is stored or tokenised), store the
        message, and return the reply to run (:class:`ApiError` otherwise)."""
        message, name, model_id = self.check(request)
        if self.closing:
            raise ApiError.of("shutting_down")
        admission = await self._admit(visitor, name)
        if isinstance(admission, Friendly):
            self.upstream.metrics.refused(admission.kind)
            raise ApiError.of(admission.kind, admission.text, retry_after=admission.retry_after)
        try:
            turn = await self.store.begin_turn(
                request.conversation_id, owner, message, model_id, self.settings.max_history_messages
            )
        except StoreError as exc:
            self.upstream.metrics.store_error()
            await self.upstream.release(admission)
            raise _store_down("stored", exc) from None
        except BaseException:
            await self.upstream.release(admission)
            raise
        if turn is None:
            await self.upstream.release(admission)
            raise ApiError.of(
                "unknown_conversation",
                f"There is no conversation “{_printable(request.conversation_id, 40)}” for this token "
                "(unknown, deleted, or started with another token). Leave out conversation_id to start one.",
            )
        return Reply(self, turn, message, name, visitor, admission)

    async def _admit(self, visitor: Visitor, name: str) -> Admission | Friendly:
        """The limits' admission, tried again when their Redis failed (each of its clients reconnects on its
        first failure, so a restarted Redis costs no request); a failure that remains is a 503, logged."""
        for attempt in range(1, STORE_ATTEMPTS + 1):
            try:
                return await self.upstream.admit(visitor, name)
            except Exception as exc:
                if not store_failure(exc):
                    raise
                if attempt < STORE_ATTEMPTS:
                    log.warning("the shared store failed (%s); trying again", type(exc).__name__)
                    continue
                log.exception("the limits' store failed")
                raise ApiError.of("store_unavailable") from None
        raise AssertionError("unreachable")

    async def conversation(self, owner: str, conversation_id: str) -> Conversation:
        try:
            found = await self.store.get(conversation_id, owner)
        except StoreError as exc:
            raise _store_down("read", exc) from None
        if found is None:
            raise ApiError.of(
                "unknown_conversation",
                f"There is no conversation “{_printable(conversation_id, 40)}” for this token.",
            )
        return found

    def models(self) -> ModelsOut:
        catalogue = self.upstream.catalogue
        names = [value for _, value in catalogue.choices()]
        available: list[ModelInfo] = []
        mapping: dict[str, str] = {}
        for name in names:
            model = self.upstream.resolve(name)
            if model is None:  # pragma: no cover - every offered name resolves
                continue
            mapping[name] = model.id
            available.append(
                ModelInfo(
                    name=name, id=model.id, context_window=model.context_window, max_output=model.max_output,
                    prices=Prices(input=model.input_price, output=model.output_price),
                    reasoning=model.reasoning, vision=model.vision,
                )
            )
        return ModelsOut(models=mapping, default=catalogue.default, available=available)


def json_event(event: Event, reply: Reply) -> dict[str, Any] | None:
    """The ``?format=json`` / WebSocket shape of one core event (None: nothing to send)."""
    if isinstance(event, TextDelta):
        return {"type": "delta", "text": event.text}
    if isinstance(event, ReasoningDelta):
        return {"type": "reasoning", "text": event.text}
    if isinstance(event, Usage):
        return {"type": "usage", **usage_json(event)}
    if isinstance(event, ErrorEvent):
        return {
            "type": "error", "code": event.error.kind, "message": error_text(event),
            "retry_after": event.error.retry_after, "partial": event.partial,
        }
    return None


def done_event(reply: Reply, stopped: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "done",
        "conversation_id": reply.turn.conversation_id,
        "model": reply.turn.model,
        "finish_reason": reply.done.finish_reason if reply.done else None,
        "interrupted": stopped or reply.error is not None or reply.done is None,
        "history_trimmed_turns": reply.trimmed,
    }
    out["saved"] = reply.stored == "stored"
    if stopped:
        out["stopped"] = True
    return out


async def sse_stream(reply: Reply, structured: bool) -> AsyncGenerator[bytes, None]:
    """The body of ``POST /chat/stream``."""
    loop = asyncio.get_running_loop()
    last = loop.time()
    async with contextlib.aclosing(reply.events()) as events:
        async for event in events:
            now = loop.time()
            if isinstance(event, Idle):
                if now - last >= KEEPALIVE_SECONDS:
                    last = now
                    yield b": keep-alive\n\n"
                continue
            chunk = _sse_chunk(event, reply, structured)
            if chunk:
                last = now
                yield chunk
    unsaved = reply.not_saved()
    if unsaved is not None:
        yield _sse_chunk(unsaved, reply, structured) or b""
    yield sse_json(done_event(reply)) if structured else b"data: [DONE]\n\n"


def _sse_chunk(event: Event, reply: Reply, structured: bool) -> bytes | None:
    if structured:
        payload = json_event(event, reply)
        return sse_json(payload) if payload else None
    if isinstance(event, TextDelta):
        return sse_data(event.text)
    if isinstance(event, ErrorEvent):
        return sse_data(f"[ERROR] {error_text(event)}")
    return None


async def _until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


# ----------------------------------------------------------------------------------------------- routes


BEARER_DESCRIPTION = "One of the tokens in CHATBOT_API_TOKENS."


def create_api(settings: Settings, upstream: Upstream, store: Store, login: LoginChecker | None = None) -> FastAPI:
    """The API as a FastAPI app (mount the Gradio app on it at ``/``; see ``app.build_server``). ``login``:
    the login page's checker, so HTTP Basic shares its throttle (one of its own otherwise)."""
    gate = Gate(settings, login if login is not None else login_checker(settings.auth))
    service = ChatService(settings, upstream, store)
    redact_logs(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await service.drain()
        await store.close()

    app = FastAPI(
        title="Switchboard API",
        version="1.0",
        summary="Chat with any OpenAI-compatible model: one reply, a stream of server-sent events, or a "
        "WebSocket (/chat/ws), with conversations kept on the server.",
        description="Authentication: when CHATBOT_API_TOKENS is set, send `Authorization: Bearer <token>`; "
        "when a login (CHATBOT_AUTH) is set, its user and password as HTTP Basic are accepted too. "
        "Errors are `{\"error\": {\"code\", \"message\"}}` with a 4xx status (503 when the conversation "
        "store is down; 429/502/504 when the provider failed).\n\n"
        "**WebSocket `/chat/ws`** (not listed below: OpenAPI has no WebSockets): send "
        "`{\"message\", \"model\", \"conversation_id\"}` as a text frame; receive `{\"type\": \"start\", "
        "\"conversation_id\", \"model\"}`, then the same JSON events as `POST /chat/stream?format=json` "
        "(delta, reasoning, usage, error), ending with `done`. Send `{\"type\": \"stop\"}` to stop a reply "
        "(its `done` has `\"stopped\": true`). A request that cannot start gets "
        "`{\"type\": \"error\", \"status\", \"code\", \"message\"}` and the socket stays open.",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
        separate_input_output_schemas=False,
    )
    app.state.chat_service = service
    app.add_middleware(ApiGate, gate=gate, max_body_bytes=settings.max_body_bytes)

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> Response:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        return _validation_error(exc, request.headers.get("content-type")).response()

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {status_for(code): code for code in ("not_found", "method_not_allowed")}
        message = {405: f"{request.method} is not allowed on {request.url.path}."}.get(
            exc.status_code, str(exc.detail)
        )
        error = ApiError(exc.status_code, codes.get(exc.status_code, "http_error"), message)
        response = error.response()
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    def owner_of(request: Request) -> str:
        return request.state.switchboard_owner

    def visitor_of(request: Request) -> Visitor:
        peer = request.client.host if request.client else None
        return service.visitor(owner_of(request), peer, request.headers, request.state.switchboard_user)

    # Auth happens in ApiGate (before the body is read): the routes only document it in the schema. (A
    # Security(HTTPBearer) dependency documents it too, but FastAPI solves it on every request: 6% of the
    # app's CPU while 200 streams start at once, py-spy.)
    secured: dict[str, Any] = {"openapi_extra": {"security": [{"HTTPBearer": []}]}}
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = default_openapi()
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["HTTPBearer"] = {"type": "http", "scheme": "bearer", "description": BEARER_DESCRIPTION}
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.include_router(metrics_router(upstream.metrics, **secured))

    @app.post(
        "/chat", response_model=ChatReply, responses=CHAT_ERROR_RESPONSES, tags=["chat"], **secured,
        summary="Send a message, get the whole reply",
    )
    async def chat(request: Request, body: ChatRequest) -> Response:
        reply = await service.begin(owner_of(request), body, visitor_of(request))
        cid = reply.turn.conversation_id

        async def consume() -> None:
            async for _ in reply.events():
                pass

        work = asyncio.ensure_future(consume())
        gone = asyncio.ensure_future(_until_disconnected(request))
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (work, gone):
                task.cancel()
            failed = await asyncio.gather(work, gone, return_exceptions=True)
        if isinstance(failed[0], Exception):  # never the client's fault: a status, a body, a log line
            log.error("POST /chat failed", exc_info=failed[0])
            raise ApiError.of("internal", render("internal"), conversation_id=cid)
        if reply.error is not None:
            error = reply.error.error
            raise ApiError.of(
                error.kind, error_text(reply.error),
                retry_after=error.retry_after, conversation_id=cid, reply=reply.reply or None,
            )
        if reply.done is None:  # the client left; nobody reads this
            return Response(status_code=499, headers={"X-Conversation-ID": cid})
        out = ChatReply(
            reply=reply.reply, conversation_id=cid, model=reply.turn.model,
            usage=UsageOut(**usage_json(reply.usage)) if reply.usage else None,
            finish_reason=reply.done.finish_reason, saved=reply.stored == "stored",
        )
        return JSONResponse(out.model_dump(), headers={"X-Conversation-ID": cid})

    @app.post(
        "/chat/stream", tags=["chat"], **secured,
        summary="Send a message, stream the reply as server-sent events",
        responses={
            200: {
                "description": "Plain: `data: <text>` per delta (multi-line data for newlines), "
                "`data: [ERROR] <message>`, then `data: [DONE]`. With format=json: "
                '`data: {"type": "delta" | "reasoning" | "usage" | "error" | "done", ...}`.',
                "content": {"text/event-stream": {"schema": {
                    "type": "object",
                    "description": "One event; `data` is the event's data lines joined with a newline.",
                    "properties": {"data": {"type": "string"}},
                    "required": ["data"],
                }}},
                "headers": {"X-Conversation-ID": {"schema": {"type": "string"}}},
            },
            **CHAT_ERROR_RESPONSES,
        },
    )
    async def chat_stream(
        request: Request,
        body: ChatRequest,
        format: Literal["text", "json"] = Query(
            "text", description="text: the tutorial's plain events; json: typed JSON events."
        ),
    ) -> StreamingResponse:
        reply = await service.begin(owner_of(request), body, visitor_of(request))
        return _EventStream(
            sse_stream(reply, structured=format == "json"),
            reply,
            headers={
                "X-Conversation-ID": reply.turn.conversation_id,
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            },
        )

    @app.get("/models", response_model=ModelsOut, responses=ERROR_RESPONSES, tags=["models"], **secured)
    async def models() -> ModelsOut:
        """The models offered: the tutorial's name-to-id map, and each model's context window and prices."""
        return service.models()

    conversation_id_path = Path(description="The id returned as conversation_id / X-Conversation-ID.")

    @app.get(
        "/conversations/{conversation_id}", response_model=ConversationOut, tags=["conversations"],
        responses={**ERROR_RESPONSES, 404: {"model": ErrorOut, "description": "No such conversation."}},
        **secured,
    )
    async def get_conversation(
        request: Request, conversation_id: str = conversation_id_path
    ) -> ConversationOut:
        """The stored messages, oldest first. Stored history is never trimmed."""
        found = await service.conversation(owner_of(request), conversation_id)
        return ConversationOut(
            conversation_id=found.id, created_at=_iso(found.created_at), updated_at=_iso(found.updated_at),
            messages=[
                MessageOut(
                    role=m.role, content=m.content, status=m.status, created_at=_iso(m.created_at),  # type: ignore[arg-type]
                    model=m.model, error=m.error, finish_reason=m.finish_reason,
                    usage=UsageOut(**m.usage) if m.usage else None,
                )
                for m in found.messages
            ],
        )

    @app.delete(
        "/conversations/{conversation_id}", status_code=204, tags=["conversations"],
        responses={**ERROR_RESPONSES, 404: {"model": ErrorOut, "description": "No such conversation."}},
        **secured,
    )
    async def delete_conversation(request: Request, conversation_id: str = conversation_id_path) -> Response:
        """Delete a conversation and all its messages."""
        try:
            deleted = await store.delete(conversation_id, owner_of(request))
        except StoreError as exc:
            raise _store_down("deleted", exc) from None
        if not deleted:
            raise ApiError.of(
                "unknown_conversation",
                f"There is no conversation “{_printable(conversation_id, 40)}” for this token.",
            )
        return Response(status_code=204)

    @app.websocket("/chat/ws")
    async def chat_ws(websocket: WebSocket) -> None:
        await WebSocketChat(service, gate, websocket).run()

    return app


class _EventStream(StreamingResponse):
    """A streaming response that always closes its body (Starlette leaves a body that was cancelled
    between two chunks suspended, which would keep the upstream open until garbage collection) and
    stores the reply even when the client left before the body started."""

    def __init__(self, content: AsyncGenerator[bytes, None], reply: Reply, headers: dict[str, str]) -> None:
        super().__init__(content, media_type="text/event-stream", headers=headers)
        self._events = content
        self.reply = reply

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await self._events.aclose()
            finally:
                if not self.reply.saved:
                    await self.reply.save()


# -------------------------------------------------------------------------------------------- WebSocket


class WebSocketChat:
    """One WebSocket connection: requests in, JSON events out, ``{"type": "stop"}`` stops the reply."""

    def __init__(self, service: ChatService, gate: Gate, websocket: WebSocket) -> None:
        self.service = service
        self.gate = gate
        self.ws = websocket
        self._send_lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._reply: Reply | None = None
        self._stopping = False

    async def run(self) -> None:
        try:
            origin = self.ws.headers.get("origin")
            host = self.ws.headers.get("host", "").lower()
            if origin is not None and urlsplit(origin).netloc.lower() != host:
                # Browsers let any page open a WebSocket to localhost (no CORS): refuse other pages.
                raise ApiError.of("cross_origin", "WebSocket connections from other web pages are refused.")
            peer = self.ws.client.host if self.ws.client else None
            caller = self.gate.caller(self.ws.headers, peer)
        except ApiError as exc:
            await self._deny(exc)
            return
        owner = caller.owner
        visitor = self.service.visitor(owner, peer, self.ws.headers, caller.user)
        await self.ws.accept()
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                raw = message.get("text")
                if raw is None:
                    raw = (message.get("bytes") or b"").decode("utf-8", "replace")
                await self._handle(owner, visitor, raw)
        except WebSocketDisconnect:
            pass
        finally:
            await self._cancel("disconnected")

    async def _deny(self, exc: ApiError) -> None:
        if "websocket.http.response" in self.ws.scope.get("extensions", {}):
            await self.ws.send_denial_response(exc.response())
        else:  # pragma: no cover - servers without the denial extension
            await self.ws.close(code=1008, reason=exc.message[:120])

    async def _send(self, payload: dict[str, Any]) -> None:
        async with self._send_lock:
            if self.ws.application_state == WebSocketState.CONNECTED:
                await self.ws.send_text(json.dumps(payload, ensure_ascii=False))

    async def _error(self, exc: ApiError) -> None:
        await self._send({"type": "error", "status": exc.status, **exc.body()["error"]})

    async def _handle(self, owner: str, visitor: Visitor, raw: str) -> None:
        if len(raw) > self.service.settings.max_body_bytes:
            await self._error(
                ApiError.of("body_too_large", "The message is larger than CHATBOT_MAX_BODY_BYTES.")
            )
            return
        try:
            data = json.loads(raw)
        except ValueError as exc:
            await self._error(ApiError.of("invalid_json", f"Not valid JSON ({type(exc).__name__})."))
            return
        if isinstance(data, dict) and data.get("type") == "stop":
            await self._cancel("stopped")
            return
        if self._task is not None and not self._task.done():
            await self._error(ApiError.of(
                "busy",
                'A reply is still streaming on this socket: wait for "done" or send {"type": "stop"}.',
            ))
            return
        try:
            request = ChatRequest.model_validate(data)
            reply = await self.service.begin(owner, request, visitor)
        except ValidationError as exc:
            await self._error(_validation_error(exc, "application/json"))
            return
        except ApiError as exc:
            await self._error(exc)
            return
        self._reply = reply
        self._stopping = False
        self._task = asyncio.create_task(self._stream(reply))

    async def _stream(self, reply: Reply) -> None:
        turn = reply.turn
        await self._send({"type": "start", "conversation_id": turn.conversation_id, "model": turn.model})
        try:
            async with contextlib.aclosing(reply.events()) as events:
                async for event in events:
                    payload = json_event(event, reply)
                    if payload is not None:
                        await self._send(payload)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            await self._send(done_event(reply, stopped=True))
            return
        except (WebSocketDisconnect, OSError) as exc:  # the socket went away: the reply is stored regardless
            log.info("websocket closed mid-reply: %s", type(exc).__name__)
            return
        except Exception:  # a bug: the reply is stored regardless, the operator gets the traceback
            log.exception("websocket reply failed")
            return
        unsaved = reply.not_saved()
        if unsaved is not None:
            await self._send(json_event(unsaved, reply) or {})
        await self._send(done_event(reply))

    async def _cancel(self, reason: str) -> None:
        task, reply = self._task, self._reply
        if task is None or task.done() or reply is None:
            return
        reply.cancel_reason = reason
        self._stopping = reason == "stopped"
        task.cancel()
        await asyncio.wait({task})
