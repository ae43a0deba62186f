"""Malformed traffic over raw sockets, at a real `fisproxy run` in front of a real moto server.

Garbage request lines, huge headers, undecodable and control bytes in X-Amz-Target,
Authorization and Host, bad chunked encoding, truncated bodies, absolute-form URLs with odd
hosts, CONNECT to nowhere, HTTP/2 preface garbage, at the proxy port and at the control port;
then a thousand invented operations. Whatever each one gets back (an error, a closed
connection), afterwards: no traceback in fisproxy's log, the process alive, /metrics served
and small, and a normal boto3 call through the proxy and a FIS call on the control port work.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import Fisproxy

AWS_HOST = b"dynamodb.us-east-1.amazonaws.com"
SIGNED = (b"AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240501/us-east-1/dynamodb/aws4_request, "
          b"SignedHeaders=host;x-amz-date, Signature=" + b"0" * 64)


def exchange(port: int, data: bytes, *, wait: float = 1.5) -> bytes:
    """Send `data` on a fresh connection and read what comes back: one whole response, or
    whatever arrived before the server closed or `wait` seconds passed without a byte. (The
    write side stays open: mitmproxy takes a half-closed client for a gone one.)"""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(data)
        except OSError:  # the server may close before taking it all (huge headers)
            pass
        sock.settimeout(wait)
        received = b""
        try:
            while not complete(received) and (chunk := sock.recv(65536)):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return received


def complete(response: bytes) -> bool:
    head, sep, body = response.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False  # no length: read until the server closes


def status(response: bytes) -> int | None:
    parts = response.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and response.startswith(b"HTTP/") and parts[1].isdigit() else None


def aws_request(target: bytes = b"DynamoDB_20120810.ListTables", *, auth: bytes = SIGNED, host: bytes = AWS_HOST,
                body: bytes = b"{}", extra: bytes = b"") -> bytes:
    """A plain-HTTP DynamoDB call in absolute form, as a proxy client sends it."""
    return (b"POST http://" + AWS_HOST + b"/ HTTP/1.1\r\nHost: " + host + b"\r\n"
            b"X-Amz-Target: " + target + b"\r\nAuthorization: " + auth + b"\r\n"
            b"Content-Type: application/x-amz-json-1.0\r\n" + extra +
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


FISPROXY_FAILED = b"internal error in fisproxy"  # the control API's answer to its own exceptions
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
TLS_GARBAGE = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\xff" * 300

# What the proxy port gets: (name, bytes).
AT_PROXY = [
    ("garbage request line", b"\x00\x01\x02garbage\xff\xfe\r\n\r\n"),
    ("no version", b"GET /\r\n\r\n"),
    ("unknown version", b"GET http://example.com/ HTTP/9.9\r\nHost: example.com\r\n\r\n"),
    ("only a method", b"GET\r\n\r\n"),
    ("binary", bytes(range(256)) * 4),
    ("huge header", b"GET http://" + AWS_HOST + b"/ HTTP/1.1\r\nHost: " + AWS_HOST + b"\r\nX-Big: "
     + b"a" * 300_000 + b"\r\n\r\n"),
    ("many headers", b"GET http://" + AWS_HOST + b"/ HTTP/1.1\r\nHost: " + AWS_HOST + b"\r\n"
     + b"".join(b"X-H%d: v\r\n" % i for i in range(5000)) + b"\r\n"),
    ("target not UTF-8", aws_request(b"DynamoDB_20120810.List\xff\xfeTables")),
    ("target control bytes", aws_request(b"DynamoDB_20120810.\x01\x7f\x08")),
    ("target encoded surrogate", aws_request(b"DynamoDB_20120810.\xed\xa0\x80")),
    ("target empty prefix", aws_request(b".")),
    ("target huge", aws_request(b"DynamoDB_20120810." + b"A" * 60_000)),
    ("authorization not UTF-8", aws_request(auth=b"AWS4-HMAC-SHA256 Credential=\xff\xfe/2024/us-east-1/dynamodb/aws4_request")),
    ("authorization odd scope", aws_request(auth=b"AWS4-HMAC-SHA256 Credential=AK/20240501/\xff\x00/\xfe\xfe/aws4_request")),
    ("authorization control bytes", aws_request(auth=b"AWS4-HMAC-SHA256 Credential=\x01\x02\x03")),
    ("authorization sigv2", aws_request(auth=b"AWS \xff\xfe:sig")),
    ("host not UTF-8", aws_request(host=b"dynamo\xffdb.us-east-1.amazonaws.com")),
    ("host control bytes", aws_request(host=b"\x01\x02")),
    ("host with path", aws_request(host=b"x/_fisproxy/health?")),
    ("sdk headers", aws_request(extra=b"amz-sdk-invocation-id: \xff\xfe" + b"x" * 5000 + b"\r\n"
                                b"amz-sdk-request: attempt=" + b"9" * 5000 + b"\r\n")),
    ("bad chunk size", b"POST http://" + AWS_HOST + b"/ HTTP/1.1\r\nHost: " + AWS_HOST + b"\r\n"
     b"Transfer-Encoding: chunked\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
    ("chunk longer than sent", b"POST http://" + AWS_HOST + b"/ HTTP/1.1\r\nHost: " + AWS_HOST + b"\r\n"
     b"Transfer-Encoding: chunked\r\n\r\nffffff\r\nabc"),
    ("chunked and length", b"POST http://" + AWS_HOST + b"/ HTTP/1.1\r\nHost: " + AWS_HOST + b"\r\n"
     b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"),
    ("truncated body", aws_request(body=b'{"a": 1}')[:-4]),
    ("length larger than body", b"POST http://" + AWS_HOST + b"/ HTTP/1.1\r\nHost: " + AWS_HOST + b"\r\n"
     b"Content-Length: 100000\r\n\r\n{}"),
    ("negative length", b"POST http://" + AWS_HOST + b"/ HTTP/1.1\r\nHost: " + AWS_HOST + b"\r\nContent-Length: -1\r\n\r\n"),
    ("absolute-form bad port", b"GET http://" + AWS_HOST + b":99999/ HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("absolute-form open bracket", b"GET http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("absolute-form empty host", b"GET http:/// HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("absolute-form dots", b"GET http://a..b.amazonaws.com/ HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("absolute-form bytes", b"GET http://\xff\xfe.amazonaws.com/ HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("absolute-form userinfo", b"GET http://user:pw@" + AWS_HOST + b"/ HTTP/1.1\r\nHost: x\r\n\r\n"),
    ("fis host bad body", b"POST http://fis.us-east-1.amazonaws.com/experimentTemplates HTTP/1.1\r\n"
     b"Host: fis.us-east-1.amazonaws.com\r\nContent-Length: 200000\r\n\r\n" + b"[" * 200_000),
    ("fis host label bytes", b"GET http://fis.us-east-1.amazonaws.com/experimentTemplates/\xff\xfe HTTP/1.1\r\n"
     b"Host: fis.us-east-1.amazonaws.com\r\n\r\n"),
    ("connect to nowhere", b"CONNECT nowhere.invalid:443 HTTP/1.1\r\nHost: nowhere.invalid:443\r\n\r\n" + TLS_GARBAGE),
    ("connect closed port", b"CONNECT 127.0.0.1:1 HTTP/1.1\r\n\r\n" + TLS_GARBAGE),
    ("connect no port", b"CONNECT " + AWS_HOST + b" HTTP/1.1\r\n\r\n"),
    ("connect aws then garbage", b"CONNECT " + AWS_HOST + b":443 HTTP/1.1\r\n\r\n" + TLS_GARBAGE),
    ("http2 preface garbage", HTTP2_PREFACE + b"\x00\x00\x12\x04\x00\x00\x00\x00\x00" + b"\xff" * 64),
    ("http2 preface only", HTTP2_PREFACE),
]

# What the control port gets: for a name it answers to, with JSON bodies (else refused before
# the API sees them: browser.py).
FIS_PATH = b"/experimentTemplates"
JSON = b"Content-Type: application/json\r\n"
AT_CONTROL = [
    ("garbage request line", b"\x00\x01\x02garbage\xff\xfe\r\n\r\n"),
    ("huge header", b"GET /_fisproxy/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 300_000 + b"\r\n\r\n"),
    ("host not UTF-8", b"GET " + FIS_PATH + b" HTTP/1.1\r\nHost: \xff\xfe\r\n\r\n"),
    ("authorization not UTF-8", b"GET " + FIS_PATH + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: AWS4-HMAC-SHA256 "
     b"Credential=\xff/20240501/us-east-1/fis/aws4_request, SignedHeaders=host, Signature=\xfe\r\n\r\n"),
    ("label not UTF-8", b"GET /experimentTemplates/\xff\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    ("query not UTF-8", b"GET /experimentTemplates?nextToken=\xff&maxResults=\xfe HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    ("body nested deep", b"POST " + FIS_PATH + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + JSON + b"Content-Length: 200000\r\n\r\n" + b"[" * 200_000),
    ("body not UTF-8", b"POST " + FIS_PATH + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + JSON + b"Content-Length: 4\r\n\r\n\xff\xfe\xfd\xfc"),
    ("chaos body nested deep", b"POST /_localstack/chaos/faults HTTP/1.1\r\nHost: 127.0.0.1\r\n" + JSON + b"Content-Length: 100000\r\n\r\n"
     + b"[" * 100_000),
    ("bad chunk size", b"POST " + FIS_PATH + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + JSON + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"),
    ("truncated body", b"POST " + FIS_PATH + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + JSON + b"Content-Length: 500\r\n\r\n{\"description\":"),
    ("absolute-form odd host", b"GET http://\xff\xfe/_fisproxy/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    ("asterisk form", b"OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
    ("connect", b"CONNECT nowhere.invalid:443 HTTP/1.1\r\n\r\n" + TLS_GARBAGE),
    ("http2 preface garbage", HTTP2_PREFACE + b"\xff" * 64),
]

# Control-API requests that reach the FIS API: a model error (400), never a 500.
FIS_400 = {"label not UTF-8", "query not UTF-8", "body nested deep", "body not UTF-8"}


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory, moto: str) -> Iterator[Fisproxy]:
    """A fisproxy of its own, so its log holds only this module's traffic."""
    with Fisproxy(tmp_path_factory.mktemp("fisproxy-malformed"), moto).running() as proxy:
        yield proxy


