"""Limits a client can reach, end to end (real proxy, real moto, real clients): control bodies
over 1 MiB, query calls whose form body is over 1 MiB, and a report read right after a call."""

from __future__ import annotations

import http.client
import socket
import ssl
import uuid

import botocore.exceptions
import pytest

from tests.e2e.conftest import Fisproxy, start_action
from tests.e2e.test_faults import make_table

MIB = 1 << 20


def test_control_port_refuses_a_body_over_1_mib_with_413(proxy: Fisproxy) -> None:
    before = proxy.fis().list_experiment_templates()["experimentTemplates"]
    body = b'{"description": "' + b"x" * (2 * MIB) + b'"}'
    with socket.create_connection(("127.0.0.1", proxy.control_port), timeout=10) as sock:
        try:
            sock.sendall(b"POST /experimentTemplates HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        except (BrokenPipeError, ConnectionResetError):
            # The server answers from the headers and closes without reading the body: the rest
            # of the upload may fail, and the answer is read all the same (as urllib3 does).
            # http.client's request() raised here, before reading it: the test's flake.
            pass
        reply = http.client.HTTPResponse(sock, method="POST")
        reply.begin()
        answer = reply.read()
    assert reply.status == 413
    assert reply.getheader("x-amzn-ErrorType") == "ValidationException"
    assert b"larger than" in answer
    assert proxy.fis().list_experiment_templates()["experimentTemplates"] == before  # nothing stored


def through_proxy_tls(proxy: Fisproxy, host: str) -> http.client.HTTPSConnection:
    ctx = ssl.create_default_context(cafile=proxy.ca)
    conn = http.client.HTTPSConnection("127.0.0.1", proxy.port, timeout=20, context=ctx)
    conn.set_tunnel(host, 443)
    return conn


def test_fis_request_over_1_mib_through_the_proxy_is_refused_never_forwarded(proxy: Fisproxy) -> None:
    conn = through_proxy_tls(proxy, "fis.us-east-1.amazonaws.com")
    body = b'{"description": "' + b"x" * (2 * MIB) + b'"}'
    conn.request("POST", "/experimentTemplates", body=body, headers={"content-type": "application/json"})
    reply = conn.getresponse()
    assert reply.status == 413
    assert reply.getheader("x-amzn-ErrorType") == "ValidationException"
    assert b"larger than" in reply.read()
    # A small one on a new connection is answered by fisproxy's FIS API, as always.
    conn = through_proxy_tls(proxy, "fis.us-east-1.amazonaws.com")
    conn.request("GET", "/experimentTemplates")
    reply = conn.getresponse()
    assert reply.status == 200 and b"experimentTemplates" in reply.read()


def test_chunked_control_requests_are_refused_cleanly(proxy: Fisproxy) -> None:
    with socket.create_connection(("127.0.0.1", proxy.control_port), timeout=10) as sock:
        sock.sendall(b"POST /experimentTemplates HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n0\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 411")


def test_query_call_with_a_form_body_over_1_mib_gets_service_wide_faults(proxy: Fisproxy) -> None:
    sns = proxy.client("sns", retries={"mode": "standard", "total_max_attempts": 1})
    topic = sns.create_topic(Name=f"t-{uuid.uuid4().hex[:8]}")["TopicArn"]
    big = "x" * (MIB + MIB // 2)  # Action=Publish comes first in the body; the body streams on
    start_action(proxy, "fisproxy:api:error", {"service": "sns", "statusCode": "503",
                                               "errorCode": "ServiceUnavailable"})
    with pytest.raises(botocore.exceptions.ClientError) as err:
        sns.publish(TopicArn=topic, Message=big)
    assert err.value.response["Error"]["Code"] == "ServiceUnavailable"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503


def test_a_report_read_right_after_a_call_counts_it(proxy: Fisproxy) -> None:
    table = f"t-{uuid.uuid4().hex[:8]}"
    make_table(proxy, table)
    exp_id = start_action(proxy, "fisproxy:api:latency", {"service": "dynamodb", "operations": "GetItem",
                                                         "latencyMilliseconds": "1"})
    ddb = proxy.client("dynamodb")
    for _ in range(3):
        ddb.get_item(TableName=table, Key={"pk": {"S": "0"}})
    # No waiting for the recorder's next flush: the report writes what is pending first.
    report = proxy.control("GET", f"/_fisproxy/experiments/{exp_id}/report").json()
    [row] = report["actions"][0]["rows"]
    assert (row["operation"], row["requests"], row["faulted"]) == ("GetItem", 3, 3)
