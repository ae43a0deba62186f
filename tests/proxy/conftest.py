"""Real mitmproxy, real sockets, loopback only: an upstream HTTP server that counts what reaches
it, a proxy (in-process in a background thread, or a `mitmdump -s` subprocess) running a test
addon that applies the fault named in the request's `x-test-fault` header with the helpers of
`fisproxy.proxy.apply`, and small raw-socket clients."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.client import HTTPResponse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mitmproxy import ctx, http, options
from mitmproxy.tools.dump import DumpMaster

from fisproxy.proxy import apply
from fisproxy.proxy.runtime import STREAM_LARGE_BODIES
from tests.helpers import clean_env

REPO = Path(__file__).resolve().parents[2]
MB = 1 << 20
PATTERN = bytes(range(256)) * 4096  # 1 MiB

ERR_HEADERS = (
    ("Content-Type", "application/xml"),
    ("x-amz-request-id", "4442587FB7D0A2F9"),
    ("x-amz-id-2", "vlR7PnpV2Ce81l0PRw6jlUpck7Jo5ZsQjryTjKlc5aLWGVHPZLj5NeC6qMa0emYBDXOo6QBU0Wo="),
)
ERR_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message>"
    b"<RequestId>4442587FB7D0A2F9</RequestId></Error>"
)


def chunks(n: int, size: int = MB) -> Iterator[bytes]:
    """`n` bytes of PATTERN, in pieces of `size` (never the whole body at once)."""
    while n > 0:
        piece = PATTERN[: min(n, size)]
        n -= len(piece)
        yield piece


def sha256_of(n: int) -> str:
    digest = hashlib.sha256()
    for piece in chunks(n):
        digest.update(piece)
    return digest.hexdigest()


# ---- upstream -----------------------------------------------------------------------------


@dataclass
class Upstream:
    """Threaded HTTP/1.1 server. GET /bytes/<n>[?chunked] streams n bytes; GET /empty and
    HEAD answer 200 without body; PUT/POST drain the body (Content-Length or chunked) and
    answer its size and sha256. `hits` counts requests whose head arrived."""

    server: ThreadingHTTPServer
    hits: list[tuple[str, str]] = field(default_factory=list)
    bodies: list[tuple[int, str]] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def reset(self) -> None:
        self.hits.clear()
        self.bodies.clear()


class _UpstreamServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # 200 concurrent flows connect at once

    def handle_error(self, request, client_address) -> None:
        pass  # clients (the proxy) going away mid-body are part of the tests


class _UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: Upstream

    def log_message(self, format, *args) -> None:
        pass

    def do_HEAD(self) -> None:
        self.upstream.hits.append(("HEAD", self.path))
        self.send_response(200)
        self.send_header("Content-Length", "1234")
        self.end_headers()

    def do_GET(self) -> None:
        self.upstream.hits.append(("GET", self.path))
        path, _, query = self.path.partition("?")
        if m := re.fullmatch(r"/bytes/(\d+)", path):
            n = int(m.group(1))
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            if query == "chunked":
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for piece in chunks(n, 256 * 1024):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.send_header("Content-Length", str(n))
                self.end_headers()
                for piece in chunks(n):
                    self.wfile.write(piece)
            return
        body = b"" if path == "/empty" else b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_PUT(self) -> None:
        self.upstream.hits.append((self.command, self.path))
        digest, n = hashlib.sha256(), 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while size := int(self.rfile.readline().split(b";")[0], 16):
                digest.update(data := self.rfile.read(size))
                n += len(data)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b""):
                pass
        else:
            remaining = int(self.headers.get("Content-Length", "0"))
            while remaining:
                data = self.rfile.read(min(remaining, MB))
                if not data:
                    return
                digest.update(data)
                n += len(data)
                remaining -= len(data)
        self.upstream.bodies.append((n, digest.hexdigest()))
        body = json.dumps({"bytes": n, "sha256": digest.hexdigest()}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT


@pytest.fixture(scope="session")
def upstream_server() -> Iterator[Upstream]:
    server = _UpstreamServer(("127.0.0.1", 0), _UpstreamHandler)
    up = Upstream(server)
    _UpstreamHandler.upstream = up
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield up
    server.shutdown()
    server.server_close()


@pytest.fixture
def upstream(upstream_server: Upstream) -> Upstream:
    upstream_server.reset()
    return upstream_server


# ---- the test addon -----------------------------------------------------------------------


class FaultHeaderAddon:
    """Applies the fault named in `x-test-fault: <kind>[:<arg>]` using fisproxy's helpers.

    Request phase: error[:status] (via the sink for uploads), buffered-error (no sink: the
    body is buffered, for contrast), close, reset, hang[:max_seconds], latency:<ms> (holding
    the upload back), latency-unpaused:<ms> (mitmproxy reads on, for contrast).
    Response phase: response-error[:status], response-close, response-reset,
    response-hang[:max_seconds],
    response-latency:<ms>, response-buffered (no fault, upstream body buffered, for contrast).
    Anything else passes through. `stopped` is the event the waits watch.

    Streaming is fisproxy's own regime (`ProxyThread` sets the options `Runtime` sets:
    stream_large_bodies=1m, connection_strategy=lazy): bodies over 1 MiB stream, smaller
    ones are buffered, exactly as in production.
    """

    def __init__(self, ready_file: str | None = None) -> None:
        self.sink = apply.FaultSink()
        self.no_sink = apply.FaultSink()  # never started: respond() falls back to buffering
        self.stopped: asyncio.Event | None = None
        self.flows: dict[str, http.HTTPFlow] = {}
        self.ready_file = ready_file

    async def running(self) -> None:
        self.stopped = asyncio.Event()
        await self.sink.start()
        if self.ready_file:
            port = ctx.master.addons.get("proxyserver").listen_addrs()[0][1]
            Path(self.ready_file).write_text(str(port))

    def done(self) -> None:
        self.sink.stop()

    @staticmethod
    def _fault(flow: http.HTTPFlow) -> tuple[str, str]:
        kind, _, arg = flow.request.headers.get("x-test-fault", "").partition(":")
        return kind, arg

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        if test_id := flow.request.headers.get("x-test-id"):
            self.flows[test_id] = flow
        kind, arg = self._fault(flow)
        if kind in ("error", "buffered-error"):
            apply.mark(flow, f"exp/act/{kind}", f"injected {kind}")
            sink = self.sink if kind == "error" else self.no_sink
            apply.respond(flow, int(arg or 503), ERR_HEADERS, ERR_BODY, sink=sink)
        elif kind in ("close", "reset"):
            apply.mark(flow, "exp/act/disconnect", kind)
            apply.drop(flow, kind)
        elif kind == "hang":
            apply.mark(flow, "exp/act/disconnect", "hang")
            await apply.hang(flow, self.stopped, max_seconds=float(arg or 900))
        elif kind in ("latency", "latency-unpaused"):
            apply.mark(flow, "exp/act/latency", f"latency {arg} ms")
            held = flow if kind == "latency" else None
            await apply.wait(float(arg), self.stopped, flow=held)

    async def responseheaders(self, flow: http.HTTPFlow) -> None:
        apply.on_responseheaders(flow)
        kind, arg = self._fault(flow)
        if kind == "response-buffered" and flow.response is not None:
            flow.response.stream = False  # for contrast: what not streaming costs
        if kind == "response-error":
            apply.mark(flow, "exp/act/error", "error after upstream")
            apply.respond_after_upstream(flow, int(arg or 500), ERR_HEADERS, ERR_BODY)
        elif kind in ("response-close", "response-reset"):
            apply.mark(flow, "exp/act/disconnect", kind)
            apply.drop(flow, "close" if kind == "response-close" else "reset")
        elif kind == "response-hang":
            await apply.hang(flow, self.stopped, max_seconds=float(arg or 900))
        elif kind == "response-latency":
            apply.mark(flow, "exp/act/latency", f"latency {arg} ms")
            await apply.wait(float(arg), self.stopped, flow=flow)

    def response(self, flow: http.HTTPFlow) -> None:
        apply.on_response(flow)

    def client_disconnected(self, client) -> None:
        apply.on_client_disconnected(client)


# ---- the proxy ----------------------------------------------------------------------------


class ProxyThread:
    """An in-process DumpMaster on port 0, in a background thread."""

    def __init__(self, addon: FaultHeaderAddon) -> None:
        self.addon = addon
        self.ready = threading.Event()
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> ProxyThread:
        self.thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self.thread.start()
        assert self.ready.wait(15), "proxy did not start"
        return self

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        opts = options.Options(listen_host="127.0.0.1", listen_port=0)
        self.master = DumpMaster(opts, with_termlog=False, with_dumper=False)
        # What fisproxy's Runtime sets (addon options exist only once the master does).
        opts.update(stream_large_bodies=STREAM_LARGE_BODIES, connection_strategy="lazy")
        outer = self

        class Ready:
            def running(self) -> None:
                outer.port = outer.master.addons.get("proxyserver").listen_addrs()[0][1]
                outer.ready.set()

        self.master.addons.add(self.addon, Ready())
        await self.master.run()

    def call(self, fn) -> None:
        """Run `fn` on the proxy's loop (asyncio objects are not thread-safe)."""
        assert self.loop is not None
        done = threading.Event()
        self.loop.call_soon_threadsafe(lambda: (fn(), done.set()))
        assert done.wait(5)

    def set_stopped(self) -> None:
        self.call(lambda: self.addon.stopped.set())

    def clear_stopped(self) -> None:
        self.call(lambda: self.addon.stopped.clear())

    def stop(self) -> None:
        self.master.shutdown()
        self.thread.join(10)


