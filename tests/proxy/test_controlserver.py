"""The control port's own HTTP server over real sockets (small limits, so the tests are quick):
slow and idle clients cannot hold it (deadlines in total, not per read; a cap per address and in
all, the longest-waiting incomplete connection closed to make room), and health and
StopExperiment are answered while ordinary requests queue."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fisproxy.httpdata import ApiResponse
from fisproxy.proxy.control import ControlRequest
from fisproxy.proxy.controlserver import ControlServer, Limits


class Plane:
    """Answers every request with its method and target; `/slow` waits until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.seen: list[ControlRequest] = []

    def serve(self, req: ControlRequest) -> ApiResponse:
        self.seen.append(req)
        if req.target.startswith("/slow"):
            self.release.wait(10)
        return ApiResponse.json(200, {"method": req.method, "target": req.target, "body": req.body.decode()})


LIMITS = Limits(head_timeout=0.6, body_timeout=0.6, idle_timeout=1.0, write_timeout=2.0,
                max_connections=12, per_client=6, workers=1, priority_workers=1)


@pytest.fixture
def plane() -> Plane:
    return Plane()


@pytest.fixture
def server(plane: Plane) -> Iterator[ControlServer]:
    s = ControlServer(plane, "127.0.0.1", 0, limits=LIMITS)  # type: ignore[arg-type]
    s.start()
    yield s
    plane.release.set()
    s.stop()


def connect(server: ControlServer, source: str = "127.0.0.1") -> socket.socket:
    assert server.address is not None
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(server.address)
    return sock


def read_response(sock: socket.socket, buffer: bytearray | None = None) -> bytes:
    """One response from `sock`. Pipelined responses may arrive in one read: pass the same
    `buffer` to each call, which keeps what was read past this response for the next."""
    data = bytes(buffer or b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    if buffer is not None:
        buffer[:] = body[length:]
    return head + b"\r\n\r\n" + body[:length]


def closed(sock: socket.socket, within: float = 3.0) -> bool:
    """The server closed `sock` (EOF or reset) within `within` seconds."""
    sock.settimeout(within)
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def get(server: ControlServer, target: str, source: str = "127.0.0.1", method: str = "GET") -> bytes:
    with connect(server, source) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        return read_response(sock)


def test_a_request_and_keep_alive_with_pipelining(server: ControlServer, plane: Plane) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Length: 2\r\n\r\n{}")
        buffer = bytearray()
        first, second = read_response(sock, buffer), read_response(sock, buffer)
    assert first.startswith(b"HTTP/1.1 200 OK") and b'"target": "/a"' in first
    assert b'"target": "/b"' in second and b'"body": "{}"' in second
    assert b"Server: fisproxy" in first and b"Connection: close" not in first


def test_a_head_trickled_a_byte_at_a_time_is_cut_at_the_head_deadline(server: ControlServer) -> None:
    """A byte every 0.2 s would keep a per-read timeout of 0.6 s happy forever."""
    with connect(server) as sock:
        began = time.monotonic()
        answer = b""
        for byte in b"GET /slowloris HTTP/1.1\r\nX-A: " + b"a" * 100:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.2)
            try:
                answer += sock.recv(65536)
            except TimeoutError:
                continue
            break
        took = time.monotonic() - began
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert took < LIMITS.head_timeout + 1.0, took


def test_a_body_trickled_is_cut_at_the_body_deadline(server: ControlServer, plane: Plane) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        began = time.monotonic()
        for _ in range(10):
            time.sleep(0.15)
            try:
                sock.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError):
                break
        sock.settimeout(3)
        answer = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert time.monotonic() - began < LIMITS.body_timeout + 1.5
    assert plane.seen == []


def test_an_idle_connection_is_closed(server: ControlServer) -> None:
    with connect(server) as sock:
        began = time.monotonic()
        assert closed(sock)
        assert LIMITS.idle_timeout - 0.2 < time.monotonic() - began < LIMITS.idle_timeout + 2


@pytest.fixture
def patient_server(plane: Plane) -> Iterator[ControlServer]:
    """The same caps, deadlines far away: only the caps close connections here, however slow
    the machine."""
    patient = dataclasses.replace(LIMITS, head_timeout=30.0, body_timeout=30.0, idle_timeout=30.0)
    s = ControlServer(plane, "127.0.0.1", 0, limits=patient)  # type: ignore[arg-type]
    s.start()
    yield s
    plane.release.set()
    s.stop()


