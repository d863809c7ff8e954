"""A local fake OpenAI-compatible upstream for tests.

`FakeUpstream` serves a small Starlette app with uvicorn in a background thread on
``127.0.0.1`` and a free port.  The real ``openai`` SDK (``AsyncOpenAI(base_url=fake.base_url)``)
talks to it over real HTTP/1.1; streams are real SSE, byte-for-byte shaped like OpenAI's::

    data: {"id":"chatcmpl-fake-1","object":"chat.completion.chunk",...}\\n\\n
    ...
    data: [DONE]\\n\\n

Endpoints
    ``POST /v1/chat/completions`` (``stream`` true or false) and ``GET /v1/models``. With ``fake.shape`` set
    to one of `SERVER_SHAPES`, ``/v1/models`` lists bare entries as that local server does and the server's
    own window route answers with ``fake.window``: ``GET /props`` (llama.cpp), ``GET /api/v0/models`` (LM
    Studio), ``POST /api/show`` (Ollama); vLLM puts ``max_model_len`` in the list; llama-cpp-python says it
    nowhere. The window routes 404 for every other shape; ``fake.window_calls`` records their paths.

Scripting
    ``fake.push(Behaviour(...))`` (or ``fake.push(status=429)``) queues behaviours consumed one per
    chat request, FIFO; with an empty queue ``fake.default`` is used.  Magic ``[[key=value]]`` tags in
    the last user message are applied on top (for browser tests that can only type text), e.g.
    ``"hi [[status=429]] [[retry_after=2]]"``, ``[[cut=3]]``, ``[[stall=30]]``, ``[[delay=0.05]]``,
    ``[[error_chunk=2]]``, ``[[reasoning=let me think]]``, ``[[reply_lines=40]]``, ``[[reply=exact text]]``.
    Keys are `Behaviour` field names or the aliases in ``MAGIC_ALIASES``; values are converted to the
    field's type (``none``/``null`` gives None for optional fields).  An unknown key gives a 400 with
    error type ``fake_upstream_error``.  Tags are stripped from the text echoed by the default reply.

How misbehaviour looks to the openai SDK (openai 3.57 / httpx2, verified in test_fake_upstream.py)
    * ``status=...``: the SDK raises the status class (400 `BadRequestError`, 401 `AuthenticationError`,
      403 `PermissionDeniedError`, 404 `NotFoundError`, 429 `RateLimitError`, >=500
      `InternalServerError`, anything else such as 402/413 plain `APIStatusError`) from ``create()``.
    * ``cut_after=N``: N content chunks arrive, then the server aborts the response (uvicorn closes
      the socket mid chunked body, no ``[DONE]``).  Iteration raises ``openai.APIConnectionError``
      whose ``__cause__`` is ``httpx2.RemoteProtocolError`` ("peer closed connection without sending
      complete message body ...").
    * ``error_chunk_after=N``: N content chunks arrive, then an OpenRouter-style in-band
      ``data: {"error": {"message": ..., "code": 502}}`` and the body ends (HTTP 200, no ``[DONE]``).
      Iteration raises ``openai.APIError`` (the base class itself, not an `APIStatusError`), with
      ``exc.body == {"message": ..., "code": 502}``.

Recording
    Every chat request appends a `Record` to ``fake.requests`` (``fake.last`` is the newest).  A client
    that goes away mid-stream (also during ``stall_before_first``, when only headers and an SSE comment
    have been sent) gets ``record.disconnected_at`` set: Starlette's StreamingResponse listens for
    ``http.disconnect`` concurrently (uvicorn h11 reports ASGI spec 2.3) and cancels the generator.
    Measured latency from closing the client stream to ``disconnected_at``: median ~0.3 ms, max ~1 ms
    (stalled, mid-stream, and non-stream stall with a client timeout alike).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import json
import logging
import re
import socket
import threading
import time
import types
import typing
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

__all__ = [
    "DEFAULT_MODELS",
    "SERVER_SHAPES",
    "MAGIC_ALIASES",
    "Behaviour",
    "FakeUpstream",
    "Record",
    "parse_magic",
]

T = TypeVar("T")

#: The local servers whose model list and window route ``fake.shape`` imitates.
SERVER_SHAPES = ("vllm", "lmstudio", "ollama", "llamacpp", "llama-cpp-python")

DEFAULT_MODELS: list[dict[str, Any]] = [
    {"id": "fake/small", "context_length": 8192},
    {"id": "fake/large", "context_length": 131072},
]

DEFAULT_PRICING: dict[str, str] = {"prompt": "0.000001", "completion": "0.000002"}


@dataclass
class Behaviour:
    """How the fake answers one chat request.  Every field has a harmless default."""

    reply: str | None = None
    """Text to send; None means ``"Hello from {model}: you said {last user message}"``."""
    reply_lines: int | None = None
    """If set (and ``reply`` is None) reply with N lines ``"Line i of N."`` (for scrolling UIs)."""
    chunk_size: int = 4
    """Characters per content (and reasoning) delta."""
    delay: float = 0.0
    """Seconds slept before every delta except the first."""
    tokens_per_second: float | None = None
    """Alternative pacing: one delta is one token; overrides ``delay`` when set."""
    status: int | None = None
    """Answer with this HTTP error status and an OpenAI-style JSON error body (stream or not)."""
    error_code: str | None = None
    """``error.code`` in the body (defaults per status; use "context_length_exceeded" with 400)."""
    error_message: str | None = None
    error_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    """Extra response headers, e.g. ``{"Retry-After": "2"}`` (sent on errors and successes)."""
    echo_auth_in_errors: bool = False
    """Put the request's Authorization header into error bodies (key-leak canary tests)."""
    cut_after: int | None = None
    """Stream: after N content chunks abort the connection, no ``[DONE]``."""
    cut_before_first: bool = False
    """Stream: status and headers, then abort the connection before any byte of the body (how
    llama-cpp-python's server answers a streaming prompt longer than its window)."""
    error_chunk_after: int | None = None
    """Stream: after N content chunks send ``data: {"error": {...}}`` and end the body."""
    error_chunk_code: int = 502
    error_chunk_message: str = "Upstream provider error (fake)"
    stall_before_first: float = 0.0
    """Send headers plus an SSE comment ``: keep-alive``, then stay silent this long.
    Non-stream requests wait this long before answering."""
    reasoning: str | None = None
    """Reasoning text streamed before the content."""
    reasoning_field: str = "reasoning_content"
    """Delta field for reasoning: "reasoning_content" (DeepSeek style), "reasoning" (OpenRouter), or
    "reasoning_details" (OpenRouter's structured form: a list of ``{"type": "reasoning.text", "text"}``)."""
    think_tags: bool = False
    """Send reasoning as ``<think>...</think>`` at the start of the content instead."""
    usage: bool | None = None
    """Stream: send the final usage chunk (``choices: []``); None = iff stream_options.include_usage."""
    cost: float | None = None
    """OpenRouter-style ``usage.cost``."""
    finish_reason: str | None = "stop"
    """None: the stream ends with no ``finish_reason`` at all (no final chunk)."""
    endless: bool = False
    """Stream: after the reply, send it again and again until the client goes away (a provider that
    never stops; it also ignores ``max_tokens``, as every behaviour here does)."""
    huge_chunk: int | None = None
    """Stream: one content delta of this many characters (``"word "`` repeated) before the reply."""
    raw_body: str | None = None
    """Answer with HTTP 200 and exactly this body, with ``raw_content_type`` (an HTML page from a
    misconfigured proxy; ``""`` is llama.cpp's empty answer to an oversized streaming request)."""
    raw_content_type: str = "text/html; charset=utf-8"
    usage_completion: int | None = None
    """Report this many completion tokens whatever was sent (a provider that under-reports)."""
    honours_max_tokens: bool = False
    """Stop at the request's ``max_tokens`` (at most a quarter that many characters of the reply, which are
    fewer tokens whatever they are) with ``finish_reason`` ``length``, as OpenAI's API does; by default the
    fake ignores it, like the providers the app's own reply cap is for."""


