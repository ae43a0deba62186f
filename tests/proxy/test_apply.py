"""fisproxy.proxy.apply / sink / connection against real mitmproxy and real loopback sockets.

Most tests share one in-process proxy (conftest.ProxyThread) whose test addon applies the
fault named in `x-test-fault`; memory peaks are measured in fresh `mitmdump` processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection, RemoteDisconnected

import pytest
from mitmproxy.test import tflow

from fisproxy.proxy import apply
from fisproxy.proxy.sink import TOKEN_HEADER, FaultSink

from .conftest import (
    ERR_BODY,
    ERR_HEADERS,
    MB,
    PATTERN,
    chunks,
    connect,
    mitmdump,
    read_interim,
    read_reply,
    send_head,
    sha256_of,
    upload,
    wait_proxy_side_closed,
)

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def expected_error_headers(label: str = "exp/act/error") -> dict[str, str]:
    return {**{k.lower(): v for k, v in ERR_HEADERS}, "content-length": str(len(ERR_BODY)),
            apply.FAULT_HEADER: label}


def header_dict(headers) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items(multi=True)}


def aws_chunked(payload: bytes, piece: int = 64 * 1024) -> bytes:
    """STREAMING-UNSIGNED-PAYLOAD-TRAILER framing, as botocore sends PutObject over HTTPS."""
    out = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + piece]), payload[i:i + piece])
                   for i in range(0, len(payload), piece))
    return out + b"0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n"


# ---- wait ---------------------------------------------------------------------------------


async def test_wait_sleeps_the_delay():
    t = time.monotonic()
    await apply.wait(150, None)
    assert 0.14 <= time.monotonic() - t < 2


async def test_wait_returns_when_stopped_midway():
    stopped = asyncio.Event()
    asyncio.get_running_loop().call_later(0.1, stopped.set)
    t = time.monotonic()
    await apply.wait(30_000, stopped)
    assert time.monotonic() - t < 2


async def test_wait_returns_at_once_if_already_stopped_or_zero():
    stopped = asyncio.Event()
    stopped.set()
    t = time.monotonic()
    await apply.wait(30_000, stopped)
    await apply.wait(0, None)
    assert time.monotonic() - t < 5  # not the 30 s asked for


# ---- the sink on its own ------------------------------------------------------------------


async def sink_exchange(sink: FaultSink, *parts: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(sink.host, sink.port)
    for part in parts:
        writer.write(part)
        await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)  # until the sink closes
    writer.close()
    return data


def put_head(token: str, framing: str) -> bytes:
    return (f"PUT /bucket/key HTTP/1.1\r\nHost: s3.amazonaws.com\r\n{TOKEN_HEADER}: {token}\r\n"
            f"{framing}\r\n\r\n").encode()


@pytest.fixture
async def sink():
    s = FaultSink()
    await s.start()
    yield s
    s.stop()


async def test_sink_drains_content_length_and_answers_exact_bytes(sink):
    token = sink.register(503, [*ERR_HEADERS, ("Content-Length", "999"), ("Connection", "keep-alive")],
                          ERR_BODY)
    size = 3 * MB
    data = await sink_exchange(sink, put_head(token, f"Content-Length: {size}"), *chunks(size))
    head = ("HTTP/1.1 503 Service Unavailable\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in ERR_HEADERS)
            + f"Content-Length: {len(ERR_BODY)}\r\nConnection: close\r\n\r\n").encode()
    assert data == head + ERR_BODY
    assert sink.drained == size
    assert sink.pending == 0 and sink.active == 0
    again = await sink_exchange(sink, put_head(token, "Content-Length: 0"))
    assert again.startswith(b"HTTP/1.1 502 ")  # single use


async def test_sink_drains_aws_chunked_inside_http_chunked_with_trailers(sink):
    token = sink.register(400, ERR_HEADERS, ERR_BODY)
    encoded = aws_chunked(PATTERN[:300_000])
    http_chunks = [b"%x;ext=1\r\n%s\r\n" % (len(encoded[i:i + 100_000]), encoded[i:i + 100_000])
                   for i in range(0, len(encoded), 100_000)]
    data = await sink_exchange(
        sink, put_head(token, "Transfer-Encoding: chunked\r\nContent-Encoding: aws-chunked"),
        *http_chunks, b"0\r\nx-trailer: 1\r\n\r\n",
    )
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n") and data.endswith(ERR_BODY)
    assert sink.drained == len(encoded)


async def test_sink_tokens_expire_unused():
    sink = FaultSink(token_ttl=0.05)
    await sink.start()
    try:
        token = sink.register(503, ERR_HEADERS, ERR_BODY)
        assert sink.pending == 1
        await asyncio.sleep(0.1)
        assert sink.pending == 0
        data = await sink_exchange(sink, put_head(token, "Content-Length: 0"))
        assert data.startswith(b"HTTP/1.1 502 ")
    finally:
        sink.stop()


async def test_sink_drops_a_malformed_body_without_answer(sink):
    token = sink.register(503, ERR_HEADERS, ERR_BODY)
    data = await sink_exchange(sink, put_head(token, "Transfer-Encoding: chunked"), b"zz\r\n")
    assert data == b""


async def test_sink_stop_closes_listener():
    sink = FaultSink()
    await sink.start()
    host, port = sink.host, sink.port
    sink.stop()
    assert not sink.running and sink.port is None
    with pytest.raises(OSError):
        await asyncio.open_connection(host, port)


# ---- mark ---------------------------------------------------------------------------------


def test_mark_labels_markers_and_comments():
    flow = tflow.tflow(resp=True)
    apply.mark(flow, "e1/slow/latency", "latency 100 ms")
    assert flow.marked == ":hourglass:"
    assert flow.response.headers[apply.FAULT_HEADER] == "e1/slow/latency"
    apply.mark(flow, "e1/fail/error", "error 503")
    apply.mark(flow, "e1/fail/error", "error 503")  # idempotent
    assert flow.marked == ":boom:"
    assert flow.response.headers[apply.FAULT_HEADER] == "e1/slow/latency, e1/fail/error"
    assert flow.comment == "latency 100 ms\nerror 503"
    other = tflow.tflow(resp=True)
    apply.mark(other, None, "no header")
    assert apply.FAULT_HEADER not in other.response.headers and other.marked == ":boom:"


def test_drop_and_hang_survive_a_missing_connection():
    flow = tflow.tflow()  # no proxy runs: the client connection is unknown
    apply.drop(flow, "reset")
    assert flow.error and flow.error.msg == "Connection killed."
    apply.drop(flow, "close")  # already killed: still no error
    flow = tflow.tflow()
    asyncio.run(apply.hang(flow, None, max_seconds=5))
    assert flow.error  # "client gone" at once


# ---- errors in the request phase ----------------------------------------------------------


def test_error_on_get_is_answered_by_the_proxy(proxy, upstream):
    conn = HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("GET", upstream.url("/obj"), headers={"x-test-fault": "error:503", "x-test-id": "g"})
    response = conn.getresponse()
    assert response.status == 503
    assert {k.lower(): v for k, v in response.getheaders()} == expected_error_headers()
    assert response.read() == ERR_BODY
    conn.request("GET", upstream.url("/next"))  # keep-alive survives
    assert conn.getresponse().read() == b'{"ok": true}'
    conn.close()
    assert upstream.hits == [("GET", "/next")]
    flow = proxy.addon.flows["g"]
    assert flow.marked == ":boom:" and flow.comment == "injected error"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "aws-chunked"])
def test_error_on_upload_goes_through_the_sink(proxy, upstream, chunked):
    sink = proxy.addon.sink
    drained = sink.drained
    size = 20 * MB
    headers = {"x-test-fault": "error:503", "x-test-id": "u"}
    if chunked:
        headers.update({"Content-Encoding": "aws-chunked", "X-Amz-Decoded-Content-Length": str(size),
                        "X-Amz-Content-SHA256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER"})
    interim, reply = upload(proxy.port, upstream.url("/bucket/key"), size, headers, chunked=chunked)
    assert interim == CONTINUE
    assert reply.status == 503 and reply.body == ERR_BODY
    assert header_dict(reply.headers) == {**expected_error_headers(), "connection": "close"}
    assert upstream.hits == []
    assert sink.drained - drained == size  # the whole body reached the sink, and was dropped
    assert sink.pending == 0
    flow = proxy.addon.flows["u"]
    # the flow shows where it was going, not the sink
    assert (flow.request.host, flow.request.port) == ("127.0.0.1", upstream.port)
    assert TOKEN_HEADER not in flow.request.headers
    assert flow.marked == ":boom:"


# ---- memory: fresh mitmdump processes -----------------------------------------------------

_MEMORY_CASES = {
    # name: (x-test-fault, upload bytes, download bytes, bound on VmHWM growth in MiB: (min, max))
    "sink upload 200 MiB": ("error:503", 200 * MB, 0, (None, 60)),
    "buffered upload 100 MiB (contrast)": ("buffered-error:503", 100 * MB, 0, (80, None)),
    "error after upstream, 200 MiB body": ("response-error:500", 0, 200 * MB, (None, 60)),
    "buffered download 100 MiB (contrast)": ("response-buffered", 0, 100 * MB, (80, None)),
    "upload delayed 2 s, 200 MiB": ("latency:2000", 200 * MB, 0, (None, 60)),
    "upload delayed 2 s, reading not paused (contrast)": ("latency-unpaused:2000", 100 * MB, 0,
                                                          (80, None)),
    "download delayed 2 s, 200 MiB": ("response-latency:2000", 0, 200 * MB, (None, 60)),
    "download hung for 2 s, 200 MiB": ("response-hang:2", 0, 200 * MB, (None, 60)),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(_MEMORY_CASES))
def test_memory_peak_does_not_follow_the_body_size(tmp_path, upstream, case):
    fault, up_bytes, down_bytes, (low, high) = _MEMORY_CASES[case]
    # The buffered contrast cases run without fisproxy's streaming regime (nothing to contrast
    # with otherwise: mitmproxy would stream their bodies past 1 MiB).
    with mitmdump(tmp_path, streaming=not fault.startswith(("buffered", "response-buffered"))) as proc:
        # warm up every code path with a small body first, then measure the big one
        for size in (64 * 1024, None):
            if size is None:
                baseline = proc.vm("VmHWM")
                size = up_bytes or down_bytes
            if up_bytes:
                # a delayed client does not wait for 100 Continue (botocore gives up after 1 s)
                interim, reply = upload(proc.port, upstream.url("/up"), size,
                                        {"x-test-fault": fault}, expect="latency" not in fault)
            else:
                with connect(proc.port) as sock:
                    send_head(sock, "GET", upstream.url(f"/bytes/{size}"), {"x-test-fault": fault})
                    try:
                        reply = read_reply(sock)
                    except ConnectionError as e:
                        reply = e
        peak = proc.vm("VmHWM")
    growth = (peak - baseline) / MB
    print(f"\n[memory] {case}: VmHWM baseline {baseline / MB:.1f} MiB, "
          f"peak {peak / MB:.1f} MiB, growth {growth:.1f} MiB")
    if fault.startswith(("error", "buffered-error")):
        assert reply.status == 503 and reply.body == ERR_BODY
    elif fault.startswith("response-error"):
        assert reply.status == 500 and reply.body == ERR_BODY
    elif fault.startswith("response-hang"):
        assert isinstance(reply, RemoteDisconnected)  # dropped after max_seconds
    elif fault.startswith(("response-buffered", "response-latency")):
        assert reply.status == 200 and len(reply.body) == down_bytes
    else:
        assert json.loads(reply.body) == {"bytes": up_bytes, "sha256": sha256_of(up_bytes)}
    if low is not None:
        assert growth > low, "contrast case: the measurement must see a buffered body"
    if high is not None:
        assert growth < high


# ---- pass-through -------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_upload_passes_through_streamed_byte_exact(proxy, upstream, chunked):
    size = 50 * MB
    interim, reply = upload(proxy.port, upstream.url("/bucket/big"), size, {}, chunked=chunked)
    assert interim == CONTINUE and reply.status == 200
    assert json.loads(reply.body) == {"bytes": size, "sha256": sha256_of(size)}
    assert upstream.bodies == [(size, sha256_of(size))]


# ---- close / reset ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["close", "reset"])
def test_drop_before_the_upload(proxy, upstream, mode):
    with connect(proxy.port, 10) as sock:
        client_port = sock.getsockname()[1]
        send_head(sock, "PUT", upstream.url("/bucket/key"),
                  {"Content-Length": str(20 * MB), "Expect": "100-continue", "x-test-fault": mode})
        if mode == "close":
            assert read_interim(sock) == b""  # FIN, not a byte
        else:
            with pytest.raises(ConnectionResetError):
                read_interim(sock)
    wait_proxy_side_closed(proxy.port, client_port)
    assert upstream.hits == []


@pytest.mark.parametrize("mode", ["close", "reset"])
def test_drop_during_the_upload(proxy, upstream, mode):
    size = 20 * MB
    conn = HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.connect()
    client_port = conn.sock.getsockname()[1]
    with pytest.raises(ConnectionError) as raised:
        conn.request("PUT", upstream.url("/bucket/key"), body=chunks(size),
                     headers={"Content-Length": str(size), "x-test-fault": mode})
        conn.getresponse()
    conn.close()
    if mode == "close":
        # the proxy read the rest of the upload and closed cleanly: no reset, no bytes
        assert type(raised.value) is RemoteDisconnected
    else:
        assert isinstance(raised.value, ConnectionResetError | BrokenPipeError)
        assert not isinstance(raised.value, RemoteDisconnected)
    wait_proxy_side_closed(proxy.port, client_port)
    assert upstream.hits == []


@pytest.mark.parametrize("phase", ["request", "response"])
@pytest.mark.parametrize("mode", ["close", "reset"])
def test_drop_a_download(proxy, upstream, mode, phase):
    fault = mode if phase == "request" else f"response-{mode}"
    conn = HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.connect()
    client_port = conn.sock.getsockname()[1]
    conn.request("GET", upstream.url(f"/bytes/{50 * MB}"), headers={"x-test-fault": fault})
    with pytest.raises(ConnectionError) as raised:
        conn.getresponse()
    conn.close()
    if mode == "close":
        assert type(raised.value) is RemoteDisconnected
    else:
        assert type(raised.value) is ConnectionResetError
    wait_proxy_side_closed(proxy.port, client_port)
    assert len(upstream.hits) == (1 if phase == "response" else 0)


# ---- hang ---------------------------------------------------------------------------------


def test_hang_until_the_client_gives_up(proxy, upstream):
    with connect(proxy.port, 1.0) as sock:
        client_port = sock.getsockname()[1]
        send_head(sock, "GET", upstream.url("/obj"), {"x-test-fault": "hang", "x-test-id": "h"})
        t = time.monotonic()
        with pytest.raises(TimeoutError):
            sock.recv(1)
        assert time.monotonic() - t >= 0.9
    wait_proxy_side_closed(proxy.port, client_port)
    assert upstream.hits == []
    deadline = time.monotonic() + 5
    while not proxy.addon.flows["h"].error:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_hang_during_an_upload_until_the_client_gives_up(proxy, upstream):
    size = 200 * MB
    with connect(proxy.port, 1.0) as sock:
        client_port = sock.getsockname()[1]
        send_head(sock, "PUT", upstream.url("/bucket/key"),
                  {"Content-Length": str(size), "x-test-fault": "hang"})
        for piece in chunks(size):
            sock.sendall(piece)  # the proxy swallows the upload, answers nothing
        with pytest.raises(TimeoutError):
            sock.recv(1)
    wait_proxy_side_closed(proxy.port, client_port)
    assert upstream.hits == []


def test_hang_ends_when_the_action_stops_and_the_flow_continues(proxy, upstream):
    result = {}

    def client():
        conn = HTTPConnection("127.0.0.1", proxy.port, timeout=20)
        conn.request("GET", upstream.url("/obj"), headers={"x-test-fault": "hang"})
        response = conn.getresponse()
        result["reply"] = (response.status, response.read())
        conn.close()

    thread = threading.Thread(target=client)
    t = time.monotonic()
    thread.start()
    time.sleep(0.5)
    assert upstream.hits == []
    proxy.set_stopped()
    thread.join(20)
    assert result["reply"] == (200, b'{"ok": true}')
    assert time.monotonic() - t < 10
    assert upstream.hits == [("GET", "/obj")]


def test_hang_gives_up_after_max_seconds(proxy, upstream):
    conn = HTTPConnection("127.0.0.1", proxy.port, timeout=20)
    conn.request("GET", upstream.url("/obj"), headers={"x-test-fault": "hang:1"})
    t = time.monotonic()
    with pytest.raises(RemoteDisconnected):
        conn.getresponse()
    assert 0.9 <= time.monotonic() - t < 10
    conn.close()


def test_hang_in_the_response_phase(proxy, upstream):
    with connect(proxy.port, 1.0) as sock:
        client_port = sock.getsockname()[1]
        send_head(sock, "GET", upstream.url(f"/bytes/{50 * MB}"), {"x-test-fault": "response-hang"})
        with pytest.raises(TimeoutError):
            sock.recv(1)
    wait_proxy_side_closed(proxy.port, client_port)
    assert len(upstream.hits) == 1


# ---- errors after upstream ----------------------------------------------------------------


@pytest.mark.parametrize("method,path", [
    ("GET", f"/bytes/{50 * MB}"),
    ("GET", "/bytes/1000000?chunked"),
    ("GET", "/empty"),  # like S3 PutObject's 200 without body: not streamed by mitmproxy
    ("HEAD", "/obj"),
])
def test_error_after_upstream(proxy, upstream, method, path):
    conn = HTTPConnection("127.0.0.1", proxy.port, timeout=20)
    conn.request(method, upstream.url(path), headers={"x-test-fault": "response-error:500", "x-test-id": "r"})
    response = conn.getresponse()
    assert response.status == 500
    assert {k.lower(): v for k, v in response.getheaders()} == expected_error_headers()
    assert response.read() == (b"" if method == "HEAD" else ERR_BODY)
    conn.request("GET", upstream.url("/next"))  # the framing was right: keep-alive works
    assert conn.getresponse().read() == b'{"ok": true}'
    conn.close()
    assert upstream.hits == [(method, path), ("GET", "/next")]
    assert proxy.addon.flows["r"].marked == ":boom:"


# ---- latency ------------------------------------------------------------------------------


def test_many_delayed_requests_wait_concurrently(proxy, upstream):
    n, delay = 200, 1.0

    def one(i: int) -> float:
        t = time.monotonic()
        conn = HTTPConnection("127.0.0.1", proxy.port, timeout=60)
        conn.request("GET", upstream.url(f"/d/{i}"), headers={"x-test-fault": f"latency:{delay * 1000}"})
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b'{"ok": true}'
        assert response.getheader(apply.FAULT_HEADER) == "exp/act/latency"
        conn.close()
        return time.monotonic() - t

    t = time.monotonic()
    with ThreadPoolExecutor(n) as pool:
        latencies = list(pool.map(one, range(n)))
    total = time.monotonic() - t
    print(f"\n[latency] {n} concurrent x {delay:.0f} s: total {total:.2f} s, "
          f"per request min {min(latencies):.2f} s max {max(latencies):.2f} s")
    assert min(latencies) >= delay * 0.95
    assert total < 20  # serialised would be 200 s
    assert len(upstream.hits) == n


def test_stop_cuts_a_delay_short_and_the_flow_continues(proxy, upstream):
    result = {}

    def client():
        conn = HTTPConnection("127.0.0.1", proxy.port, timeout=60)
        conn.request("GET", upstream.url("/obj"), headers={"x-test-fault": "latency:30000", "x-test-id": "l"})
        response = conn.getresponse()
        result["reply"] = (response.status, response.read())
        conn.close()

    thread = threading.Thread(target=client)
    t = time.monotonic()
    thread.start()
    time.sleep(0.5)
    proxy.set_stopped()
    thread.join(30)
    assert result["reply"] == (200, b'{"ok": true}')
    assert time.monotonic() - t < 10
    assert upstream.hits == [("GET", "/obj")]
    assert proxy.addon.flows["l"].marked == ":hourglass:"


def test_latency_in_the_response_phase(proxy, upstream):
    conn = HTTPConnection("127.0.0.1", proxy.port, timeout=20)
    t = time.monotonic()
    conn.request("GET", upstream.url(f"/bytes/{5 * MB}"), headers={"x-test-fault": "response-latency:300"})
    response = conn.getresponse()
    body = response.read()
    assert time.monotonic() - t >= 0.29
    assert response.status == 200 and hashlib.sha256(body).hexdigest() == sha256_of(5 * MB)
    assert response.getheader(apply.FAULT_HEADER) == "exp/act/latency"
    conn.close()
