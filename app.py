"""Switchboard: wiring and launch only. Run ``python app.py --help`` for the settings."""

from __future__ import annotations

import gc
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Sequence

# Gradio's analytics and version check phone home at import and launch: off before gradio is imported,
# so the app neither waits on nor leaks to the network.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from chatbot.core.settings import ConfigError, Settings  # noqa: E402 - light: imports neither Gradio nor the SDK


def load_settings(argv: Sequence[str]) -> Settings:
    """The settings from ``argv``, the environment and .env; ``--help`` prints the flags and exits 0, a bad
    value exits 2 with one line on stderr."""
    try:
        return Settings.load(argv)
    except ConfigError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    # ``python app.py``: the settings are read (and --help or a bad value answered) before Gradio and the
    # SDK are imported, which takes seconds on a loaded machine; main() below runs with them.
    STARTUP_SETTINGS: Settings | None = load_settings(sys.argv[1:])

import gradio as gr  # noqa: E402
import openai  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from starlette.middleware import Middleware  # noqa: E402

from chatbot.compat import (  # noqa: E402
    cache_component_signatures,
    enforce_path_checks,
    gradio_closer,
    limit_queue_threads,
    quiet_event_failures,
    warm_up_gradio,
)
from chatbot.compat_chat import calmer_queue, lazy_session_configs  # noqa: E402
from chatbot.core.demo import demo_http_client  # noqa: E402
from chatbot.core.errors import render  # noqa: E402
from chatbot.core.i18n import language_of  # noqa: E402
from chatbot.core.models_live import LiveModels  # noqa: E402
from chatbot.core.store import Store, StoreError, check_redis, open_store  # noqa: E402
from chatbot.core.tokens import ensure_offline_encodings  # noqa: E402
from chatbot.core.upstream import Upstream, make_client  # noqa: E402
from chatbot.http.access import LoginChecker, LoginClient, login_checker  # noqa: E402
from chatbot.http.health import health_router  # noqa: E402
from chatbot.http.routes import create_api  # noqa: E402
from chatbot.web import assets  # noqa: E402
from chatbot.web.a11y import page_theme  # noqa: E402
from chatbot.web.labels import gradio_i18n  # noqa: E402
from chatbot.web.page import build_page  # noqa: E402
from chatbot.web.sessions import SessionReaper  # noqa: E402
from chatbot.web.ui import ChatUI  # noqa: E402

log = logging.getLogger("switchboard")


def build(settings: Settings, client: openai.AsyncOpenAI | None = None) -> gr.Blocks:
    """The Gradio app for ``settings`` (queue configured; not launched)."""
    return _build_ui(settings, _upstream(settings, client))


def _upstream(settings: Settings, client: openai.AsyncOpenAI | None) -> Upstream:
    ensure_offline_encodings()
    if client is None:
        client = make_client(settings, http_client=demo_http_client(settings)) if settings.demo else None
    upstream = Upstream(settings, client)
    upstream.warm_up_in_background()  # tokenisers and SDK imports, off the first visitor's path
    return upstream


def _build_ui(settings: Settings, upstream: Upstream) -> gr.Blocks:
    # the provider's model list into the live catalogue, waited for at most CHATBOT_MODELS_TIMEOUT
    LiveModels(settings, upstream.catalogue).start()
    demo = build_page(ChatUI(settings, upstream))
    cache_component_signatures()
    lazy_session_configs()  # a new browser session no longer configures every block at once
    warm_up_gradio()
    # No default limit of one event at a time; no direct REST route that skips the queue. At most
    # CHATBOT_MAX_CONCURRENCY jobs at once in both assemblies (what launch(max_threads=...) does).
    limit_queue_threads(demo, settings.max_concurrency)
    demo.queue(default_concurrency_limit=None, api_open=False)
    calmer_queue(demo)  # Gradio's queue looks for events every 10 ms while none waits, not every 1 ms
    # Both assemblies (launch() and build_server's mount): Gradio's path checks on every event input, and
    # a failing event (a malformed payload) is an error for its caller and one log line, never a traceback.
    enforce_path_checks(demo)
    quiet_event_failures(demo, lambda request: render("bad_event", language_of(request)))
    return demo


def hardened(settings: Settings, login: LoginChecker | None = None) -> dict[str, object]:
    """Options for Gradio's launch / mount: errors never shown raw, no monitoring endpoint, no server-side
    rendering, nothing served from the working folder (where .env and data/ live), and the login (``login``,
    when the HTTP API shares its throttle, else a checker of its own)."""
    return {
        "show_error": False,
        "enable_monitoring": False,
        "ssr_mode": False,
        "allowed_paths": [],
        "blocked_paths": [os.path.abspath(p) for p in (".env", "data", settings.db_path, ".git")],
        "auth": login if login is not None else login_checker(settings.auth),
        "auth_message": "Sign in to chat." if settings.auth else None,
    }


