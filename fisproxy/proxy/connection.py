"""Dropping and stalling a flow's client connection: close (FIN), reset (RST), hang.

mitmproxy has no public API for this. `flow.kill()` alone is not enough: on Python >= 3.12 a
kill in `requestheaders` while the client is still uploading never closes the client socket
(the client hangs, the fd leaks), and closing a socket with unread upload bytes in its receive
buffer makes the kernel send RST, not FIN. So we reach the client's asyncio transport through
`proxyserver.connections` (internal, present in mitmproxy 11.0.2 and 12.x) and:

- reset: `SO_LINGER(1, 0)` + `transport.abort()`: the kernel sends RST at once.
- close: keep a duplicate of the socket fd, `abort()` mitmproxy's transport (releases its fd on
  every Python), `shutdown(SHUT_WR)` (FIN now), then read and discard what the client still
  sends until it closes or `LINGER_SECONDS` pass (a lingering close, like nginx's): the client
  finishes its upload and then reads a clean end of stream, without bytes.
- hang: send nothing; stop mitmproxy reading from the client and the server
  (`paused_reading`: while a hook awaits, mitmproxy otherwise reads on and queues everything
  in memory, a whole 200 MB upload or download); poll the socket until the client gives up
  (FIN/RST, poll(POLLRDHUP)), the action stops (resume: the flow continues) or `max_seconds`
  pass (then close). An HTTP/1 upload still arriving is read and discarded through our own fd,
  else a client giving up mid-upload is invisible (its FIN queues behind unread bytes).
  `on_client_disconnected` is optional: mitmproxy fires `client_disconnected` only after the
  flow's hooks have returned.

HTTP/2 and HTTP/3 carry many requests on one connection: there a drop only kills the stream
(`flow.kill()` sends RST_STREAM) and hang does not pause the shared connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import socket
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal, Protocol

from mitmproxy import ctx, http
from mitmproxy.connection import Client, ConnectionState

if TYPE_CHECKING:
    from mitmproxy.proxy.server import ConnectionHandler

logger = logging.getLogger(__name__)

LINGER_SECONDS = 30.0
HANG_POLL_SECONDS = 0.25
_BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
_POLL_GONE = select.POLLHUP | select.POLLERR | getattr(select, "POLLRDHUP", 0x2000)

# Lingering closes outlive the hook that started them; keep them referenced until done.
_lingering: set[asyncio.Task[None]] = set()
# client id -> events of the hangs waiting on that client (set by on_client_disconnected).
_hanging: dict[str, set[asyncio.Event]] = {}


class Stop(Protocol):
    """What ends a wait or a hang early: an action's `StopSignal` (or an asyncio.Event)."""

    def is_set(self) -> bool: ...

    async def wait(self) -> object: ...


def drop(flow: http.HTTPFlow, mode: Literal["close", "reset"]) -> None:
    """Drop the client connection of `flow` without a response: `close` sends FIN, `reset` RST.

    Works from `requestheaders` (also while the client uploads) and `responseheaders`; a no-op
    on a connection that is already gone. The flow is killed, so mitmproxy sends nothing more.
    """
    if not _multiplexed(flow):
        transport = _client_transport(flow)
        if transport is not None and not transport.is_closing():
            if mode == "reset":
                _reset(transport)
            else:
                _close(transport)
    _kill(flow)


