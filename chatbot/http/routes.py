"""The HTTP API of the tutorial Switchboard grew from, on the same chat core as the Gradio UI.

Routes (all JSON unless said otherwise; the OpenAPI schema is at ``/openapi.json``, the docs at ``/docs``):

- ``POST /chat``: one reply, ``{"reply", "conversation_id", "model", "usage"}``.
- ``POST /chat/stream``: ``text/event-stream``. Plain (the tutorial's format): each text delta is one event
  whose lines are ``data:`` lines (so a reply with newlines arrives intact: join the lines of one event
  with ``"\\n"``, as EventSource does), failures are ``data: [ERROR] <message>``, ``data: [DONE]`` is last.
  With ``?format=json`` each event is ``data: {"type": "delta" | "reasoning" | "usage" | "error" | "done"}``.
- ``GET /models``, ``GET /conversations/{id}``, ``DELETE /conversations/{id}``.
- ``POST /compare/stream`` and ``WS /compare/ws``: one message to several models (:mod:`chatbot.http.compare_api`).
- ``WS /chat/ws``: send ``{"message", "model", "conversation_id"}``, receive the JSON events (after a
  ``start`` event), send ``{"type": "stop"}`` to stop a reply midway (:mod:`chatbot.http.websocket`).

Who may call them: :mod:`chatbot.http.gate`. Bad input is a 4xx with ``{"error": {"code", "message"}}``
(:mod:`chatbot.http.problems`) and never reaches the upstream; a body over ``CHATBOT_MAX_BODY_BYTES`` is
refused by FastAPI's own limit while it is read, before it is parsed. Storage and streaming:
:class:`chatbot.http.service.ChatService`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Path, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from chatbot.core.errors import render, status_for
from chatbot.core.limits import Visitor
from chatbot.core.redact import redact_logs
from chatbot.core.settings import Settings
from chatbot.core.store import Store, StoreError
from chatbot.core.upstream import Upstream
from chatbot.http.access import LoginChecker, login_checker
from chatbot.http.compare_api import COMPARE_RESPONSES, compare_stream
from chatbot.http.compare_ws import compare_ws
from chatbot.http.gate import ApiGate, Gate
from chatbot.http.metrics import metrics_router
from chatbot.http.problems import ApiError, body_too_large, printable, store_down, validation_error
from chatbot.http.schemas import (
    CHAT_ERROR_RESPONSES,
    CONVERSATION_ERROR_RESPONSES,
    ERROR_RESPONSES,
    ChatReply,
    ChatRequest,
    ConversationOut,
    MessageOut,
    ModelsOut,
    UsageOut,
)
from chatbot.http.service import ChatService, Reply
from chatbot.http.sse import EventStream, error_text, usage_json, while_connected
from chatbot.http.sse import iso as _iso
from chatbot.http.websocket import WebSocketChat

log = logging.getLogger("switchboard.api")

BEARER_DESCRIPTION = "One of the tokens in CHATBOT_API_TOKENS."
SUMMARY = (
    "Chat with any OpenAI-compatible model: one reply, a stream of server-sent events, or a WebSocket "
    "(/chat/ws), with conversations kept on the server."
)
DESCRIPTION = (
    "Authentication: when CHATBOT_API_TOKENS is set, send `Authorization: Bearer <token>`; "
    "when a login (CHATBOT_AUTH) is set, its user and password as HTTP Basic are accepted too. "
    "Errors are `{\"error\": {\"code\", \"message\"}}` with a 4xx status (503 when the conversation "
    "store is down; 429/502/504 when the provider failed).\n\n"
    "**WebSocket `/chat/ws`** (not listed below: OpenAPI has no WebSockets): send "
    "`{\"message\", \"model\", \"conversation_id\"}` as a text frame; receive `{\"type\": \"start\", "
    "\"conversation_id\", \"model\"}`, then the same JSON events as `POST /chat/stream?format=json` "
    "(delta, reasoning, usage, error), ending with `done`. Send `{\"type\": \"stop\"}` to stop a reply "
    "(its `done` has `\"stopped\": true`). A request that cannot start gets "
    "`{\"type\": \"error\", \"status\", \"code\", \"message\"}` and the socket stays open."
)
STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
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
}
# Auth happens in ApiGate (before the body is read): the routes only document it in the schema. (A
# Security(HTTPBearer) dependency documents it too, but FastAPI solves it on every request: 6% of the
# app's CPU while 200 streams start at once, py-spy.) A route that must answer anyone says security: [].
SECURED: dict[str, Any] = {"openapi_extra": {"security": [{"HTTPBearer": []}]}}


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
        title="Switchboard API", version="1.0", summary=SUMMARY, description=DESCRIPTION,
        docs_url="/docs", redoc_url=None, openapi_url="/openapi.json", lifespan=lifespan,
        separate_input_output_schemas=False,
    )
    app.state.chat_service = service
    app.state.api_gate = gate
    app.add_middleware(ApiGate, gate=gate, api=app)
    _add_error_handlers(app)
    _add_bearer_scheme(app)
    _add_routes(app, settings.max_body_bytes)
    app.include_router(metrics_router(upstream.metrics, **SECURED))
    return app


# --------------------------------------------------------------------------------------------- assembly


def _add_error_handlers(app: FastAPI) -> None:
    # Starlette types a handler as taking any Exception; each here is registered for its own class only.
    app.add_exception_handler(ApiError, _on_api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _on_invalid)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _on_http_error)  # type: ignore[arg-type]


async def _on_api_error(request: Request, exc: ApiError) -> Response:
    return exc.response()


async def _on_invalid(request: Request, exc: RequestValidationError) -> Response:
    return validation_error(exc, request.headers.get("content-type")).response()


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Starlette's and FastAPI's own refusals in the API's shape (413: FastAPI's body-size limit)."""
    if exc.status_code == 413:
        return body_too_large(_service(request).settings.max_body_bytes).response()
    codes = {status_for(code): code for code in ("not_found", "method_not_allowed")}
    message = {405: f"{request.method} is not allowed on {request.url.path}."}.get(
        exc.status_code, str(exc.detail)
    )
    response = ApiError(exc.status_code, codes.get(exc.status_code, "http_error"), message).response()
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