def presented(settings: Settings) -> dict[str, object]:
    """Options for Gradio's launch / mount that shape the page: the interface's languages (English,
    Spanish, Portuguese, from the browser's language), the largest file a visitor may attach, the page's
    CSS and script (chatbot/web/assets.py), its theme and accessibility CSS (chatbot/web/a11y.py), and no run
    history (Gradio would keep every reply in the browser's storage and list it among a visitor's Settings)."""
    return {
        "i18n": gradio_i18n(), "max_file_size": int(settings.max_upload_mb * 1024 * 1024),
        "css": assets.css(), "head": assets.head(), "theme": page_theme(), "run_history": False,
    }


def exposure_warnings(settings: Settings) -> list[str]:
    """What to warn an operator about when the app is reachable by strangers (a share link, Spaces, or a
    non-loopback bind) while nothing caps what strangers can spend."""
    if not settings.public or settings.auth or settings.demo:
        return []
    warnings = []
    if settings.policy.daily_budget_usd is None and not settings.require_user_key:
        warnings.append(
            "this app is reachable from other machines and anyone who can open it spends your API key: only "
            "the per-visitor limits (CHATBOT_RATE_LIMIT, CHATBOT_TOKEN_LIMIT) apply. Set "
            "CHATBOT_DAILY_BUDGET_USD for a spending ceiling, CHATBOT_AUTH for a login, or "
            "CHATBOT_REQUIRE_USER_KEY=1 so visitors bring their own keys."
        )
    if not settings.policy.rate and not settings.policy.tokens and not settings.require_user_key:
        warnings.append("no per-visitor limit is set (CHATBOT_RATE_LIMIT / CHATBOT_TOKEN_LIMIT are 'none').")
    return warnings


def launch(demo: gr.Blocks, settings: Settings, **kwargs: object) -> gr.Blocks:
    """Launch with the app's settings (extra keyword arguments go to ``Blocks.launch``)."""
    options: dict[str, object] = {
        "server_name": settings.host,
        "server_port": settings.port,
        "share": settings.share,
        "max_threads": settings.max_concurrency,  # Gradio's queue runs at most this many jobs at once
        "quiet": True,
        # Closed sessions leave memory CHATBOT_SESSION_GRACE s after their tab closed, not after an hour.
        "app_kwargs": {
            "lifespan": SessionReaper(demo, settings.session_grace).lifespan,
            # the login throttle counts per client address: Gradio's login route does not pass it
            "middleware": [Middleware(LoginClient, trusted_proxies=settings.trusted_proxies)],
        },
        **hardened(settings),
        **presented(settings),
    }
    options.update(kwargs)
    demo.launch(**options)  # type: ignore[arg-type]
    if settings.share and not demo.share_url:
        print("switchboard: the share link could not be created (no route to Gradio's tunnel); "
              f"still serving locally at {demo.local_url}", file=sys.stderr)
    return demo


def build_server(
    settings: Settings, client: openai.AsyncOpenAI | None = None, store: Store | None = None
) -> FastAPI:
    """The whole app as one ASGI app: the HTTP API at the tutorial's paths (``/chat``, ``/chat/stream``,
    ``/models``, ``/conversations/{id}``, ``/chat/ws``, docs at ``/docs``) and the Gradio UI at ``/``.
    UI and API share one :class:`Upstream` (one client, one set of visitor limits). ``store`` defaults to
    the one the settings name (raises :class:`StoreError` when the SQLite file cannot be opened). Serve
    it with :func:`serve` (blocking) or :func:`serve_in_thread`; the lifespan must run (it starts
    Gradio's queue and closes the store)."""
    upstream = _upstream(settings, client)
    demo = _build_ui(settings, upstream)
    login = login_checker(settings.auth)  # one throttle for the login page and the API's HTTP Basic
    store = open_store(settings) if store is None else store
    api = create_api(settings, upstream, store, login=login)
    api.include_router(health_router(store))  # GET /healthz: the balancer's check, outside login and tokens
    app = gr.mount_gradio_app(
        api, demo, path="/", server_name=settings.host, server_port=settings.port, **hardened(settings, login),
        **presented(settings), app_kwargs={"lifespan": SessionReaper(demo, settings.session_grace).lifespan},
    )
    close_gradio = gradio_closer(app, demo)
    app.add_middleware(LoginClient, trusted_proxies=settings.trusted_proxies)  # the throttle's client address

    def closing() -> None:
        """Shutdown begins: open streams end by themselves instead of being cancelled after the grace
        period. The API's replies stop (stored as interrupted); Gradio's as in ``Blocks.close()``."""
        api.state.chat_service.close()
        close_gradio()

    app.state.switchboard_closing = closing
    return app


#: Seconds an idle HTTP connection stays open (uvicorn's default is 5).
KEEP_ALIVE_S = 75