def assert_still_fine(proxy: Fisproxy) -> None:
    assert proxy.proc is not None and proxy.proc.poll() is None, "fisproxy exited"
    log = proxy.log.read_text(errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback") - 2000:][:6000]
    assert proxy.control("GET", "/_fisproxy/health").status_code == 200


@pytest.mark.parametrize("name, data", AT_PROXY, ids=[n for n, _ in AT_PROXY])
def test_malformed_at_the_proxy_port(target: Fisproxy, name: str, data: bytes) -> None:
    response = exchange(target.port, data)
    # Whatever the upstream answers passes through (moto answers invented operations with its
    # own 500); fisproxy itself never fails a request.
    assert FISPROXY_FAILED not in response, response[:500]
    assert_still_fine(target)


@pytest.mark.parametrize("name, data", AT_CONTROL, ids=[n for n, _ in AT_CONTROL])
def test_malformed_at_the_control_port(target: Fisproxy, name: str, data: bytes) -> None:
    response = exchange(target.control_port, data)
    code = status(response)
    assert code is None or code < 500, response[:500]
    if name in FIS_400:
        assert code == 400 and b"ValidationException" in response, response[:500]
    assert_still_fine(target)


def test_invented_operations_do_not_grow_metrics(target: Fisproxy) -> None:
    before = target.control("GET", "/metrics").content  # a scrape counts what is pending first
    for i in range(1000):
        op = b"DynamoDB_20120810.Invented%d" % i + (b"\xff" if i % 2 else b"")
        # Each gets an answer (moto's own error): the wait bounds a slow one, e.g. the first
        # while moto loads its DynamoDB backend on a busy machine.
        response = exchange(target.port, aws_request(op), wait=15)
        assert response.startswith(b"HTTP/1.1 ") and FISPROXY_FAILED not in response, response[:300]
    metrics = target.control("GET", "/metrics")
    assert metrics.status_code == 200
    assert b"Invented" not in metrics.content
    assert len(metrics.content) < 64 * 1024, len(metrics.content)
    # At most an `unknown` series or two: were each invented operation a label, the thousand
    # would add some 35 KiB (about 70 bytes a series). The memory they leave is measured in
    # tests/test_metrics.py, over 3,000.
    assert len(metrics.content) - len(before) < 2048, metrics.text
    assert_still_fine(target)


def test_normal_calls_work_afterwards(target: Fisproxy) -> None:
    ddb = target.client("dynamodb")
    assert "TableNames" in ddb.list_tables()
    fis = target.fis()
    created = fis.create_experiment_template(
        description="after the garbage", roleArn="arn:aws:iam::123456789012:role/fis",
        stopConditions=[{"source": "none"}],
        actions={"wait": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1S"}}},
    )["experimentTemplate"]
    assert fis.get_experiment_template(id=created["id"])["experimentTemplate"]["description"] == "after the garbage"
    report = target.control("GET", "/metrics")
    assert report.status_code == 200 and b'operation="ListTables"' in report.content
    assert json.loads(target.control("GET", "/_fisproxy/health").content)["status"] == "ok"
    assert_still_fine(target)
