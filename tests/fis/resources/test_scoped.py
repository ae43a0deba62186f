"""The helpers for resource-scoped proxy faults, fed with requests real boto3 clients send and
answers a real moto server gives, and checked with botocore's own response parsers."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any
from urllib.parse import urlsplit

import botocore.session
import pytest
from botocore.parsers import create_parser

from fisproxy.aws.call import AwsCall
from fisproxy.aws.cbor import encode
from fisproxy.fis.resources.scoped import (
    FunctionRef,
    FunctionTargets,
    ShardIterators,
    StreamRef,
    StreamTargets,
    decode_body,
    function_error_response,
    http_integration_response,
    invocation_type,
    kinesis_expired_iterator_error,
    kinesis_throughput_error,
    lambda_invocation,
    stream_of_request,
)
from tests.fis.resources.conftest import ACCOUNT, Target, boto


class Sent:
    """Requests a boto3 client sends (method, path with query, headers, body)."""

    def __init__(self, client: Any) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        client.meta.events.register("before-send", self._record)

    def _record(self, request: Any, **_: Any) -> None:
        split = urlsplit(request.url)
        body = request.body or b""
        self.requests.append((request.method, split.path + ("?" + split.query if split.query else ""),
                              dict(request.headers), body if isinstance(body, bytes) else body.encode()))


def _parse(service: str, operation: str, status: int, headers: Any, body: bytes) -> dict[str, Any]:
    model = botocore.session.get_session().get_service_model(service)
    return create_parser(model.resolved_protocol).parse(
        {"status_code": status, "headers": dict(headers), "body": body}, model.operation_model(operation).output_shape)


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("index.py", "def handler(e, c):\n    return {'ok': True}\n")
    return buf.getvalue()


@pytest.fixture
def function(moto_lambda: str, tag: dict[str, str]) -> dict[str, Any]:
    lam = boto(moto_lambda, "lambda")
    role = boto(moto_lambda, "iam").create_role(RoleName=f"fn-{tag['fis-test']}", AssumeRolePolicyDocument="{}")
    fn = lam.create_function(FunctionName=f"orders-{tag['fis-test']}", Runtime="python3.12",
                             Role=role["Role"]["Arn"], Handler="index.handler", Code={"ZipFile": _zip()},
                             Tags=tag, Publish=True)
    return dict(fn)


def test_invocations_of_the_targeted_function_are_recognised_in_every_spelling(moto_lambda, function, tag, resolve):
    lam = boto(moto_lambda, "lambda")
    sent = Sent(lam)
    name, arn = function["FunctionName"], function["FunctionArn"]
    for spelling in (name, arn, f"{ACCOUNT}:function:{name}", f"{name}:1", f"{arn}:1"):
        lam.invoke(FunctionName=spelling, Payload=b"{}")
    lam.invoke(FunctionName=name, Qualifier="1", Payload=b"{}")
    refs = [lambda_invocation(method, path) for method, path, _, _ in sent.requests]
    assert [r.qualifier if r else "none" for r in refs] == [None, None, None, "1", "1", "1"]
    assert {r.name for r in refs if r} == {name}
    assert refs[1] == FunctionRef(name, None, "us-east-1", ACCOUNT, "Invoke")

    every = FunctionTargets.from_target(resolve(Target("aws:lambda:function", resource_tags=tag)))
    assert all(every.matches(r, "us-east-1") for r in refs)
    assert not every.matches(refs[0], "eu-west-1")  # same name, another region
    latest = FunctionTargets.from_arns([arn], "$LATEST")
    assert [latest.matches(r, "us-east-1") for r in refs] == [True, True, True, False, False, False]
    version = FunctionTargets.from_arns([arn], "1")
    assert [version.matches(r, "us-east-1") for r in refs] == [False, False, False, True, True, True]
    other = FunctionTargets.from_arns([arn.replace(name, "someone-else")])
    assert not any(other.matches(r, "us-east-1") for r in refs)


def test_other_lambda_calls_name_no_invocation():
    assert lambda_invocation("GET", "/2015-03-31/functions/orders") is None
    assert lambda_invocation("GET", "/2015-03-31/functions/orders/invocations") is None
    assert lambda_invocation("POST", "/2015-03-31/functions/orders/configuration") is None
    ref = lambda_invocation("POST", "/2021-11-15/functions/orders%3Aprod/response-streaming-invocations")
    assert ref == FunctionRef("orders", "prod", operation="InvokeWithResponseStream")
    assert lambda_invocation("POST", "/2014-11-13/functions/orders/invoke-async/").operation == "InvokeAsync"


def test_the_failed_function_answer_is_what_sdks_read_as_a_function_error():
    answer = function_error_response(message="boom")
    assert answer is not None and answer.status == 200
    parsed = _parse("lambda", "Invoke", answer.status, answer.headers, answer.body)
    assert parsed["FunctionError"] == "Unhandled" and parsed["StatusCode"] == 200
    assert json.loads(parsed["Payload"]) == {"errorMessage": "boom", "errorType": "invocation-error", "stackTrace": []}
    assert function_error_response(request_invocation_type="DryRun") is None
    event = function_error_response(request_invocation_type="Event")
    assert event is not None and event.status == 202 and event.body == b""
    assert invocation_type({"X-Amz-Invocation-Type": "Event"}) == "Event" and invocation_type({}) == "RequestResponse"


def test_the_http_integration_answer_carries_status_and_content_type():
    answer = http_integration_response(503, "text/plain")
    assert answer is not None
    parsed = _parse("lambda", "Invoke", answer.status, answer.headers, answer.body)
    assert "FunctionError" not in parsed and parsed["StatusCode"] == 200
    assert json.loads(parsed["Payload"]) == {"statusCode": 503, "headers": {"Content-Type": "text/plain"}, "body": ""}


def test_kinesis_calls_name_their_stream_and_get_records_is_traced_by_its_iterator(moto_url, tag):
    kinesis = boto(moto_url, "kinesis")
    name = f"clicks-{tag['fis-test']}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    description = kinesis.describe_stream(StreamName=name)["StreamDescription"]
    arn, shard = description["StreamARN"], description["Shards"][0]["ShardId"]
    sent = Sent(kinesis)
    kinesis.put_record(StreamName=name, Data=b"x", PartitionKey="k")
    kinesis.put_records(StreamARN=arn, Records=[{"Data": b"y", "PartitionKey": "k"}])
    iterator = kinesis.get_shard_iterator(StreamName=name, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records = kinesis.get_records(ShardIterator=iterator["ShardIterator"])
    bodies = [json.loads(body) for _, _, _, body in sent.requests]

    iterators = ShardIterators()
    iterators.learn("GetShardIterator", bodies[2], iterator, "us-east-1")
    iterators.learn("GetRecords", bodies[3], records, "us-east-1")
    refs = [stream_of_request(b, "us-east-1", iterators) for b in bodies]
    assert refs[0] == refs[2] == StreamRef(name, "us-east-1")
    assert refs[1] == StreamRef(name, "us-east-1", ACCOUNT)  # by ARN
    assert refs[3] == StreamRef(name, "us-east-1")  # GetRecords: the stream its iterator came from
    assert iterators.stream_of(records["NextShardIterator"]) == StreamRef(name, "us-east-1")

    targeted = StreamTargets.from_arns([arn])
    assert all(targeted.matches(r, "us-east-1") for r in refs)
    assert not targeted.matches(StreamRef(name), "eu-west-1")
    assert not StreamTargets.from_arns([arn.replace(name, "other")]).matches(refs[0], "us-east-1")
    assert stream_of_request({"ShardIterator": "unknown"}, "us-east-1", iterators) is None


def test_cbor_bodies_of_the_java_sdk_and_malformed_ones():
    body = encode({"StreamName": "clicks", "PartitionKey": "k"})
    assert decode_body(body, "application/x-amz-cbor-1.1") == {"StreamName": "clicks", "PartitionKey": "k"}
    assert decode_body(b"\xff\x00garbage", "application/x-amz-cbor-1.1") is None
    assert decode_body(b"{not json", "application/x-amz-json-1.1") is None
    assert decode_body(b"[1]", "application/x-amz-json-1.1") is None
    consumer = "arn:aws:kinesis:us-east-1:123456789012:stream/clicks/consumer/app:1700000000"
    assert stream_of_request({"ConsumerARN": consumer}, None) == StreamRef("clicks", "us-east-1", ACCOUNT)


def test_shard_iterators_are_bounded_least_recently_used_first_out():
    iterators = ShardIterators(limit=3)
    for i in range(5):
        iterators.remember(f"it-{i}", StreamRef(f"s{i}"))
    assert len(iterators) == 3
    assert iterators.stream_of("it-0") is None and iterators.stream_of("it-4") == StreamRef("s4")


@pytest.mark.parametrize(("render", "code"), [
    (lambda call: kinesis_throughput_error(call, StreamRef("clicks", "us-east-1", ACCOUNT)),
     "ProvisionedThroughputExceededException"),
    (kinesis_expired_iterator_error, "ExpiredIteratorException"),
])
def test_kinesis_errors_are_kinesis_own(render, code):
    call = AwsCall(service="kinesis", region="us-east-1", operation="GetRecords", api="kinesis")
    answer = render(call)
    parsed = _parse("kinesis", "GetRecords", answer.status, answer.headers, answer.body)
    assert answer.status == 400 and parsed["Error"]["Code"] == code
    assert parsed["Error"]["Message"]
