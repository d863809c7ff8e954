"""Switchboard: wiring and launch only. Run ``python app.py --help`` for the settings."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

# Gradio's analytics and version check phone home at import and launch: off before gradio is imported,
# so the app neither waits on nor leaks to the network.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import openai  # noqa: E402

from chatbot.config import ConfigError, Settings  # noqa: E402
from chatbot.demo import demo_http_client  # noqa: E402
from chatbot.tokens import ensure_offline_encodings  # noqa: E402
from chatbot.ui import ChatUI  # noqa: E402
from chatbot.upstream import Upstream, make_client  # noqa: E402

log = logging.getLogger("switchboard")


def build(settings: Settings, client: openai.AsyncOpenAI | None = None) -> gr.Blocks:
    """The Gradio app for ``settings`` (queue configured; not launched)."""
    ensure_offline_encodings()
    if client is None:
        client = make_client(settings, http_client=demo_http_client(settings)) if settings.demo else None
    upstream = Upstream(settings, client)
    demo = ChatUI(settings, upstream).build()
    # No default limit of one event at a time; no direct REST route that skips the queue.
    demo.queue(default_concurrency_limit=None, api_open=False)
    return demo


def launch(demo: gr.Blocks, settings: Settings, **kwargs: object) -> gr.Blocks:
    """Launch with the app's settings (extra keyword arguments go to ``Blocks.launch``)."""
    options: dict[str, object] = {
        "server_name": settings.host,
        "server_port": settings.port,
        "share": settings.share,
        "max_threads": settings.max_concurrency,  # Gradio's queue runs at most this many jobs at once
        "show_error": False,
        "enable_monitoring": False,
        "ssr_mode": False,
        "quiet": True,
    }
    options.update(kwargs)
    demo.launch(**options)  # type: ignore[arg-type]
    if settings.share and not demo.share_url:
        print("switchboard: the share link could not be created (no route to Gradio's tunnel); "
              f"still serving locally at {demo.local_url}", file=sys.stderr)
    return demo


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpx2"):  # one line per request is noise, and URLs belong to the operator
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = Settings.load(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"switchboard: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if settings.demo:
        log.info("no API key configured: demo mode (offline simulator). See README.md to connect a provider.")
    else:
        log.info("provider %s at %s", settings.provider or "openai", settings.base_url)
    demo = build(settings)
    launch(demo, settings, quiet=False, prevent_thread_lock=True)
    print(f"switchboard: serving on {demo.local_url}", flush=True)
    demo.block_thread()


if __name__ == "__main__":
    main()
