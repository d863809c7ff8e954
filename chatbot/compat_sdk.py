"""The SDK's aiohttp transport, with httpx2's errors: every private touch of the openai SDK's aiohttp adapter
(``openai._vendor.httpx_aiohttp``, what ``openai.DefaultAioHttpClient`` uses), tested in
tests/test_compat_sdk.py against openai 3.57 and aiohttp 3.14 (the versions requirements.txt pins).

Why aiohttp: at 200 simultaneous replies, reading the provider's streams through httpx2 (httpcore2, h11 and an
anyio cancel scope per read) was most of the conversation core's CPU; aiohttp parses the body in C, and gives a
finished response's connection back to its pool without checking every pooled connection (see
docs/benchmarks/replicas.md, fourth session).

Why a wrapper: the adapter turns aiohttp's exceptions into httpx2's with a table that picks the first match, so
a refused connection (``ClientConnectorError``) and a server that closes before answering
(``ServerDisconnectedError``) both come out as ``httpx2.ConnectTimeout`` ("the provider did not answer in
time"), and a malformed response (``ClientResponseError``) is not translated at all. :class:`AioHttpClient`
raises what httpx2's own transport raises for each (``ConnectError``, ``RemoteProtocolError``...), so the SDK's
retries and :func:`chatbot.core.errors.friendly_error` see the same failures whichever transport read them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, NoReturn

import aiohttp
import httpx2
import openai

#: aiohttp's failures (most specific first) and the httpx2 exception httpx2's own transport raises for each.
_AS_HTTPX: tuple[tuple[type[BaseException], type[httpx2.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx2.ConnectTimeout),
    (aiohttp.ServerTimeoutError, httpx2.ReadTimeout),  # SocketTimeoutError: no byte within the read timeout
    (aiohttp.ClientConnectorError, httpx2.ConnectError),  # refused, unknown host, TLS handshake
    (aiohttp.ServerDisconnectedError, httpx2.RemoteProtocolError),  # closed before or while answering
    (aiohttp.ClientPayloadError, httpx2.RemoteProtocolError),  # a body cut short (incomplete chunked body)
    (aiohttp.ClientResponseError, httpx2.RemoteProtocolError),  # not HTTP, or a malformed status line or header
    (aiohttp.ClientConnectionError, httpx2.ReadError),  # reset, or another socket error
)


def as_httpx_error(exc: BaseException) -> BaseException:
    """The httpx2 exception httpx2's transport would raise for ``exc`` (aiohttp's, raw or as the adapter
    translated it: then its ``__cause__``), with the aiohttp exception as its cause; ``exc`` itself when it
    is not aiohttp's."""
    source = exc.__cause__ if isinstance(exc, httpx2.TransportError) else exc
    if not isinstance(source, aiohttp.ClientError):
        return exc
    for aiohttp_type, httpx_type in _AS_HTTPX:
        if isinstance(source, aiohttp_type):
            mapped = httpx_type(str(source) or type(source).__name__)
            mapped.__cause__ = source
            return mapped
    return exc


def _reraise(exc: Exception) -> NoReturn:
    """Raise :func:`as_httpx_error` of ``exc``, caused by aiohttp's exception (``exc`` as it was otherwise)."""
    mapped = as_httpx_error(exc)
    if mapped is exc:
        raise exc
    raise mapped from mapped.__cause__


class _MappedStream(httpx2.AsyncByteStream):
    """A response body from the adapter, its read errors translated (:func:`as_httpx_error`)."""

    def __init__(self, inner: httpx2.AsyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except Exception as exc:
            _reraise(exc)

    async def aclose(self) -> None:
        await self._inner.aclose()


class MappedTransport(httpx2.AsyncBaseTransport):
    """The adapter's transport (``AiohttpTransport``), raising httpx2's exceptions as httpx2's transport does."""

    def __init__(self, inner: httpx2.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            response = await self.inner.handle_async_request(request)
        except Exception as exc:
            _reraise(exc)
        if isinstance(response.stream, httpx2.AsyncByteStream):
            response.stream = _MappedStream(response.stream)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class AioHttpClient(openai.DefaultAioHttpClient):
    """``openai.DefaultAioHttpClient`` (the SDK's defaults, aiohttp underneath) whose transports, the proxy's
    included, raise httpx2's exceptions (:class:`MappedTransport`).

    Relies on ``httpx2.AsyncClient._init_transport`` and ``_init_proxy_transport`` (the client builds every
    transport through them; the SDK's ``Httpx2AiohttpClient`` overrides both to build ``AiohttpTransport``),
    and on that transport raising either an httpx2 exception whose ``__cause__`` is aiohttp's, or aiohttp's
    own."""

    def _init_transport(self, *args: Any, **kwargs: Any) -> httpx2.AsyncBaseTransport:
        transport = super()._init_transport(*args, **kwargs)
        return transport if isinstance(transport, MappedTransport) else MappedTransport(transport)

    def _init_proxy_transport(self, *args: Any, **kwargs: Any) -> httpx2.AsyncBaseTransport:
        return MappedTransport(super()._init_proxy_transport(*args, **kwargs))
