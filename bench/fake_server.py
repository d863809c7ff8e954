"""The fake upstream (``tests/fake_upstream.py``) in a process of its own, with a control route.

The benchmark runs the fake in a separate process so that the fake's CPU does not share a GIL with the
benchmark's own clients (the upstream floor in particular). ``python -m bench.fake_server`` prints its base URL
on stdout and serves until stdin closes or it is terminated.

Control routes (JSON):
    ``POST /_bench/behaviour`` ``{"reply_tokens", "chunk_size", "tokens_per_second", "delay"}``: clear the
    fake's records and queue and set its default behaviour (a reply of exactly ``reply_tokens`` chunks).
    ``GET /_bench/state``: ``{"open_streams", "requests"}``.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.fake_upstream import Behaviour, FakeUpstream  # noqa: E402


def reply_text(tokens: int, chunk_size: int) -> str:
    """A reply of exactly ``tokens`` chunks of ``chunk_size`` characters (one chunk is one token)."""
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor ".replace(" ", "_")
    text = (words * (tokens * chunk_size // len(words) + 1))[: tokens * chunk_size]
    return text


def behaviour(reply_tokens: int = 20, chunk_size: int = 4, tokens_per_second: float | None = None,
              delay: float = 0.0) -> Behaviour:
    return Behaviour(reply=reply_text(reply_tokens, chunk_size), chunk_size=chunk_size,
                     tokens_per_second=tokens_per_second or None, delay=delay)


def main() -> None:
    fake = FakeUpstream()

    async def set_behaviour(request: Request) -> JSONResponse:
        spec = await request.json()
        fake.reset()
        fake.default = behaviour(**spec)
        return JSONResponse({"ok": True})

    async def state(request: Request) -> JSONResponse:
        return JSONResponse({"open_streams": fake.open_streams, "requests": len(fake.requests)})

    fake.app.router.routes.append(Route("/_bench/behaviour", set_behaviour, methods=["POST"]))
    fake.app.router.routes.append(Route("/_bench/state", state, methods=["GET"]))
    fake.start()
    print(fake.base_url, flush=True)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    fake.stop()


if __name__ == "__main__":
    main()
