"""Access control: the ``CHATBOT_AUTH`` login, with the throttle on wrong passwords that Gradio lacks.

Gradio's own login checks a password as often as it is asked (30 tries in 1.4 s measured here). The
checker below counts wrong passwords where the guessing comes from, as OWASP's authentication cheat sheet
advises, so that a guesser slows himself and nobody else:

- per user name *and* client address, in escalating windows (a back-off: 5 a minute, then 20 an hour, then
  100 a day), cleared when that name signs in from that address;
- per client address whatever the names (30 a minute, 100 an hour, 300 a day), so made-up names cost the
  guesser, not the real users.

Once a window is full, every attempt it covers is refused, right password or not, until it frees. The
owner signing in from another address is never held up by someone guessing their password elsewhere.

Gradio calls ``auth(username, password)`` with nothing else: :class:`LoginClient` (ASGI middleware) puts
the client's address where the checker reads it, for the login route; the HTTP API passes it itself.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import threading
from collections.abc import Sequence
from contextvars import ContextVar

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from chatbot.core.limits import request_address, visitor_bucket

log = logging.getLogger("switchboard.access")

#: Wrong passwords allowed for one user name from one client address (escalating windows: a back-off).
PER_NAME = tuple(parse_many("5/minute;20/hour;100/day"))
#: Wrong passwords allowed from one client address, whatever the names.
PER_ADDRESS = tuple(parse_many("30/minute;100/hour;300/day"))

#: The client address (a visitor bucket, IPv6 by /64) of the login request being handled.
LOGIN_CLIENT: ContextVar[str | None] = ContextVar("switchboard_login_client", default=None)


class LoginChecker:
    """``checker(username, password) -> bool``, the shape Gradio's ``auth=`` takes (the client address
    from :data:`LOGIN_CLIENT`); :meth:`check` takes the address explicitly."""

    def __init__(self, accounts: Sequence[tuple[str, SecretStr]]) -> None:
        self._accounts = {user: secret for user, secret in accounts}
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._lock = threading.Lock()

    def __call__(self, username: str, password: str) -> bool:
        return self.check(username, password, LOGIN_CLIENT.get())

    def check(self, username: str, password: str, client: str | None) -> bool:
        """True when the password is right and no throttle covering (name, client) is full."""
        name = str(username)[:128]
        where = client or "unknown"
        per_name: list[tuple[RateLimitItem, tuple[str, ...]]] = [(i, ("name", where, name)) for i in PER_NAME]
        counted = [*per_name, *((item, ("address", where)) for item in PER_ADDRESS)]
        with self._lock:
            if not all(self._limiter.test(item, "login", *key) for item, key in counted):
                log.warning("login refused: too many wrong passwords recently from this address")
                return False
            secret = self._accounts.get(name)
            # compare even for an unknown name, so timing does not tell which names exist
            expected = secret.get_secret_value() if secret is not None else "\0" * 32
            ok = hmac.compare_digest(str(password).encode(), expected.encode()) and secret is not None
            if ok:
                for item, key in per_name:
                    self._limiter.clear(item, "login", *key)
            else:
                for item, key in counted:
                    self._limiter.hit(item, "login", *key)
            return ok


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """(user, password) from an ``Authorization: Basic ...`` header (RFC 7617, UTF-8), else None."""
    scheme, _, encoded = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def login_checker(accounts: Sequence[tuple[str, SecretStr]]) -> LoginChecker | None:
    """The checker for ``CHATBOT_AUTH``, or None when no account is configured (no login)."""
    return LoginChecker(accounts) if accounts else None


class LoginClient:
    """ASGI middleware: for Gradio's login route (``POST .../login``), sets :data:`LOGIN_CLIENT` to the
    client's address (``X-Forwarded-For`` believed for ``trusted_proxies`` hops, every line counted)."""

    def __init__(self, app: ASGIApp, trusted_proxies: int = 0) -> None:
        self.app = app
        self.trusted_proxies = trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].rstrip("/").endswith("/login"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        address = request_address(client[0] if client else None, scope.get("headers") or [], self.trusted_proxies)
        token = LOGIN_CLIENT.set(visitor_bucket(address))
        try:
            await self.app(scope, receive, send)
        finally:
            LOGIN_CLIENT.reset(token)

