"""`error_for`: which error a fault sends. A user's own code reaches the SDK verbatim in every
protocol (botocore's parsers as the oracle, and real boto3 clients for SQS and DynamoDB); without
one, the service's own standard error."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from fisproxy.aws.errors import ErrorResponse, error_for, render_error, standard_error
from tests.aws.test_errors import RID, call_for, header, parse

# (api, operation, protocol): every protocol, and both awsQueryCompatible services.
PROTOCOLS = [
    ("dynamodb", "PutItem", "json"),
    ("sqs", "SendMessage", "json"),
    ("cloudwatch", "ListMetrics", "json"),
    ("cloudwatch", "ListMetrics", "smithy-rpc-v2-cbor"),
    ("cloudwatch", "ListMetrics", "query"),
    ("sns", "Publish", "query"),
    ("ec2", "DescribeInstances", "ec2"),
    ("lambda", "Invoke", "rest-json"),
    ("s3", "ListObjectsV2", "rest-xml"),
    ("route53", "ListHostedZones", "rest-xml"),
]
# Codes users write: a common one with a query-style twin, a modelled shape name whose wire code
# differs (SNS, CloudWatch), a modelled wire code, and one no model knows.
CODES = ["ThrottlingException", "Throttling", "ThrottledException", "InternalServiceFault",
         "NotFound", "QueueDoesNotExist", "MyOwnError"]


@pytest.mark.parametrize(("api", "operation", "protocol"), PROTOCOLS)
@pytest.mark.parametrize("code", CODES)
def test_custom_code_reaches_botocore_verbatim_in_every_protocol(api, operation, protocol, code):
    call = call_for(api, operation, protocol)
    resp = error_for(call, "internal", status=400, code=code, message="boom", request_id=RID)
    error = parse(call, resp)["Error"]
    assert (resp.status, error["Code"], error["Message"]) == (400, code, "boom")


def test_sqs_throttling_exception_is_not_renamed_throttling():
    """Before error_for, SQS's `x-amzn-query-error` carried `Throttling`, which SDKs report."""
    call = call_for("sqs", "SendMessage")
    resp = error_for(call, None, status=400, code="ThrottlingException", message="m")
    assert header(resp, "x-amzn-query-error") == "ThrottlingException;Sender"
    assert parse(call, resp)["Error"]["Code"] == "ThrottlingException"


def test_namespaced_custom_code_is_reported_without_its_namespace():
    call = call_for("dynamodb", "PutItem")
    resp = error_for(call, None, status=400, code="com.example#Overloaded", message="m")
    assert json.loads(resp.body)["__type"] == "com.example#Overloaded"
    assert parse(call, resp)["Error"]["Code"] == "Overloaded"


@pytest.mark.parametrize("kind", ["throttle", "internal", "unavailable"])
@pytest.mark.parametrize(("api", "operation", "protocol"), PROTOCOLS)
def test_without_a_code_the_services_standard_error_is_sent(api, operation, protocol, kind):
    call = call_for(api, operation, protocol)
    status, code, message = standard_error(call, kind)
    expected = render_error(call, status, code, message, request_id=RID)
    assert error_for(call, kind, request_id=RID) == expected
    # Naming the standard code changes nothing: it is still the service's own error.
    assert error_for(call, kind, code=code, request_id=RID) == expected


def test_no_kind_means_internal():
    call = call_for("kinesis", "PutRecord")
    assert error_for(call, None, request_id=RID) == error_for(call, "internal", request_id=RID)


def test_a_standard_code_of_another_kind_brings_its_status_and_message():
    call = call_for("sns", "Publish")
    resp = error_for(call, "internal", code="Throttling")
    error = parse(call, resp)["Error"]
    assert (resp.status, error["Code"], error["Message"]) == (400, "Throttling", "Rate exceeded")


def test_a_modelled_code_brings_the_models_status():
    call = call_for("lambda", "Invoke")
    resp = error_for(call, "internal", code="ResourceNotFoundException")
    error = parse(call, resp)["Error"]
    assert resp.status == 404
    assert error["Message"] == "ResourceNotFoundException (injected by fisproxy)"


def test_an_unknown_code_keeps_the_kinds_status():
    call = call_for("dynamodb", "GetItem")
    resp = error_for(call, "unavailable", code="Overloaded")
    assert resp.status == 503
    assert parse(call, resp)["Error"]["Code"] == "Overloaded"


def test_status_and_message_given_win_and_empty_ones_do_not():
    call = call_for("dynamodb", "GetItem")
    resp = error_for(call, "throttle", status=429, message="slow down")
    assert resp.status == 429 and parse(call, resp)["Error"]["Message"] == "slow down"
    resp = error_for(call, "throttle", code="", message="")
    assert resp == error_for(call, "throttle", request_id=header(resp, "x-amzn-RequestId"))


def test_head_requests_get_no_body():
    call = call_for("s3", "HeadObject")
    resp = error_for(call, "throttle", code="SlowDown", method="HEAD")
    assert resp.body == b"" and resp.status == 503


# ---- real boto3 clients -------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True
    response: ErrorResponse


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        resp = self.server.response
        self.send_response(resp.status)
        for name, value in resp.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        self.wfile.write(resp.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def _client(api: str, server: _Server) -> Any:
    return boto3.session.Session().client(
        api, region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="secret",
        config=Config(retries={"total_max_attempts": 1}, proxies={}),
    )


def _raised(api: str, server: _Server, code: str, invoke: Any, client: Any = None) -> ClientError:
    server.response = error_for(call_for(api), "internal", status=400, code=code, message="m")
    with pytest.raises(ClientError) as raised:
        invoke(client or _client(api, server))
    return raised.value


@pytest.mark.parametrize("code", ["ThrottlingException", "Throttling", "QueueDoesNotExist", "MyOwnError"])
def test_boto3_sqs_reports_the_custom_code(server: _Server, code: str) -> None:
    error = _raised("sqs", server, code, lambda c: c.send_message(QueueUrl="http://q/1/q", MessageBody="x"))
    assert error.response["Error"]["Code"] == code


def test_boto3_sqs_raises_the_modelled_exception_for_a_modelled_code(server: _Server) -> None:
    sqs = _client("sqs", server)
    error = _raised("sqs", server, "QueueDoesNotExist", lambda c: c.get_queue_url(QueueName="q"), sqs)
    assert isinstance(error, sqs.exceptions.QueueDoesNotExist)


@pytest.mark.parametrize("code", ["ThrottlingException", "ConditionalCheckFailedException", "MyOwnError"])
def test_boto3_dynamodb_reports_the_custom_code(server: _Server, code: str) -> None:
    error = _raised("dynamodb", server, code, lambda c: c.put_item(TableName="t", Item={"pk": {"S": "a"}}))
    assert error.response["Error"]["Code"] == code
