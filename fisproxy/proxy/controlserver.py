"""The control port: a small HTTP/1.1 server of fisproxy's own, on its own threads.

Why not a mitmproxy listener: mitmproxy 12 opens its listeners before an addon's `configure`
runs and drops listener changes made before it is running, so a listener added by the addon
never opened there; and a listener's requests would be served on mitmproxy's event loop, which
must never wait on the store. This server opens when the addon starts, whatever mitmproxy's
start-up order, and every request runs on a worker thread (`ControlPlane.serve` is blocking).

Bounded by construction: at most `MAX_CONNECTIONS` connections at once (more are answered 503
and closed), `IDLE_TIMEOUT` seconds per read, bodies up to `control.MAX_BODY_BYTES` (413
beyond; the body is not read), HTTP/1.1 keep-alive. No request line or header is logged.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fisproxy.httpdata import ApiResponse
from fisproxy.proxy.control import MAX_BODY_BYTES, ControlPlane, ControlRequest, too_large

log = logging.getLogger(__name__)

MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 30.0


class ControlServer:
    """Serves `plane` on (host, port) until `stop()`. `start()` binds (OSError if it cannot)."""

    def __init__(self, plane: ControlPlane, host: str, port: int, *, reuse_port: bool = False) -> None:
        self.plane = plane
        self.host = host
        self.port = port
        self.reuse_port = reuse_port  # workers of `--workers N` share the port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        server = _Server((self.host, self.port), _Handler, ipv6=":" in self.host, reuse_port=self.reuse_port)
        server.plane = self.plane
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2},
            name="fisproxy-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting, close the listening socket; requests in flight finish on their own."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(5)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    plane: ControlPlane

    def __init__(self, address: tuple[str, int], handler: Any, *, ipv6: bool, reuse_port: bool) -> None:
        if ipv6:
            self.address_family = socket.AF_INET6
        self.allow_reuse_port = reuse_port
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            _refuse_busy(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that vanished mid-request is ordinary; anything else is logged, no traceback
        # of request data.
        log.debug("fisproxy: control connection from %s ended with an error", client_address[0])


def _refuse_busy(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fisproxy"
    sys_version = ""
    timeout = IDLE_TIMEOUT
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # request lines can carry presigned credentials: never logged

    def __getattr__(self, name: str) -> Any:
        # Every method is the control plane's to answer (a FIS error for those it has no
        # route for), never http.server's own 501 page.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _serve(self) -> None:
        body = self._read_body()
        if body is None:
            return
        request = ControlRequest(
            # http.server read the request line as Latin-1; the control plane reads bytes that
            # are not UTF-8 as mitmproxy does (surrogate escapes), and refuses them.
            method=self.command, target=self._target().encode("latin-1").decode("utf-8", "surrogateescape"), host=self.headers.get("host", ""),
            # A Message, not a Mapping: case-insensitive get, get_all (as mitmproxy's Headers)
            headers=self.headers, body=body)  # type: ignore[arg-type]
        self._send(self.server.plane.serve(request))

    def _target(self) -> str:
        # The request target exactly as sent: http.server collapses a leading `//` in
        # `self.path`, and what is authorized must be what is routed.
        parts = self.requestline.split(" ")
        return parts[1] if len(parts) == 3 else self.path

    def _read_body(self) -> bytes | None:
        """The request body, or None when the request was answered already (too large,
        unframed) and the connection is to be closed."""
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            self.close_connection = True
            self._send(ApiResponse.json(411, {"message": "fisproxy: send a Content-Length"}))
            return None
        raw = self.headers.get("content-length") or "0"
        length = int(raw) if raw.strip().isdigit() else -1
        if length < 0:
            self.close_connection = True
            self._send(ApiResponse.json(400, {"message": "fisproxy: bad Content-Length"}))
            return None
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the body is not read: the connection cannot go on
            self._send(too_large())
            return None
        return self.rfile.read(length) if length else b""

    def _send(self, response: ApiResponse) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

