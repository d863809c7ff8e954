"""One streamed HTTP response read with bare asyncio streams (:class:`RawStream`), and its SSE ``data:`` lines."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit


class RawStream:
    """One HTTP/1.1 request whose streamed response body is read with bare asyncio streams.

    Hundreds of simultaneous SSE streams through httpx cost the benchmark process about as much CPU as
    the app under test spends (measured: 20 CPU-s for 200 chat-UI visitors), and on a 2-core machine that
    CPU is taken from the app. This reader does the minimum: status line, headers, chunked or
    length-delimited or read-to-close body. ``Connection: close``, so every stream is its own TCP
    connection (no keep-alive races) and closing it is what the server sees as the visitor leaving."""

    def __init__(self, url: str, method: str = "GET", body: bytes | None = None,
                 headers: dict[str, str] | None = None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.target = parts.path + (f"?{parts.query}" if parts.query else "")
        self.method, self.body, self.headers = method, body, headers or {}
        self.status = 0
        self.response_headers: dict[str, str] = {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> RawStream:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=2**22)
        lines = [f"{self.method} {self.target} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 "Accept: text/event-stream", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        if self.body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(self.body)}"]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (self.body or b""))
        status = await self._reader.readline()
        self.status = int(status.split()[1]) if len(status.split()) > 1 else 0
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            self.response_headers[name.strip().lower()] = value.strip()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()

    async def aiter_bytes(self):
        reader = self._reader
        assert reader is not None
        if self.response_headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size_line = await reader.readline()
                if not size_line:
                    return
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    return
                data = await reader.readexactly(size + 2)
                yield data[:-2]
        elif "content-length" in self.response_headers:
            left = int(self.response_headers["content-length"])
            while left > 0:
                data = await reader.read(min(left, 65536))
                if not data:
                    return
                left -= len(data)
                yield data
        else:
            while data := await reader.read(65536):
                yield data

    async def aiter_text(self):
        async for chunk in self.aiter_bytes():
            yield chunk.decode()


async def sse_data(response):
    """The raw ``data:`` payloads (bytes, one per line) of an SSE stream, as they arrive."""
    buf = b""
    async for chunk in response.aiter_bytes():
        buf += chunk
        while True:
            i = buf.find(b"\n\n")
            if i < 0:
                break
            block, buf = buf[:i], buf[i + 2:]
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    yield line[5:].strip()

