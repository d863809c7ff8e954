"""Who may use the HTTP API, checked before a route reads anything.

With ``CHATBOT_API_TOKENS`` set, every route needs ``Authorization: Bearer <token>`` and a conversation belongs
to the token that created it. With a login (``CHATBOT_AUTH``), HTTP Basic with its credentials works too (the
docs need it as well) and nothing answers anonymously. With neither, the API answers only on a loopback bind
(and not behind a share link).

Which requests are the API's is read from the app's own router (:class:`ApiRoutes`): every FastAPI route is
guarded unless its operation declares ``security: []`` (OpenAPI's "no authentication"), so a route added
later is guarded without editing this module. The body-size cap is FastAPI's (``max_body_size`` on the
routes that take a body; see :mod:`chatbot.http.routes`).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import logging
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute, RouteContext, iter_route_contexts
from starlette.datastructures import Headers
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from chatbot.core.limits import request_address, visitor_bucket
from chatbot.core.settings import Settings
from chatbot.http.access import LoginChecker, basic_credentials
from chatbot.http.problems import ApiError, body_too_large

log = logging.getLogger("switchboard.api")


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
            where = _exposure(settings)
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
        credentials = basic_credentials(authorization) if self._login is not None else None
        if self._login is not None and credentials is not None:
            user, password = credentials
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


def _exposure(settings: Settings) -> str:
    """Why this server can be reached from elsewhere ("" when it cannot)."""
    if settings.share:
        return "a share link makes this server public"
    if not is_loopback(settings.host):
        return f"this server listens on {settings.host}, which is not loopback"
    if settings.public:
        return "this server is reachable from other machines"
    return ""


def is_open(route: BaseRoute | RouteContext) -> bool:
    """Whether a route answers without authentication: its OpenAPI operation says ``security: []``."""
    return (getattr(route, "openapi_extra", None) or {}).get("security") == []


@dataclass(frozen=True)
class Guarded:
    """An HTTP request the gate answers for: the route's path (for logs), the methods its path allows
    when the request's method is not one of them (empty: no route has that path), and the route's body cap
    (FastAPI's ``max_body_size``)."""

    route: str
    refused_methods: tuple[str, ...] | None = None
    max_body_size: int | None = None


@dataclass(frozen=True)
class _Snapshot:
    """The guarded routes of one state of the router's route list (``size`` routes)."""

    size: int
    guarded: tuple[RouteContext, ...]
    prefixes: tuple[str, ...]
    """The guarded routes' literal first path segments (``/chat``): the API's part of the path space."""
    elsewhere: bool
    """Whether a guarded route lies outside those (at "/" or under a parameter): any path may be the API's."""
    sockets: tuple[RouteContext, ...]


class ApiRoutes:
    """The app's guarded routes, read from its router as FastAPI's schema reads them (``iter_route_contexts``:
    included routers too), taken again whenever the router's route list changes (routes added after start
    count): every FastAPI HTTP route unless :func:`is_open`, and the docs and the schema when the gate
    guards them."""

    def __init__(self, app: FastAPI, gate: Gate) -> None:
        self.app = app
        self.gate = gate
        self._snapshot: _Snapshot | None = None

    def find(self, scope: Scope) -> Guarded | None:
        """The gate's verdict for an HTTP request: None when it is not the API's (it passes untouched)."""
        snapshot = self._current()
        path = _route_path(scope)
        if not snapshot.elsewhere and not _under(path, snapshot.prefixes):
            return None  # the UI's requests: a few string comparisons
        allowed: set[str] = set()
        for route in snapshot.guarded:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return Guarded(route.path or path, max_body_size=getattr(route, "max_body_size", None))
            if match is Match.PARTIAL:
                allowed |= route.methods or set()
        if allowed:
            return Guarded(path, tuple(sorted(allowed)))
        if any(socket.path_regex.match(path) for socket in snapshot.sockets):
            return None  # an HTTP request to a WebSocket route: not the gate's to answer
        # A path in an API route's first segment that no route serves (/chat/nope, /conversations): a 404
        # here rather than from the app mounted at "/".
        return Guarded(path, ()) if _under(path, snapshot.prefixes) else None

    def _current(self) -> _Snapshot:
        routes = self.app.router.routes
        if self._snapshot is None or self._snapshot.size != len(routes):
            docs = self._docs_paths()
            contexts = list(iter_route_contexts(routes))
            guarded = tuple(
                context for context in contexts
                if (isinstance(context.original_route, APIRoute) and not is_open(context))
                or (type(context.original_route) is Route and context.path in docs)
            )
            paths = [context.path or "/{unknown}" for context in guarded]
            firsts = {"/" + path.strip("/").split("/")[0] for path in paths}
            literal = tuple(sorted(first for first in firsts if "{" not in first and first != "/"))
            sockets = tuple(c for c in contexts if isinstance(c.original_route, APIWebSocketRoute))
            self._snapshot = _Snapshot(len(routes), guarded, literal, len(literal) < len(firsts), sockets)
        return self._snapshot

    def _docs_paths(self) -> set[str]:
        if not self.gate.guards_docs:
            return set()
        app = self.app
        docs = {app.openapi_url, app.docs_url, app.redoc_url}
        if app.docs_url:
            docs.add(app.swagger_ui_oauth2_redirect_url)
        return {path for path in docs if path}


def _route_path(scope: Scope) -> str:
    """The path the router matches: ``scope["path"]`` without the ``root_path`` it starts with."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in prefixes)


class ApiGate:
    """ASGI middleware for the API's HTTP routes: 404/405 for paths and methods no route serves, then auth,
    then a declared ``Content-Length`` over the route's body cap, before the route reads the body. Other
    requests (the Gradio app; the docs unless a login is set) pass through untouched. A route's unexpected
    failure is logged here with secrets masked (the server would log it unmasked) and answered as a JSON
    500."""

    def __init__(self, app: ASGIApp, gate: Gate, api: FastAPI) -> None:
        self.app = app
        self.gate = gate
        self.routes = ApiRoutes(api, gate)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.routes.find(scope) if scope["type"] == "http" else None
        if found is None:
            await self.app(scope, receive, send)
            return
        try:
            self._admit(scope, found)
        except ApiError as exc:
            await exc.response()(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except Exception:  # a bug: logged here with secrets masked (the server would log it unmasked)
            log.exception("%s %s failed", scope["method"], found.route)
            with contextlib.suppress(Exception):  # fails when the response had started: nothing more to say
                await ApiError.of("internal").response()(scope, receive, send)

    def _admit(self, scope: Scope, found: Guarded) -> None:
        """Check the route and the caller; record the caller in ``scope["state"]``. Raises :class:`ApiError`."""
        allowed = found.refused_methods
        if allowed == ():
            raise ApiError.of("not_found", f"There is no API route {scope['path']}. See /docs.")
        if allowed:
            raise ApiError.of(
                "method_not_allowed",
                f"{scope['method']} is not allowed here; use {' or '.join(allowed)}.",
                headers={"Allow": ", ".join(allowed)},
            )
        headers = Headers(scope=scope)
        client = scope.get("client")
        caller = self.gate.caller(headers, client[0] if client else None)
        scope.setdefault("state", {}).update(switchboard_owner=caller.owner, switchboard_user=caller.user)
        declared = headers.get("content-length", "")
        if found.max_body_size is not None and declared.isdigit() and int(declared) > found.max_body_size:
            # FastAPI's limit would refuse it too, but in plain text (Starlette's own 413 replaces the
            # response of a request that declared too much); a body without a length is counted as it is read.
            raise body_too_large(found.max_body_size)
