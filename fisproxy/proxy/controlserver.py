"""The control port: a small HTTP/1.1 server of fisproxy's own, on its own threads.

Why not a mitmproxy listener: mitmproxy 12 opens its listeners before an addon's `configure`
runs and drops listener changes made before it is running, so a listener added by the addon
never opened there; and a listener's requests would be served on mitmproxy's event loop, which
must never wait on the store. This server opens when the addon starts, whatever mitmproxy's
start-up order, on an event loop of its own (thread `fisproxy-control`), and every request runs
on a worker thread (`ControlPlane.serve` is blocking).

Slow or idle clients cannot starve it (slowloris). Connections wait on the event loop, never on
a thread: a thread serves a request only once its head and body are in. A request's head must
arrive within `head_timeout` of its first byte and its body within `body_timeout` after the
head, in total rather than per read (a byte now and then keeps nothing open); a keep-alive
connection idle for `idle_timeout` is closed, and an answer must be taken within
`write_timeout`. At most `max_connections` connections, `per_client` from one address: when
either is reached, the connection (of that address, or of any) that has waited longest without
a complete request is closed to make room, so a new client always gets in. Health checks,
StopExperiment and the safety lever run on threads of their own, never queued behind slow
requests (report builds).

Bounded by construction: bodies up to `control.MAX_BODY_BYTES` (413 beyond; the body is not
read), request heads up to `max_head_bytes` (431), no chunked bodies (411), HTTP/1.1 keep-alive.
Request heads are parsed by mitmproxy's own HTTP/1 reader, as the proxy port's are. No request
line or header is logged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
import socket
import threading
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

from mitmproxy.http import Headers
from mitmproxy.net.http.http1 import read_request_head
from mitmproxy.net.http.http1.read import connection_close

from fisproxy.httpdata import ApiResponse
from fisproxy.proxy.control import (
    HEALTH_PATH,
    MAX_BODY_BYTES,
    ControlPlane,
    ControlRequest,
    split_target,
    too_large,
)

log = logging.getLogger(__name__)

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE = re.compile(rb"\r?\n")
# Answered on their own threads: what must work while everything else is busy.
_PRIORITY = (
    (frozenset({"GET", "HEAD"}), re.compile(re.escape(HEALTH_PATH))),
    (frozenset({"DELETE"}), re.compile(r"/experiments/[^/]+/?")),  # StopExperiment
    (frozenset({"PATCH"}), re.compile(r"/safetyLevers/[^/]+/state/?")),  # the safety lever
)
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
# After refusing a request whose body was not read, what the client still sends is read and
# dropped for a moment before closing: closed with unread data, the socket would be reset and
# the client (still sending its body) would never see the answer.
LINGER_SECONDS = 2.0
LINGER_BYTES = 4 * MAX_BODY_BYTES


@dataclass(frozen=True)
class Limits:
    head_timeout: float = 10.0  # from a request's first byte to the end of its head
    body_timeout: float = 10.0  # from the end of the head to the end of the body (1 MiB at most)
    idle_timeout: float = 30.0  # a keep-alive connection without a request under way
    write_timeout: float = 30.0  # for the client to take an answer
    max_connections: int = 256
    per_client: int = 64  # connections from one address
    max_head_bytes: int = 64 * 1024
    workers: int = 8  # threads serving requests
    priority_workers: int = 2  # threads for health, StopExperiment, the safety lever


class _Refused(Exception):
    """Answer `status` with `message` (or `answer`) and close the connection."""

    def __init__(self, status: int, message: str, answer: ApiResponse | None = None) -> None:
        super().__init__(message)
        self.answer = answer or ApiResponse.json(status, {"message": f"fisproxy: {message}"})


@dataclass(eq=False)
class _Conn:
    client: str
    writer: asyncio.StreamWriter
    waiting_since: float  # loop time it began waiting for a request
    serving: bool = False
    closed: bool = False

    def abort(self) -> None:
        self.closed = True
        self.writer.transport.abort()


class ControlServer:
    """Serves `plane` on (host, port) until `stop()`. `start()` binds (OSError if it cannot)."""

    def __init__(self, plane: ControlPlane, host: str, port: int, *, reuse_port: bool = False,
                 limits: Limits | None = None) -> None:
        self.plane = plane
        self.host = host
        self.port = port
        self.reuse_port = reuse_port  # workers of `--workers N` share the port
        self.limits = limits or Limits()
        self.evicted = 0  # connections closed to make room (for tests and benchmarks)
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: dict[_Conn, None] = {}  # by arrival; only touched on the loop
        self._per_client: dict[str, int] = {}
        self._workers = concurrent.futures.ThreadPoolExecutor(
            self.limits.workers, thread_name_prefix="fisproxy-control")
        self._priority = concurrent.futures.ThreadPoolExecutor(
            self.limits.priority_workers, thread_name_prefix="fisproxy-control-priority")

    @property
    def address(self) -> tuple[str, int] | None:
        if self._sock is None:
            return None
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.create_server((self.host, self.port), family=family, backlog=128,
                                    reuse_port=self.reuse_port)
        self._sock = sock
        loop = self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                server = self._server = loop.run_until_complete(asyncio.start_server(self._connection, sock=sock))
            except BaseException as e:  # handed to start()
                failed.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                server.close()
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="fisproxy-control", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failed:
            sock.close()
            self._sock = None
            raise failed[0]

    def stop(self) -> None:
        """Stop accepting and close every connection; requests in flight finish on their own."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError, concurrent.futures.TimeoutError):
                asyncio.run_coroutine_threadsafe(self._close_all(), loop).result(5)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()
        self._workers.shutdown(wait=False, cancel_futures=True)
        self._priority.shutdown(wait=False, cancel_futures=True)

    async def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()  # no new connection from here on
        for conn in list(self._conns):
            conn.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- connections (on the control loop) -------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        peer = writer.get_extra_info("peername")
        conn = _Conn(str(peer[0]) if peer else "", writer, loop.time())
        if not self._admit(conn):
            writer.write(_BUSY)
            writer.close()
            return
        try:
            await self._serve_connection(conn, reader, writer)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass  # a client that vanished mid-request is ordinary
        except asyncio.CancelledError:
            # stop(): ends here, not cancelled (Python 3.11's streams would log a cancelled
            # connection task as an error)
            pass
        except _Refused as refused:
            with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                await self._send(writer, refused.answer, "GET", close=True)
                await _linger(reader, writer)
        finally:
            self._forget(conn)
            if not conn.closed:
                writer.close()

    def _admit(self, conn: _Conn) -> bool:
        """Room for `conn`, made by closing the connection that has waited longest without a
        complete request (of the same address when that one is at its cap). False if every
        connection is being served."""
        limits = self.limits
        if self._per_client.get(conn.client, 0) >= limits.per_client:
            victim = self._longest_waiting(conn.client)
        elif len(self._conns) >= limits.max_connections:
            victim = self._longest_waiting(None)
        else:
            victim = None
        if victim is not None:
            self.evicted += 1
            victim.abort()
            self._forget(victim)
        elif (self._per_client.get(conn.client, 0) >= limits.per_client
              or len(self._conns) >= limits.max_connections):
            return False
        self._conns[conn] = None
        self._per_client[conn.client] = self._per_client.get(conn.client, 0) + 1
        return True

    def _longest_waiting(self, client: str | None) -> _Conn | None:
        waiting = [c for c in self._conns if not c.serving and (client is None or c.client == client)]
        return min(waiting, key=lambda c: c.waiting_since, default=None)

    def _forget(self, conn: _Conn) -> None:
        if conn not in self._conns:
            return  # already made room for another
        del self._conns[conn]
        left = self._per_client[conn.client] - 1
        if left:
            self._per_client[conn.client] = left
        else:
            del self._per_client[conn.client]

    async def _serve_connection(self, conn: _Conn, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        buffer = bytearray()  # bytes received and not used yet (pipelined requests)
        while True:
            conn.serving, conn.waiting_since = False, loop.time()
            head = await self._read_head(reader, buffer)
            if head is None:
                return
            lines = _LINE.split(head)
            try:
                request = read_request_head(lines)
            except ValueError:
                raise _Refused(400, "malformed HTTP request") from None
            target = lines[0].split()[1]  # exactly as sent: what is authorized is what is routed
            length = _body_length(request.headers)
            if length and request.headers.get("expect", "").lower() == "100-continue":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = await self._read_body(reader, buffer, length)
            if body is None:
                return
            conn.serving = True
            control = ControlRequest(
                method=request.method,
                # Bytes that are not UTF-8 are read as mitmproxy does (surrogate escapes) and refused.
                target=target.decode("utf-8", "surrogateescape"),
                host=request.headers.get("host", ""), headers=request.headers, body=body)
            pool = self._priority if _priority(control) else self._workers
            answer = await loop.run_in_executor(pool, self.plane.serve, control)
            close = connection_close(request.http_version, request.headers)
            await self._send(writer, answer, request.method, close=close)
            if close:
                return

    async def _read_head(self, reader: asyncio.StreamReader, buffer: bytearray) -> bytes | None:
        """The next request head (request line and headers), or None when the client closed or
        stayed idle between requests. _Refused when it is too large or too slow."""
        loop = asyncio.get_running_loop()
        limits = self.limits
        first: float | None = None  # when its first byte was there
        while True:
            while buffer and buffer[0] in b"\r\n":  # empty lines before a request are allowed
                del buffer[0]
            end = _HEAD_END.search(buffer, 0, limits.max_head_bytes + 4)
            if end is not None:
                head = bytes(buffer[:end.start()])
                del buffer[:end.end()]
                return head
            if len(buffer) > limits.max_head_bytes:
                raise _Refused(431, "request head too large")
            if buffer and first is None:
                first = loop.time()
            timeout = limits.idle_timeout if first is None else first + limits.head_timeout - loop.time()
            try:
                chunk = await asyncio.wait_for(reader.read(65536), max(timeout, 0.0))
            except TimeoutError:
                if first is None:
                    return None  # idle: closed quietly
                raise _Refused(408, f"the request head did not arrive within {limits.head_timeout:g} s") from None
            if not chunk:
                return None
            buffer += chunk

    async def _read_body(self, reader: asyncio.StreamReader, buffer: bytearray, length: int) -> bytes | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.body_timeout
        while len(buffer) < length:
            try:
                chunk = await asyncio.wait_for(reader.read(max(65536, length - len(buffer))),
                                               max(deadline - loop.time(), 0.0))
            except TimeoutError:
                raise _Refused(408, f"the request body did not arrive within "
                                    f"{self.limits.body_timeout:g} s") from None
            if not chunk:
                return None
            buffer += chunk
        body = bytes(buffer[:length])
        del buffer[:length]
        return body

    async def _send(self, writer: asyncio.StreamWriter, answer: ApiResponse, method: str, *,
                    close: bool) -> None:
        try:
            phrase = HTTPStatus(answer.status).phrase
        except ValueError:
            phrase = ""
        lines = [f"HTTP/1.1 {answer.status} {phrase}"]
        for name, value in answer.headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                lines.append(f"{name}: {value}")
        lines += ["Server: fisproxy", f"Date: {formatdate(usegmt=True)}",
                  f"Content-Length: {len(answer.body)}"]
        if close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")
        # One write: a head and a body sent apart wait for the client's delayed ACK (40 ms).
        writer.write(head if method.upper() == "HEAD" else head + answer.body)
        await asyncio.wait_for(writer.drain(), self.limits.write_timeout)


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then drop what the client still sends, for at most LINGER_SECONDS and
    LINGER_BYTES (the connection stays counted, and evictable, meanwhile)."""
    if writer.can_write_eof():
        writer.write_eof()
    loop = asyncio.get_running_loop()
    deadline, dropped = loop.time() + LINGER_SECONDS, 0
    while dropped < LINGER_BYTES:
        chunk = await asyncio.wait_for(reader.read(65536), max(deadline - loop.time(), 0.0))
        if not chunk:
            return
        dropped += len(chunk)


def _body_length(headers: Headers) -> int:
    """The body's length from Content-Length; _Refused for a body fisproxy does not read."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        raise _Refused(411, "send a Content-Length")
    values = {v.strip() for v in headers.get_all("content-length")}
    if not values:
        return 0
    raw = values.pop()
    if values or not (raw.isascii() and raw.isdigit()):
        raise _Refused(400, "bad Content-Length")
    if int(raw) > MAX_BODY_BYTES:
        raise _Refused(413, "too large", too_large())  # the body is not read: the connection ends
    return int(raw)


def _priority(request: ControlRequest) -> bool:
    path, _ = split_target(request.target)
    method = request.method.upper()
    return any(method in methods and pattern.fullmatch(path) for methods, pattern in _PRIORITY)