MAGIC_ALIASES: dict[str, str] = {
    "cut": "cut_after",
    "stall": "stall_before_first",
    "error_chunk": "error_chunk_after",
    "chunk": "chunk_size",
    "tps": "tokens_per_second",
    "code": "error_code",
    "message": "error_message",
    "think": "think_tags",
    "echo_auth": "echo_auth_in_errors",
    "finish": "finish_reason",
}

_MAGIC_RE = re.compile(r"\[\[\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*?)\]\]", re.DOTALL)
_BEHAVIOUR_FIELDS = {f.name for f in dataclasses.fields(Behaviour)}
_TRUE = {"1", "true", "yes", "on", "y"}


def _convert(name: str, raw: str) -> Any:
    hint = typing.get_type_hints(Behaviour)[name]
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    optional = type(None) in args
    value = raw.strip()
    if optional and value.lower() in {"none", "null"}:
        return None
    for kind in (bool, int, float, str):
        if kind in args:
            if kind is bool:
                return value.lower() in _TRUE
            if kind is int:
                return int(float(value))
            return kind(value)
    raise ValueError(f"magic key {name!r} cannot be set from text")


def parse_magic(text: str) -> tuple[dict[str, Any], str]:
    """Parse ``[[key=value]]`` tags; return (Behaviour field overrides, text without the tags).

    ``retry_after=N`` becomes the ``Retry-After`` header.  Raises ValueError on unknown keys.
    """
    overrides: dict[str, Any] = {}
    headers: dict[str, str] = {}
    for match in _MAGIC_RE.finditer(text):
        key, raw = match.group(1).lower(), match.group(2)
        if key == "retry_after":
            headers["Retry-After"] = raw.strip()
            continue
        name = MAGIC_ALIASES.get(key, key)
        if name not in _BEHAVIOUR_FIELDS or name == "headers":
            raise ValueError(f"unknown magic key {key!r}")
        overrides[name] = raw.strip() if name in {"reply", "reasoning", "raw_body"} else _convert(name, raw)
    if headers:
        overrides["headers"] = headers
    cleaned = re.sub(r"\s{2,}", " ", _MAGIC_RE.sub("", text)).strip()
    return overrides, cleaned