async def hang(
    flow: http.HTTPFlow, stopped: Stop | None, *, max_seconds: float = 900
) -> None:
    """Send nothing until the client gives up, the action stops, or `max_seconds` pass.

    After the client gives up or `max_seconds` pass the flow is dropped (killed, socket closed);
    when `stopped` is set the flow continues untouched. Callers tell the outcomes apart with
    `flow.error` (set when dropped).

    An HTTP/1 upload still arriving is read and discarded meanwhile (a client that gives up
    mid-upload is otherwise invisible: its FIN waits behind the bytes nobody reads), so such a
    flow cannot continue: on stop it is closed instead.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_seconds
    client = _client_transport(flow)
    poller = _poller(client)
    gone = asyncio.Event()
    _hanging.setdefault(flow.client_conn.id, set()).add(gone)
    upload = (
        client is not None and not _multiplexed(flow) and flow.response is None
        and has_body(flow.request)
    )
    discarded = [0]
    with paused_reading(flow):
        drain = _own_socket(client) if upload else None
        drainer = loop.create_task(_discard(drain, gone, discarded)) if drain else None
        outcome = "timeout"
        try:
            while True:
                if stopped is not None and stopped.is_set():
                    outcome = "stopped"
                    break
                if gone.is_set() or _client_gone(flow, client, poller):
                    outcome = "gone"
                    break
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                await _wait_any((stopped, gone), min(HANG_POLL_SECONDS, remaining))
        finally:
            if drainer is not None:
                drainer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await drainer
            waiters = _hanging.get(flow.client_conn.id)
            if waiters is not None:
                waiters.discard(gone)
                if not waiters:
                    del _hanging[flow.client_conn.id]
    if outcome == "gone":
        # Nobody is listening any more; RST or FIN makes no difference, abort releases the fd.
        if client is not None and not client.is_closing():
            client.abort()
        _kill(flow)
    elif outcome == "timeout" or discarded[0]:
        if outcome == "stopped":
            logger.debug("hang stopped after %d upload bytes were discarded: closing", discarded[0])
        drop(flow, "close")


@contextlib.contextmanager
def paused_reading(flow: http.HTTPFlow) -> Iterator[None]:
    """Stop reading from the flow's client and servers while the block runs.

    mitmproxy keeps reading while a hook awaits and queues what arrives in memory, so a
    delayed 200 MB upload or download would pile up in the proxy; paused, it waits in the
    peers' socket buffers (TCP backpressure). A no-op on HTTP/2 and 3, where the connection
    carries other requests.
    """
    handler = None if _multiplexed(flow) else _handler(flow)
    paused: list[asyncio.Transport] = []
    for io in list(handler.transports.values()) if handler is not None else []:
        transport = getattr(io.writer, "transport", None)
        if transport is None or transport.is_closing():
            continue
        # asyncio's StreamReader resumes a transport it paused itself (buffer full) as soon as
        # mitmproxy reads on: take its pause over so that only we resume (CPython 3.11-3.13).
        if isinstance(io.reader, asyncio.StreamReader) and getattr(io.reader, "_paused", False):
            io.reader._paused = False  # type: ignore[attr-defined]  # private, read just above
        if transport.is_reading():
            transport.pause_reading()
        paused.append(transport)
    try:
        yield
    finally:
        for transport in paused:
            if not transport.is_closing():
                transport.resume_reading()


# Bodies up to this size are small enough to buffer: an injected error is then answered in
# place (connection kept alive); larger or unknown-length ones go through the sink.
SMALL_BODY = 1024 * 1024


def has_large_body(request: http.Request) -> bool:
    """A body too large to buffer: chunked, over SMALL_BODY, or of unknown length (HTTP/2)."""
    headers = request.headers
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return True
    length = headers.get("content-length")
    if length is not None:
        return not length.isdigit() or int(length) > SMALL_BODY
    return (request.is_http2 or request.is_http3) and request.method.upper() not in _BODYLESS


def has_body(request: http.Request) -> bool:
    """Whether a request still has a body to come when `requestheaders` runs.

    HTTP/1: Content-Length > 0 or chunked. HTTP/2 and 3 may stream a body without
    Content-Length, so there any method that usually carries one counts.
    """
    headers = request.headers
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return True
    length = headers.get("content-length")
    if length is not None:
        try:
            return int(length) > 0
        except ValueError:
            return True
    return (request.is_http2 or request.is_http3) and request.method.upper() not in _BODYLESS


def on_client_disconnected(client: Client) -> None:
    """Forward of mitmproxy's `client_disconnected` hook: ends `hang`s of that client at once.

    Optional (hang polls the socket anyway), and mitmproxy fires it only once the client's
    flows have left their hooks, which an HTTP/1 hang never does before it notices by itself.
    """
    for gone in _hanging.pop(client.id, ()):
        gone.set()


def _multiplexed(flow: http.HTTPFlow) -> bool:
    return flow.request.is_http2 or flow.request.is_http3


def _kill(flow: http.HTTPFlow) -> None:
    if flow.killable:
        flow.kill()
    # kill() does not wake an intercepted flow (mitmproxy PR #8199): resume it so it ends.
    if flow.intercepted:
        flow.resume()


def _handler(flow: http.HTTPFlow) -> ConnectionHandler | None:
    master = getattr(ctx, "master", None)  # unset outside a running mitmproxy
    proxyserver = master.addons.get("proxyserver") if master is not None else None
    if proxyserver is None:
        return None
    return proxyserver.connections.get(flow.client_conn.id)


def _client_transport(flow: http.HTTPFlow) -> asyncio.Transport | None:
    handler = _handler(flow)
    io = handler.transports.get(handler.client) if handler is not None else None
    writer = io.writer if io is not None else None
    return getattr(writer, "transport", None)


def _poller(transport: asyncio.Transport | None) -> select.poll | None:
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return None
    poller = select.poll()
    poller.register(sock.fileno(), _POLL_GONE)
    return poller


def _client_gone(
    flow: http.HTTPFlow, transport: asyncio.Transport | None, poller: select.poll | None
) -> bool:
    if transport is None or transport.is_closing():
        return True
    if not flow.client_conn.state & ConnectionState.CAN_READ:
        return True  # mitmproxy already read the client's FIN (HTTP/2, reading not paused)
    return poller is not None and bool(poller.poll(0))


def _own_socket(transport: asyncio.Transport | None) -> socket.socket | None:
    """A second, non-blocking fd for the transport's socket: it outlives mitmproxy's."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return None
    try:
        own = socket.socket(fileno=os.dup(sock.fileno()))
        own.setblocking(False)
    except OSError:
        return None
    return own


async def _discard(sock: socket.socket, gone: asyncio.Event, count: list[int]) -> None:
    """Read and drop what the client sends until it closes (then set `gone`)."""
    loop = asyncio.get_running_loop()
    try:
        while data := await loop.sock_recv(sock, 65536):
            count[0] += len(data)
        gone.set()
    except OSError:
        gone.set()
    finally:
        sock.close()


async def _wait_any(events: tuple[Stop | None, ...], timeout: float) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events if e is not None]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _reset(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _close(transport: asyncio.Transport) -> None:
    own = _own_socket(transport)  # mitmproxy's close of its fd no longer ends the socket
    transport.abort()
    if own is None:
        return
    try:
        own.shutdown(socket.SHUT_WR)
    except OSError:
        own.close()
        return
    task = asyncio.get_running_loop().create_task(_linger(own))
    _lingering.add(task)
    task.add_done_callback(_lingering.discard)


async def _linger(sock: socket.socket) -> None:
    """Discard what the client still sends until it closes, so our close is not an RST."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(LINGER_SECONDS):
            while await loop.sock_recv(sock, 65536):
                pass
    except (OSError, TimeoutError):
        pass
    finally:
        sock.close()