def _add_bearer_scheme(app: FastAPI) -> None:
    """The schema names the bearer scheme the routes declare (:data:`SECURED`)."""
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = default_openapi()  # kept by FastAPI as app.openapi_schema
        schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes["HTTPBearer"] = {"type": "http", "scheme": "bearer", "description": BEARER_DESCRIPTION}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _add_routes(app: FastAPI, max_body_bytes: int) -> None:
    """The routes. Those that take a body read it under FastAPI's ``max_body_size`` (a 413 while it is
    read, before parsing); the gate has checked the caller before that."""
    app.post(
        "/chat", response_model=ChatReply, responses=CHAT_ERROR_RESPONSES, tags=["chat"], **SECURED,
        summary="Send a message, get the whole reply", max_body_size=max_body_bytes,
    )(chat)
    app.post(
        "/chat/stream", tags=["chat"], **SECURED, responses=STREAM_RESPONSES, max_body_size=max_body_bytes,
        summary="Send a message, stream the reply as server-sent events",
    )(chat_stream)
    app.get("/models", response_model=ModelsOut, responses=ERROR_RESPONSES, tags=["models"], **SECURED)(models)
    conversations: dict[str, Any] = {
        "tags": ["conversations"], "responses": CONVERSATION_ERROR_RESPONSES, **SECURED,
    }
    app.get("/conversations/{conversation_id}", response_model=ConversationOut, **conversations)(
        get_conversation
    )
    app.delete("/conversations/{conversation_id}", status_code=204, **conversations)(delete_conversation)
    app.websocket("/chat/ws")(chat_ws)
    app.post(  # Compare (chatbot.http.compare_api): the response model is documented, the route answers either way
        "/compare/stream", tags=["compare"], **SECURED, responses=COMPARE_RESPONSES, max_body_size=max_body_bytes,
        summary="Send a message to several models, stream their replies together", response_model=None,
    )(compare_stream)
    app.websocket("/compare/ws")(compare_ws)


# ----------------------------------------------------------------------------------------------- routes


def _service(request: Request) -> ChatService:
    return request.app.state.chat_service


def _owner(request: Request) -> str:
    """The owner the gate found for this request (:class:`chatbot.http.gate.ApiGate`)."""
    return request.state.switchboard_owner


def _visitor(request: Request) -> Visitor:
    peer = request.client.host if request.client else None
    user = request.state.switchboard_user
    return _service(request).visitor(_owner(request), peer, request.headers, user)


async def chat(request: Request, body: ChatRequest) -> Response:
    reply = await _service(request).begin(_owner(request), body, _visitor(request))
    cid = reply.turn.conversation_id
    failure = await _run_while_connected(request, reply)
    if failure is not None:  # never the client's fault: a status, a body, a log line
        log.error("POST /chat failed", exc_info=failure)
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


async def _run_while_connected(request: Request, reply: Reply) -> BaseException | None:
    """Run the reply to its end, or until the client leaves (which cancels it); the reply's own failure
    (a bug: failures of the provider are events) is returned."""

    async def consume() -> None:
        async for _ in reply.events():
            pass

    work = await while_connected(request, consume())
    failed = None if work.cancelled() else work.exception()
    return failed if isinstance(failed, Exception) else None


async def chat_stream(
    request: Request,
    body: ChatRequest,
    format: Literal["text", "json"] = Query(
        "text", description="text: the tutorial's plain events; json: typed JSON events."
    ),
) -> StreamingResponse:
    reply = await _service(request).begin(_owner(request), body, _visitor(request))
    return EventStream(
        reply,
        structured=format == "json",
        headers={
            "X-Conversation-ID": reply.turn.conversation_id,
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        },
    )


async def models(request: Request) -> ModelsOut:
    """The models offered: the tutorial's name-to-id map, and each model's context window and prices."""
    return _service(request).models()


CONVERSATION_ID = Path(description="The id returned as conversation_id / X-Conversation-ID.")


async def get_conversation(request: Request, conversation_id: str = CONVERSATION_ID) -> ConversationOut:
    """The stored messages, oldest first. Stored history is never trimmed."""
    found = await _service(request).conversation(_owner(request), conversation_id)
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


async def delete_conversation(request: Request, conversation_id: str = CONVERSATION_ID) -> Response:
    """Delete a conversation and all its messages."""
    try:
        deleted = await _service(request).store.delete(conversation_id, _owner(request))
    except StoreError as exc:
        log.exception("could not delete a conversation")  # the operator's store is down: say why
        raise store_down("deleted", exc) from None
    if not deleted:
        raise ApiError.of(
            "unknown_conversation",
            f"There is no conversation “{printable(conversation_id, 40)}” for this token.",
        )
    return Response(status_code=204)


async def chat_ws(websocket: WebSocket) -> None:
    state = websocket.app.state
    await WebSocketChat(state.chat_service, state.api_gate, websocket).run()