@dataclass
class Record:
    """What the fake saw and did for one chat request.  Times are ``time.monotonic()``."""

    index: int
    body: Any
    headers: dict[str, str]
    received_at: float
    stream: bool = False
    behaviour: Behaviour | None = None
    status: int = 200
    first_byte_at: float | None = None
    """First response body byte (for a stall: the ``: keep-alive`` comment)."""
    first_token_at: float | None = None
    """First reasoning or content delta."""
    finished_at: float | None = None
    """The response was completed normally (an error-chunk stream counts as completed)."""
    disconnected_at: float | None = None
    """The client went away (or the server shut down) before the response was complete."""
    cut_at: float | None = None
    """The fake aborted the connection on purpose (``cut_after``)."""
    chunks_sent: int = 0
    """Content delta chunks sent."""
    reasoning_chunks_sent: int = 0
    error_chunk_sent: bool = False
    client_port: int | None = None
    """The client's TCP port: equal ports on consecutive requests mean a reused connection."""

    @property
    def model(self) -> str | None:
        return self.body.get("model") if isinstance(self.body, dict) else None

    @property
    def messages(self) -> list[Any]:
        return list(self.body.get("messages") or []) if isinstance(self.body, dict) else []


class _CutConnection(Exception):
    """Raised inside a streaming body on purpose so uvicorn aborts the connection."""


_STOPPING_THREADS: set[int] = set()
"""Idents of fake-upstream server threads being stopped (their task cancellations are expected)."""