@pytest.fixture(scope="session")
def proxy_thread() -> Iterator[ProxyThread]:
    proxy = ProxyThread(FaultHeaderAddon()).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def proxy(proxy_thread: ProxyThread) -> ProxyThread:
    proxy_thread.clear_stopped()
    proxy_thread.addon.flows.clear()
    return proxy_thread


@dataclass
class MitmdumpProcess:
    proc: subprocess.Popen
    port: int

    def vm(self, field_name: str) -> int:
        """A /proc/<pid>/status memory field (VmHWM, VmRSS) in bytes."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        m = re.search(rf"^{field_name}:\s+(\d+) kB", status, re.M)
        assert m, status
        return int(m.group(1)) * 1024


@contextlib.contextmanager
def mitmdump(tmp_path: Path, *, streaming: bool = True) -> Iterator[MitmdumpProcess]:
    """`mitmdump -s` with FaultHeaderAddon in a fresh process (for per-process memory peaks).
    `streaming`: fisproxy's regime (stream_large_bodies=1m); False: mitmproxy's default, where
    bodies are buffered whole (the contrast cases: what streaming saves)."""
    ready = tmp_path / "ready"
    script = tmp_path / "fault_addon.py"
    script.write_text(
        "from tests.proxy.conftest import FaultHeaderAddon\n"
        f"addons = [FaultHeaderAddon(ready_file={str(ready)!r})]\n"
    )
    env = clean_env(PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-c", "from mitmproxy.tools.main import mitmdump; mitmdump()",
         "--listen-host", "127.0.0.1", "-p", "0", "-q", "--set", f"confdir={tmp_path / 'conf'}",
         *(["--set", f"stream_large_bodies={STREAM_LARGE_BODIES}"] if streaming else []),
         "--set", "connection_strategy=lazy", "-s", str(script)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
                raise RuntimeError(f"mitmdump did not start:\n{out[-3000:]}")
            time.sleep(0.05)
        time.sleep(0.05)  # the port is written as soon as it is known
        yield MitmdumpProcess(proc, int(ready.read_text()))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- clients ------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    headers: http.Headers
    body: bytes


def connect(port: int, timeout: float = 30) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def send_head(sock: socket.socket, method: str, url: str, headers: dict[str, str]) -> None:
    lines = [f"{method} {url} HTTP/1.1", f"Host: {url.split('/')[2]}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())


def read_interim(sock: socket.socket) -> bytes:
    """The bytes of an interim response head (e.g. 100 Continue), or b"" on EOF."""
    data = b""
    while not data.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            return data
        data += byte
    return data


def read_reply(sock: socket.socket, method: str = "GET") -> Reply:
    response = HTTPResponse(sock, method=method)
    response.begin()
    body = response.read()
    headers = http.Headers([(k.encode(), v.encode()) for k, v in response.getheaders()])
    return Reply(response.status, headers, body)


def upload(
    port: int,
    url: str,
    size: int,
    headers: dict[str, str],
    *,
    expect: bool = True,
    chunked: bool = False,
    timeout: float = 60,
) -> tuple[bytes, Reply]:
    """PUT `size` bytes of PATTERN like botocore: `Expect: 100-continue`, wait for 100, then
    the body in 1 MiB pieces. Returns (interim head, final reply)."""
    with connect(port, timeout) as sock:
        head = dict(headers)
        if chunked:
            head["Transfer-Encoding"] = "chunked"
        else:
            head["Content-Length"] = str(size)
        if expect:
            head["Expect"] = "100-continue"
        send_head(sock, "PUT", url, head)
        interim = read_interim(sock) if expect else b""
        for piece in chunks(size):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
        return interim, read_reply(sock, "PUT")


# ---- socket table -------------------------------------------------------------------------

_LIVE_STATES = {"01": "ESTABLISHED", "08": "CLOSE_WAIT"}


def proxy_side_sockets(proxy_port: int, client_port: int) -> list[str]:
    """States of the proxy's end of the connection from `client_port` that still hold it open
    (ESTABLISHED, CLOSE_WAIT), from /proc/net/tcp (no psutil/ss needed)."""
    states = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        local, remote, state = parts[1], parts[2], parts[3]
        if int(local.split(":")[1], 16) == proxy_port and int(remote.split(":")[1], 16) == client_port:
            if state in _LIVE_STATES:
                states.append(_LIVE_STATES[state])
    return states


def wait_proxy_side_closed(proxy_port: int, client_port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while states := proxy_side_sockets(proxy_port, client_port):
        assert time.monotonic() < deadline, f"proxy still holds the connection: {states}"
        time.sleep(0.05)