def test_a_client_at_its_cap_loses_its_longest_waiting_connection_not_others(patient_server: ControlServer) -> None:
    server = patient_server
    other = connect(server, "127.0.0.2")  # another address
    time.sleep(0.05)
    mine = []
    for _ in range(LIMITS.per_client + 3):
        mine.append(connect(server))
        mine[-1].sendall(b"G")  # an unfinished request
        time.sleep(0.05)
    try:
        assert [closed(s, 0.3) for s in mine[:3]] == [True] * 3  # the three oldest made room
        assert not any(closed(s, 0.05) for s in mine[3:])
        assert not closed(other, 0.05)
        assert server.evicted == 3
        assert get(server, "/_fisproxy/health").startswith(b"HTTP/1.1 200")
    finally:
        for s in [other, *mine]:
            s.close()


def test_when_full_the_longest_waiting_connection_makes_room(server: ControlServer) -> None:
    socks = [connect(server, f"127.0.0.{i % 6 + 1}") for i in range(LIMITS.max_connections)]
    time.sleep(0.2)
    try:
        answer = get(server, "/_fisproxy/health", "127.0.0.9")
        assert answer.startswith(b"HTTP/1.1 200"), answer
        assert closed(socks[0], 0.5)
    finally:
        for s in socks:
            s.close()


def test_health_and_stop_are_answered_while_requests_queue(server: ControlServer, plane: Plane) -> None:
    """One worker, busy with a slow request, and another queued behind it: health,
    StopExperiment and the safety lever still answer at once."""
    slow = [connect(server) for _ in range(2)]
    try:
        for s in slow:
            s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        for method, target in (("GET", "/_fisproxy/health"), ("DELETE", "/experiments/EXP123"),
                               ("PATCH", "/safetyLevers/default/state")):
            began = time.monotonic()
            assert get(server, target, method=method).startswith(b"HTTP/1.1 200")
            assert time.monotonic() - began < 1.0
        plane.release.set()
        assert all(read_response(s).startswith(b"HTTP/1.1 200") for s in slow)
    finally:
        for s in slow:
            s.close()


def test_connections_being_served_are_never_closed_to_make_room(server: ControlServer, plane: Plane) -> None:
    served = [connect(server) for _ in range(LIMITS.per_client)]
    try:
        for s in served:
            s.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        assert get(server, "/_fisproxy/health").startswith(b"HTTP/1.1 503")  # no room: said so
        plane.release.set()
        assert all(read_response(s).startswith(b"HTTP/1.1 200") for s in served)
    finally:
        for s in served:
            s.close()


@pytest.mark.parametrize("request_bytes, status", [
    (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", b"413"),
    (b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", b"411"),
    (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", b"400"),
    (b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", b"400"),
    (b"\x00\x01garbage\r\n\r\n", b"400"),
    (b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", b"431"),
])
def test_what_is_not_read(server: ControlServer, plane: Plane, request_bytes: bytes, status: bytes) -> None:
    with connect(server) as sock:
        try:
            sock.sendall(request_bytes)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_response(sock)
        assert answer.split(b" ")[1] == status, answer
        assert b"Connection: close" in answer and closed(sock)
    assert plane.seen == []


def test_expect_100_continue(server: ControlServer) -> None:
    with connect(server) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"{}")
        assert b'"body": "{}"' in read_response(sock)


def test_the_target_is_passed_exactly_as_sent(server: ControlServer, plane: Plane) -> None:
    get(server, "//_fisproxy/health")
    get(server, "/a%2Fb?x=%FF")
    assert [r.target for r in plane.seen] == ["//_fisproxy/health", "/a%2Fb?x=%FF"]


def test_stop_closes_every_connection(plane: Plane) -> None:
    s = ControlServer(plane, "127.0.0.1", 0, limits=LIMITS)  # type: ignore[arg-type]
    s.start()
    socks: list[Any] = [connect(s) for _ in range(3)]
    s.stop()
    assert all(closed(sock, 2) for sock in socks)
    with pytest.raises(OSError):
        connect(s)


def test_a_refused_body_is_drained_so_the_client_reads_the_answer(server: ControlServer) -> None:
    """A client that sends its whole body before reading (http.client) still gets the 413: the
    server drops the body it does not want instead of resetting the connection."""
    with connect(server) as sock:
        sock.sendall(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\n\r\n")
        time.sleep(0.3)  # answered and closed by now, but the client is still sending
        for _ in range(3):
            sock.sendall(b"x" * 1_000_000)
            time.sleep(0.1)
        answer = read_response(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