class _HideExpectedErrors(logging.Filter):
    """Drop uvicorn's "Exception in ASGI application" for our deliberate cuts and for the
    cancellation of still-open streams when a FakeUpstream is stopped."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, _CutConnection):
            return False
        return not (isinstance(exc, asyncio.CancelledError) and record.thread in _STOPPING_THREADS)


_HIDE_EXPECTED = _HideExpectedErrors()


class _TrackedStreamingResponse(StreamingResponse):
    """StreamingResponse that reports when it opens and closes (however it ends)."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        on_open: Callable[[], None],
        on_close: Callable[[BaseException | None], None],
        status_code: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(content, status_code=status_code, headers=headers, media_type="text/event-stream")
        self._on_open = on_open
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._on_open()
        error: BaseException | None = None
        try:
            await super().__call__(scope, receive, send)
        except BaseException as exc:
            error = exc
            raise
        finally:
            self._on_close(error)
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def _last_user_text(body: Any) -> str:
    messages = body.get("messages") if isinstance(body, dict) else None
    for message in reversed(messages or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _prompt_tokens(body: Any) -> int:
    messages = body.get("messages") if isinstance(body, dict) else None
    chars = sum(len(_text_of(m.get("content"))) for m in messages or [] if isinstance(m, dict))
    return max(1, chars // 4)


def _reasoning_value(field_name: str, text: str) -> Any:
    """Reasoning as the named field carries it: a string, or OpenRouter's ``reasoning_details`` list."""
    if field_name == "reasoning_details":
        return [{"type": "reasoning.text", "text": text, "format": "unknown", "index": 0}]
    return text


def _pieces(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)]


def _endless(text: str, size: int) -> typing.Iterator[str]:
    """The pieces of ``text`` (plus a space) over and over."""
    pieces = _pieces(f"{text} ", size)
    while True:
        yield from pieces


_ERROR_DEFAULTS: dict[int, tuple[str, str | None, str]] = {
    # status: (type, code, message)
    400: ("invalid_request_error", None, "Invalid request (fake upstream)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    402: ("insufficient_quota", "insufficient_credits", "Insufficient credits (fake upstream)."),
    403: ("permission_denied", "permission_denied", "You are not allowed to use this model."),
    404: ("invalid_request_error", "model_not_found", "The model `{model}` does not exist."),
    413: ("invalid_request_error", "request_too_large", "Request entity too large."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached (fake upstream). Please retry later."),
    500: ("server_error", "server_error", "The server had an error while processing your request."),
    502: ("server_error", "bad_gateway", "Bad gateway (fake upstream)."),
    503: ("server_error", "service_unavailable", "The engine is currently overloaded."),
}

_CONTEXT_MESSAGE = (
    "This model's maximum context length is {limit} tokens. However, your messages resulted in "
    "{tokens} tokens. Please reduce the length of the messages."
)


class FakeUpstream:
    """Fake OpenAI-compatible server in a background thread.  See the module docstring.

    Use as ``with FakeUpstream() as fake:`` or ``fake = FakeUpstream().start()`` ... ``fake.stop()``.
    Attributes tests may set at any time: ``default`` (Behaviour), ``models`` (list of dicts with at
    least ``id``; or plain id strings), ``models_delay`` (seconds), ``models_status`` (error status),
    ``shape`` (None: an aggregator's list, or one of `SERVER_SHAPES`) and ``window`` (what that server reports),
    ``by_model`` (model id -> Behaviour: that model's requests get it, before the queue; for concurrent
    requests to several models, whose order a FIFO queue cannot tell apart).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.default = Behaviour()
        self.by_model: dict[str, Behaviour] = {}
        self.models: list[dict[str, Any] | str] = [copy.deepcopy(m) for m in DEFAULT_MODELS]
        self.models_delay: float = 0.0
        self.models_status: int | None = None
        self.models_calls: int = 0
        self.shape: str | None = None
        self.window: int = 4096
        self.window_calls: list[str] = []
        self.requests: list[Record] = []
        self.open_streams: int = 0
        self.max_open_streams: int = 0
        self._queue: deque[Behaviour] = deque()
        self._lock = threading.RLock()
        self._seq = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._thread_error: BaseException | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._list_models, methods=["GET"]),
                Route("/props", self._window_route, methods=["GET"]),
                Route("/api/v0/models", self._window_route, methods=["GET"]),
                Route("/api/show", self._window_route, methods=["POST"]),
            ]
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1`` (what to pass to ``AsyncOpenAI(base_url=...)``)."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> typing.Self:
        """Start serving; returns once the port accepts TCP connections."""
        if self.running:
            return self
        config = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            loop="asyncio",
            http="h11",
            ws="none",
            timeout_graceful_shutdown=1,
            # Longer than the app's pooled connections live idle (httpx's keepalive_expiry, 5 s), as a
            # provider's are: at uvicorn's default (also 5 s) the fake closed an idle connection as the app
            # reused it, and that request failed with APIConnectionError (retries are off in the tests).
            timeout_keep_alive=30,
        )
        uvicorn_error = logging.getLogger("uvicorn.error")
        if _HIDE_EXPECTED not in uvicorn_error.filters:
            uvicorn_error.addFilter(_HIDE_EXPECTED)
        # uvicorn 0.54's Server.capture_signals() is a no-op outside the main thread, so
        # server.run() in a thread installs no signal handlers.
        server = uvicorn.Server(config)
        self._server = server
        self._thread_error = None

        def run() -> None:
            try:
                server.run()
            except (Exception, SystemExit) as exc:  # uvicorn sys.exit()s when it cannot bind
                self._thread_error = exc
                logging.getLogger(__name__).exception("fake upstream server stopped with an error")

        self._thread = threading.Thread(target=run, name=f"fake-upstream:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"fake upstream failed to start: {self._thread_error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError("fake upstream did not start in time")
            time.sleep(0.005)
        self.port = server.servers[0].sockets[0].getsockname()[1]
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError("fake upstream does not accept connections") from None
                time.sleep(0.005)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server; open streams are cancelled (they record ``disconnected_at``)."""
        server, thread = self._server, self._thread
        if server is not None:
            server.should_exit = True
            server.force_exit = True
        if thread is not None and thread.ident is not None:
            _STOPPING_THREADS.add(thread.ident)
            try:
                thread.join(timeout)
            finally:
                _STOPPING_THREADS.discard(thread.ident)
        self._thread = None
        self._server = None

    def __enter__(self) -> typing.Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ scripting

    def push(self, *behaviours: Behaviour, **fields: Any) -> typing.Self:
        """Queue behaviours for the next chat requests (FIFO, one per request).

        ``fake.push(status=429)`` is short for ``fake.push(Behaviour(status=429))``.
        """
        items = list(behaviours)
        if fields:
            items.append(Behaviour(**fields))
        with self._lock:
            self._queue.extend(items)
        return self

    @property
    def queued(self) -> int:
        """Number of pushed behaviours not consumed yet."""
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        """Clear queue and records; restore default behaviour and /v1/models settings."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()
            self.default = Behaviour()
            self.by_model = {}
            self.models = [copy.deepcopy(m) for m in DEFAULT_MODELS]
            self.models_delay = 0.0
            self.models_status = None
            self.models_calls = 0
            self.shape, self.window, self.window_calls = None, 4096, []
            self.max_open_streams = self.open_streams

    @property
    def last(self) -> Record:
        """The newest chat request record (LookupError if none yet)."""
        with self._lock:
            if not self.requests:
                raise LookupError("fake upstream has not received any chat request")
            return self.requests[-1]

    def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.005) -> T:
        """Poll ``predicate()`` (blocking) until truthy; return its value.  LookupError counts as
        false (so ``lambda: fake.last.finished_at`` works before any request).  TimeoutError after
        ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(LookupError):
                value = predicate()
                if value:
                    return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            time.sleep(interval)

    async def wait_for_async(
        self, predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.005
    ) -> T:
        """Like `wait_for` but sleeps with asyncio (use inside async tests)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(LookupError):
                value = predicate()
                if value:
                    return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            await asyncio.sleep(interval)

    # ------------------------------------------------------------------ endpoints

    async def _list_models(self, request: Request) -> Response:
        with self._lock:
            self.models_calls += 1
            delay, status, models = self.models_delay, self.models_status, list(self.models)
        if delay:
            await asyncio.sleep(delay)
        if status:
            auth = request.headers.get("authorization")
            return self._error_response(Behaviour(status=status), status, None, auth, None)
        data = []
        for model in models:
            entry: dict[str, Any] = {"id": model} if isinstance(model, str) else dict(model)
            if self.shape is not None:
                data.append(self._shaped_entry(entry))
                continue
            entry.setdefault("object", "model")
            entry.setdefault("created", 1700000000)
            entry.setdefault("owned_by", "fake")
            entry.setdefault("context_length", 8192)
            entry.setdefault("pricing", dict(DEFAULT_PRICING))
            data.append(entry)
        return JSONResponse({"object": "list", "data": data})

    def _shaped_entry(self, entry: dict[str, Any]) -> dict[str, Any]:
        """A ``/v1/models`` entry as the local server of ``self.shape`` lists it."""
        entry = {"object": "model", **entry}
        if self.shape == "vllm":
            entry.setdefault("max_model_len", self.window)
        elif self.shape == "llamacpp":  # the trained window, not the one it runs with (that is in /props)
            entry.setdefault("meta", {"n_ctx_train": 131072, "n_vocab": 49152})
        elif self.shape == "llama-cpp-python":
            entry.setdefault("permissions", [])
        return entry

    async def _window_route(self, request: Request) -> Response:
        """The window routes of llama.cpp, LM Studio and Ollama (404 unless ``shape`` is that server)."""
        path = request.url.path
        with self._lock:
            self.window_calls.append(path)
            shape, window, ids = self.shape, self.window, [m if isinstance(m, str) else m["id"] for m in self.models]
        if path == "/props" and shape == "llamacpp":
            return JSONResponse({"default_generation_settings": {"n_ctx": window}, "total_slots": 1})
        if path == "/api/v0/models" and shape == "lmstudio":
            return JSONResponse({"object": "list", "data": [
                {"id": i, "type": "llm", "state": "loaded", "max_context_length": 131072,
                 "loaded_context_length": window} for i in ids]})
        if path == "/api/show" and shape == "ollama":
            body = await request.json()
            if body.get("model") in ids:
                return JSONResponse({"parameters": 'stop "<|eot_id|>"', "model_info": {
                    "general.architecture": "llama", "llama.context_length": window}})
        return JSONResponse({"error": "not found"}, status_code=404)

    def _context_length(self, model: str | None) -> int:
        for entry in self.models:
            if isinstance(entry, dict) and entry.get("id") == model:
                return int(entry.get("context_length", 8192))
        return 8192

    def _error_response(
        self, b: Behaviour, status: int, model: str | None, auth: str | None, body: Any
    ) -> JSONResponse:
        err_type, code, message = _ERROR_DEFAULTS.get(
            status,
            ("server_error" if status >= 500 else "invalid_request_error", None, "Error (fake upstream)."),
        )
        code = b.error_code or code
        if status == 400 and code == "context_length_exceeded" and not b.error_message:
            message = _CONTEXT_MESSAGE.format(limit=self._context_length(model), tokens=_prompt_tokens(body))
        message = (b.error_message or message).replace("{model}", str(model))
        error: dict[str, Any] = {
            "message": message,
            "type": b.error_type or err_type,
            "param": None,
            "code": code,
        }
        if b.echo_auth_in_errors:
            error["message"] = f"{message} (authorization: {auth})"
            error["metadata"] = {"raw": f"upstream rejected authorization {auth}"}
        return JSONResponse({"error": error}, status_code=status, headers=b.headers)

    async def _chat(self, request: Request) -> Response:
        received = time.monotonic()
        raw = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            body: Any = json.loads(raw or b"null")
        except ValueError:
            body = raw.decode(errors="replace")
        with self._lock:
            self._seq += 1
            asked = body.get("model") if isinstance(body, dict) else None
            if isinstance(asked, str) and asked in self.by_model:
                behaviour = copy.deepcopy(self.by_model[asked])
            else:
                behaviour = self._queue.popleft() if self._queue else copy.deepcopy(self.default)
            record = Record(index=self._seq, body=body, headers=headers, received_at=received)
            record.client_port = request.client.port if request.client else None
            self.requests.append(record)
        record.stream = isinstance(body, dict) and bool(body.get("stream"))
        auth = headers.get("authorization")
        if not isinstance(body, dict):
            record.status = 400
            record.finished_at = time.monotonic()
            b = Behaviour(error_message="We could not parse the JSON body of your request.")
            return self._error_response(b, 400, None, auth, body)
        model = str(body.get("model") or "fake/unknown")
        try:
            overrides, said = parse_magic(_last_user_text(body))
        except ValueError as exc:
            record.status = 400
            record.finished_at = time.monotonic()
            b = Behaviour(error_message=f"fake upstream: {exc}", error_type="fake_upstream_error")
            return self._error_response(b, 400, model, auth, body)
        if overrides:
            if "headers" in overrides:
                overrides["headers"] = {**behaviour.headers, **overrides["headers"]}
            behaviour = dataclasses.replace(behaviour, **overrides)
        record.behaviour = behaviour
        b = behaviour

        if b.status:
            if b.stall_before_first and await self._sleep_or_disconnect(request, b.stall_before_first):
                record.disconnected_at = time.monotonic()
            record.status = b.status
            record.finished_at = time.monotonic()
            return self._error_response(b, b.status, model, auth, body)

        if b.raw_body is not None:
            record.first_byte_at = record.finished_at = time.monotonic()
            return Response(b.raw_body, headers={"content-type": b.raw_content_type, **b.headers})

        if b.reply is not None:
            reply = b.reply
        elif b.reply_lines is not None:
            reply = "\n".join(f"Line {i} of {b.reply_lines}." for i in range(1, b.reply_lines + 1))
        else:
            shown = said if len(said) <= 200 else said[:200] + "..."
            reply = f"Hello from {model}: you said {shown or 'nothing'}"
        asked_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        if b.honours_max_tokens and isinstance(asked_tokens, int) and len(reply) > asked_tokens // 4:
            reply, b = reply[: max(1, asked_tokens // 4)], dataclasses.replace(b, finish_reason="length")
        reasoning = b.reasoning
        if reasoning is not None and b.think_tags:
            reply, reasoning = f"<think>{reasoning}</think>{reply}", None

        if record.stream:
            return _TrackedStreamingResponse(
                self._stream(record, b, body, model, reply, reasoning),
                on_open=self._stream_opened,
                on_close=lambda exc: self._stream_closed(record, exc),
                headers={
                    "cache-control": "no-cache",
                    "x-request-id": f"req_fake_{record.index}",
                    **b.headers,
                },
            )

        if b.stall_before_first and await self._sleep_or_disconnect(request, b.stall_before_first):
            record.disconnected_at = time.monotonic()
            return Response(status_code=499)
        record.first_byte_at = record.first_token_at = time.monotonic()
        record.chunks_sent = len(_pieces(reply, b.chunk_size))
        record.reasoning_chunks_sent = len(_pieces(reasoning or "", b.chunk_size))
        message: dict[str, Any] = {"role": "assistant", "content": reply, "refusal": None}
        if reasoning is not None:
            message[b.reasoning_field] = _reasoning_value(b.reasoning_field, reasoning)
        payload = {
            "id": f"chatcmpl-fake-{record.index}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": b.finish_reason}],
            "usage": self._usage(record, b, body),
        }
        record.finished_at = time.monotonic()
        return JSONResponse(payload, headers={"x-request-id": f"req_fake_{record.index}", **b.headers})

    # ------------------------------------------------------------------ helpers

    @staticmethod
    async def _sleep_or_disconnect(request: Request, seconds: float) -> bool:
        """Sleep; return True early if the client disconnects (body must already be read)."""

        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        watcher = asyncio.ensure_future(watch())
        try:
            done, _ = await asyncio.wait({watcher}, timeout=seconds)
            return watcher in done
        finally:
            watcher.cancel()

    @staticmethod
    def _usage(record: Record, b: Behaviour, body: Any) -> dict[str, Any]:
        prompt = _prompt_tokens(body)
        completion = record.chunks_sent + record.reasoning_chunks_sent
        if b.usage_completion is not None:
            completion = b.usage_completion
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        if record.reasoning_chunks_sent:
            usage["completion_tokens_details"] = {"reasoning_tokens": record.reasoning_chunks_sent}
        if b.cost is not None:
            usage["cost"] = b.cost
        return usage

    def _stream_opened(self) -> None:
        with self._lock:
            self.open_streams += 1
            self.max_open_streams = max(self.max_open_streams, self.open_streams)

    def _stream_closed(self, record: Record, exc: BaseException | None) -> None:
        now = time.monotonic()
        with self._lock:
            self.open_streams -= 1
        if isinstance(exc, _CutConnection):
            record.cut_at = record.cut_at or now
        elif record.finished_at is None and record.disconnected_at is None:
            record.disconnected_at = now

    async def _stream(
        self,
        record: Record,
        b: Behaviour,
        body: dict[str, Any],
        model: str,
        reply: str,
        reasoning: str | None,
    ) -> AsyncIterator[bytes]:
        chat_id = f"chatcmpl-fake-{record.index}"
        created = int(time.time())
        stream_options = body.get("stream_options")
        want_usage = isinstance(stream_options, dict) and bool(stream_options.get("include_usage"))
        include_usage = want_usage if b.usage is None else b.usage
        interval = 1.0 / b.tokens_per_second if b.tokens_per_second else b.delay

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            obj: dict[str, Any] = {
                "id": chat_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                obj["usage"] = None
            return _sse(obj)

        def sent_bytes() -> None:
            if record.first_byte_at is None:
                record.first_byte_at = time.monotonic()

        async def pace() -> None:
            if record.first_token_at is None:
                record.first_token_at = time.monotonic()
            elif interval > 0:
                await asyncio.sleep(interval)

        if b.stall_before_first > 0:
            sent_bytes()
            yield b": keep-alive\n\n"
            await asyncio.sleep(b.stall_before_first)

        if b.cut_before_first:
            record.cut_at = time.monotonic()
            raise _CutConnection("fake upstream cut the stream before its first byte")
        sent_bytes()
        yield chunk({"role": "assistant", "content": ""})

        for piece in _pieces(reasoning or "", b.chunk_size):
            await pace()
            record.reasoning_chunks_sent += 1
            yield chunk({"content": None, b.reasoning_field: _reasoning_value(b.reasoning_field, piece)})

        if b.huge_chunk:
            await pace()
            record.chunks_sent += 1
            yield chunk({"content": ("word " * (b.huge_chunk // 5 + 1))[: b.huge_chunk]})

        for piece in _pieces(reply, b.chunk_size) if not b.endless else _endless(reply, b.chunk_size):
            if b.cut_after is not None and record.chunks_sent >= b.cut_after:
                break
            if b.error_chunk_after is not None and record.chunks_sent >= b.error_chunk_after:
                break
            await pace()
            if b.endless:
                await asyncio.sleep(0)  # let a disconnect be noticed, however fast it sends
            record.chunks_sent += 1
            yield chunk({"content": piece})

        if b.cut_after is not None:
            record.cut_at = time.monotonic()
            raise _CutConnection(f"fake upstream cut the stream after {record.chunks_sent} chunks")
        if b.error_chunk_after is not None:
            record.error_chunk_sent = True
            yield _sse({"error": {"message": b.error_chunk_message, "code": b.error_chunk_code}})
            record.finished_at = time.monotonic()
            return

        if b.finish_reason is not None:
            yield chunk({}, b.finish_reason)
        if include_usage:
            usage_chunk = {
                "id": chat_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [],
                "usage": self._usage(record, b, body),
            }
            yield _sse(usage_chunk)
        yield b"data: [DONE]\n\n"
        record.finished_at = time.monotonic()