class _Server(uvicorn.Server):
    """uvicorn that tells the app when shutdown begins, before it waits for open connections."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        closing = getattr(getattr(self.config.app, "state", None), "switchboard_closing", None)
        if closing is not None:
            closing()
        await super().shutdown(sockets)


def _server(app: FastAPI, host: str, port: int, **options: object) -> uvicorn.Server:
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, log_level="warning", access_log=False,
        # X-Forwarded-For is judged by CHATBOT_TRUSTED_PROXIES alone (chatbot/core/limits.py): uvicorn would
        # otherwise believe it from any local peer and a forged header would pick the visitor's bucket.
        proxy_headers=False,
        # An idle connection stays open longer than a balancer keeps its pooled connections to a replica
        # (haproxy purges idle ones every few seconds; deploy/nginx.conf closes them after 4 s): when the replica
        # closed first, haproxy would lose the request sent on it and close the visitor's connection unanswered.
        timeout_keep_alive=KEEP_ALIVE_S,
        lifespan="on", timeout_graceful_shutdown=3, **options,  # type: ignore[arg-type]
    )
    return _Server(config)


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("localhost" if host == "::" else host)
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"


class RunningServer:
    """A server started by :func:`serve_in_thread`: ``url`` (ends with ``/``), ``port``, ``stop()``."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, host: str, port: int) -> None:
        self.server = server
        self.thread = thread
        self.port = port
        self.url = _url(host, port)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and wait for the lifespan shutdown. Open API streams end with an ``[ERROR]`` event
        and ``[DONE]`` (their replies stored as interrupted); Gradio's streams end as in ``Blocks.close``."""
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_in_thread(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0, timeout: float = 30.0
) -> RunningServer:
    """Serve ``app`` (e.g. from :func:`build_server`) with uvicorn in a daemon thread; port 0 picks a free
    one. Returns once the server accepts connections. For tests and embedding."""
    server = _server(app, host, port)
    thread = threading.Thread(target=server.run, name=f"switchboard:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"the server did not start on {host}:{port}")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError(f"the server did not start on {host}:{port} within {timeout:g} s")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return RunningServer(server, thread, host, bound)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so; without it Nagle's algorithm
    # and the client's delayed ACK hold small SSE writes back ~40 ms (measured by bench/).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _share_link(demo_url: str, host: str, port: int) -> str | None:
    """Gradio's share tunnel to the local server, or None (printed) when it cannot be created."""
    from gradio import networking

    try:
        import secrets

        return networking.setup_tunnel(
            local_host=host if host not in ("0.0.0.0", "::") else "127.0.0.1", local_port=port,
            share_token=secrets.token_urlsafe(32), share_server_address=None,
            share_server_tls_certificate=None,
        )
    except Exception:
        print("switchboard: the share link could not be created (no route to Gradio's tunnel); "
              f"still serving locally at {demo_url}", file=sys.stderr, flush=True)
        return None


def serve(app: FastAPI, settings: Settings) -> None:
    """Serve ``app`` on the configured host and port until interrupted (what ``python app.py`` does).
    Exits with a one-line message when the port cannot be bound."""
    try:
        sock = _bind(settings.host, settings.port)
    except OSError as exc:
        print(f"switchboard: cannot listen on {settings.host}:{settings.port} ({exc.strerror or exc}); "
              "pick another port with --port or GRADIO_SERVER_PORT", file=sys.stderr)
        raise SystemExit(2) from None
    port = sock.getsockname()[1]
    url = _url(settings.host, port)
    if settings.share:
        public = _share_link(url, settings.host, port)
        if public:
            print(f"switchboard: public share link {public}", flush=True)
    server = _server(app, settings.host, port, ws_max_size=max(settings.max_body_bytes, 65_536))
    print(f"switchboard: serving on {url} (HTTP API beside it: {url}docs)", flush=True)
    server.run(sockets=[sock])


GC_YOUNG_THRESHOLD = 7_000  # ten times Python's default: fewer young collections while tokens stream


def settle_heap() -> None:
    """Once the app is built: move everything alive (Gradio, the SDK, the app) out of the collector's
    view with ``gc.freeze()`` and collect the young generation less often. Without it, 200 chats through
    the UI then 200 through the HTTP API cost 20 full collections of the whole heap (3.5 s of CPU, up to
    318 ms each, every request waiting; measured with gc.callbacks), and the HTTP burst's TTFT p99 went
    from 853 ms on a fresh app to 1,630 ms."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def main(argv: Sequence[str] | None = None, settings: Settings | None = None) -> None:
    """``python app.py``: serve with ``settings`` (default: read from ``argv``, the environment and .env)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2"):  # one line per request is noise, and URLs belong to the operator
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if settings is None:
        settings = load_settings(sys.argv[1:] if argv is None else argv)
    if settings.demo:
        log.info("no API key configured: demo mode (offline simulator). See README.md to connect a provider.")
    else:
        log.info("provider %s at %s", settings.provider or "openai", settings.base_url)
    for warning in exposure_warnings(settings):
        print(f"switchboard: WARNING: {warning}", file=sys.stderr, flush=True)
    try:
        check_redis(settings)
        app = build_server(settings)
    except StoreError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    settle_heap()
    serve(app, settings)


if __name__ == "__main__":
    main(settings=STARTUP_SETTINGS)
