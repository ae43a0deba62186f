"""An in-process HTTP/1.1 server that swallows an upload and answers with a prepared fault.

Why: answering an upload (S3 PutObject, 200 MB, `Expect: 100-continue`) from `requestheaders`
makes mitmproxy buffer the whole body first, and a response cannot be combined with request
streaming. Instead the flow is streamed here (`flow.request.stream = True`, destination
re-pointed at the sink, see `apply.respond`): the sink reads the request head, drains the body
(Content-Length or chunked, aws-chunked payloads inside HTTP chunks included) without keeping
it, then answers with the response registered under the request's token header, with
`Connection: close` (so mitmproxy never reuses the connection for another request).

Tokens are single-use and expire after `token_ttl` seconds if no request ever claims them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus

logger = logging.getLogger(__name__)

TOKEN_HEADER = "x-fisproxy-sink-token"
_READ_SIZE = 65536
# Framing is ours to set; these headers from a registered response are dropped.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    expires: float


class SinkError(Exception):
    """The request to the sink is malformed or stalled; the connection is dropped."""


class FaultSink:
    """Drain server for failing uploads without buffering them (see module docstring)."""

    def __init__(self, *, token_ttl: float = 600.0, idle_timeout: float = 300.0) -> None:
        self.token_ttl = token_ttl
        self.idle_timeout = idle_timeout
        self.host: str | None = None
        self.port: int | None = None
        self._server: asyncio.Server | None = None
        self._answers: dict[str, _Answer] = {}
        self._writers: set[asyncio.StreamWriter] = set()
        self.drained = 0  # body bytes read and discarded, in total (for logs and tests)

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def pending(self) -> int:
        """Registered answers not yet claimed (expired ones excluded)."""
        self._expire()
        return len(self._answers)

    @property
    def active(self) -> int:
        """Connections currently being drained."""
        return len(self._writers)

    async def start(self, host: str = "127.0.0.1") -> None:
        """Listen on a free port of `host` (loopback: only this process connects)."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._serve, host, 0)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        logger.debug("fault sink listening on %s:%s", self.host, self.port)

    def stop(self) -> None:
        """Stop listening, drop connections in progress and forget all answers."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self._answers.clear()
        self.host = self.port = None

    def register(self, status: int, headers: Sequence[tuple[str, str]], body: bytes) -> str:
        """Prepare an answer; the returned token goes into the request's `TOKEN_HEADER`."""
        self._expire()
        token = secrets.token_urlsafe(18)
        kept = tuple((k, v) for k, v in headers if k.lower() not in _FRAMING)
        self._answers[token] = _Answer(status, kept, body, time.monotonic() + self.token_ttl)
        return token

    def _expire(self) -> None:
        now = time.monotonic()
        # Insertion order is expiry order (one ttl for all), so stop at the first live one.
        for token, answer in list(self._answers.items()):
            if answer.expires > now:
                break
            del self._answers[token]

    def _claim(self, token: str | None) -> _Answer | None:
        self._expire()
        return self._answers.pop(token, None) if token else None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            async with asyncio.timeout(self.idle_timeout) as idle:
                headers = await _read_head(reader)
                answer = self._claim(headers.get(TOKEN_HEADER))
                self.drained += await _drain_body(reader, headers, idle, self.idle_timeout)
            if answer is None:
                body = b"fisproxy: unknown or expired fault token\n"
                answer = _Answer(502, (("content-type", "text/plain"),), body, 0.0)
            writer.write(_serialize(answer))
            await writer.drain()
        except (OSError, TimeoutError, SinkError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as e:
            logger.debug("fault sink: dropping connection: %r", e)
        finally:
            self._writers.discard(writer)
            writer.close()


async def _read_head(reader: asyncio.StreamReader) -> dict[str, str]:
    """The request's headers, lower-cased names (last value wins; none we use repeat)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if len(lines[0].split(" ")) != 3:
        raise SinkError(f"bad request line ({len(lines[0])} bytes)")  # may hold a presigned URL
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, sep, value = line.partition(":")
            if not sep:
                raise SinkError(f"bad header line ({len(line)} bytes)")  # never log header values
            headers[name.strip().lower()] = value.strip()
    return headers


async def _drain_body(
    reader: asyncio.StreamReader,
    headers: dict[str, str],
    idle: asyncio.Timeout,
    idle_timeout: float,
) -> int:
    """Read and discard the body and return its size (chunk payloads for chunked); `idle` is
    pushed back after every read."""
    loop = asyncio.get_running_loop()
    total = 0

    async def discard(n: int) -> None:
        nonlocal total
        total += n
        while n > 0:
            data = await reader.read(min(n, _READ_SIZE))
            if not data:
                raise asyncio.IncompleteReadError(b"", n)
            n -= len(data)
            idle.reschedule(loop.time() + idle_timeout)

    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size_line = await reader.readuntil(b"\r\n")
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError as e:
                raise SinkError(f"bad chunk size line: {size_line[:80]!r}") from e
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass  # trailer fields
                return total
            await discard(size)
            if await reader.readexactly(2) != b"\r\n":
                raise SinkError("chunk not followed by CRLF")
    else:
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError as e:
            raise SinkError("bad content-length") from e
        await discard(length)
        return total


def _serialize(answer: _Answer) -> bytes:
    try:
        reason = HTTPStatus(answer.status).phrase
    except ValueError:
        reason = "Error"
    lines = [f"HTTP/1.1 {answer.status} {reason}"]
    lines += [f"{k}: {v}" for k, v in answer.headers]
    lines += [f"Content-Length: {len(answer.body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + answer.body

