"""Rendered errors, read back by botocore's own parser for each protocol (the oracle), and
classified by botocore's own retry checkers (legacy `_retry.json` and the standard code lists).
Real clients against a real socket are in test_error_retries.py."""

from __future__ import annotations

import json
import zlib
from functools import cache
from types import SimpleNamespace
from xml.etree import ElementTree

import pytest
from botocore import retryhandler, translate
from botocore.parsers import RpcV2CBORParser, create_parser
from botocore.retries import standard
from urllib3 import HTTPHeaderDict

from fisproxy.aws import catalog, cbor
from fisproxy.aws.call import AwsCall
from fisproxy.aws.errors import ErrorResponse, render_error, standard_error

RID = "0c5ab7a4-1d5b-4d4e-9f8e-0123456789ab"


def call_for(api: str, operation: str | None = None, protocol: str | None = None) -> AwsCall:
    model = catalog.service_model(api)
    return AwsCall(
        service=catalog.signing_name(api),
        api=api,
        operation=operation,
        protocol=protocol or model.resolved_protocol,
    )


def parse(call: AwsCall, resp: ErrorResponse, protocol: str | None = None) -> dict:
    """What botocore makes of the response, as the client for `call` would."""
    model = catalog.service_model(call.api) if call.api else None
    shape = None
    if model is not None and call.operation:
        shape = model.operation_model(call.operation).output_shape
    http = {"status_code": resp.status, "headers": HTTPHeaderDict(resp.headers), "body": resp.body}
    return create_parser(protocol or call.protocol).parse(http, shape)


def header(resp: ErrorResponse, name: str) -> str | None:
    return HTTPHeaderDict(resp.headers).get(name)


# --- Table 3.6 of the reference: (api, operation) x kind -> (status, code SDKs report) ---------

DDB_THROTTLE = "com.amazon.coral.availability#ThrottlingException"
# fmt: off
EXPECTED = {
    ("dynamodb", "GetItem"): [(400, "ThrottlingException"), (500, "InternalServerError"), (503, "ServiceUnavailable")],
    ("dynamodb", "ListTables"): [(400, "ThrottlingException"), (500, "InternalServerError"), (503, "ServiceUnavailable")],
    ("kinesis", "PutRecord"): [(400, "ProvisionedThroughputExceededException"), (500, "InternalFailureException"), (503, "ServiceUnavailable")],
    ("kinesis", "ListStreams"): [(400, "LimitExceededException"), (500, "InternalFailureException"), (503, "ServiceUnavailable")],
    ("sqs", "SendMessage"): [(403, "RequestThrottled"), (500, "InternalError"), (503, "ServiceUnavailable")],
    ("sns", "Publish"): [(400, "Throttling"), (500, "InternalError"), (503, "ServiceUnavailable")],
    ("sts", "GetCallerIdentity"): [(400, "Throttling"), (500, "InternalFailure"), (503, "ServiceUnavailable")],
    ("iam", "ListRoles"): [(400, "Throttling"), (500, "ServiceFailure"), (503, "ServiceUnavailable")],
    ("ec2", "DescribeInstances"): [(503, "RequestLimitExceeded"), (500, "InternalError"), (503, "Unavailable")],
    ("cloudwatch", "PutMetricData"): [(400, "Throttling"), (500, "InternalServiceError"), (503, "ServiceUnavailable")],
    ("logs", "PutLogEvents"): [(400, "ThrottlingException"), (500, "InternalServerException"), (503, "ServiceUnavailableException")],
    ("kms", "Decrypt"): [(400, "ThrottlingException"), (500, "KMSInternalException"), (503, "ServiceUnavailable")],
    ("ssm", "GetParameter"): [(400, "ThrottlingException"), (500, "InternalServerError"), (503, "ServiceUnavailable")],
    ("stepfunctions", "StartExecution"): [(400, "ThrottlingException"), (500, "InternalFailure"), (503, "ServiceUnavailable")],
    ("events", "PutEvents"): [(400, "ThrottlingException"), (500, "InternalException"), (503, "ServiceUnavailable")],
    ("secretsmanager", "GetSecretValue"): [(400, "ThrottlingException"), (500, "InternalServiceError"), (503, "ServiceUnavailable")],
    ("lambda", "Invoke"): [(429, "TooManyRequestsException"), (500, "ServiceException"), (503, "ServiceUnavailable")],
    ("apigateway", "GetRestApis"): [(429, "TooManyRequestsException"), (500, "InternalFailure"), (503, "ServiceUnavailableException")],
    ("s3", "ListObjectsV2"): [(503, "SlowDown"), (500, "InternalError"), (503, "ServiceUnavailable")],
    ("route53", "ListHostedZones"): [(400, "Throttling"), (500, "InternalFailure"), (503, "ServiceUnavailable")],
    # A service with no row of its own: the generic rule.
    ("fis", "ListExperiments"): [(400, "ThrottlingException"), (500, "InternalFailure"), (503, "ServiceUnavailable")],
}
# fmt: on
KINDS = ("throttle", "internal", "unavailable")
TABLE = [
    pytest.param(api, op, kind, status, code, id=f"{api}-{op}-{kind}")
    for (api, op), rows in EXPECTED.items()
    for kind, (status, code) in zip(KINDS, rows, strict=True)
]


@pytest.mark.parametrize(("api", "operation", "kind", "status", "code"), TABLE)
def test_standard_error_matches_reference_and_parses_back(api, operation, kind, status, code):
    call = call_for(api, operation)
    got_status, got_code, message = standard_error(call, kind)
    assert (got_status, got_code.rpartition("#")[2]) == (status, code)

    resp = render_error(call, got_status, got_code, message, request_id=RID)
    parsed = parse(call, resp)
    assert resp.status == status
    assert parsed["Error"]["Code"] == code
    assert parsed["Error"]["Message"] == message
    assert parsed["ResponseMetadata"]["RequestId"] == RID
    if api != "s3":
        assert header(resp, "x-amzn-RequestId") == RID


def test_dynamodb_throttle_uses_the_coral_type_and_a_correct_crc32():
    call = call_for("dynamodb", "PutItem")
    status, code, message = standard_error(call, "throttle")
    assert code == DDB_THROTTLE
    resp = render_error(call, status, code, message)
    body = json.loads(resp.body)
    assert body["__type"] == header(resp, "x-amzn-ErrorType") == DDB_THROTTLE
    assert header(resp, "x-amz-crc32") == str(zlib.crc32(resp.body))
    assert header(resp, "Content-Type") == "application/x-amz-json-1.0"


@pytest.mark.parametrize("api", ["dynamodb", "kinesis", "sqs", "logs", "cloudwatch"])
def test_json_type_and_error_type_header_are_identical(api):
    call = call_for(api)
    resp = render_error(call, *standard_error(call, "internal"))
    assert json.loads(resp.body)["__type"] == header(resp, "x-amzn-ErrorType")
    version = catalog.service_model(api).metadata["jsonVersion"]
    assert header(resp, "Content-Type") == f"application/x-amz-json-{version}"
    assert (header(resp, "x-amz-crc32") is not None) == (api == "dynamodb")


@pytest.mark.parametrize(
    ("api", "kind", "query_code", "type_name", "fault"),
    [
        ("sqs", "throttle", "RequestThrottled", "RequestThrottled", "Sender"),
        ("sqs", "internal", "InternalError", "InternalError", "Receiver"),
        ("sqs", "unavailable", "ServiceUnavailable", "ServiceUnavailable", "Receiver"),
        ("cloudwatch", "throttle", "Throttling", "ThrottlingException", "Sender"),
        ("cloudwatch", "internal", "InternalServiceError", "InternalServiceFault", "Receiver"),
    ],
)
@pytest.mark.parametrize("protocol", ["json", "smithy-rpc-v2-cbor"])
def test_query_compatible_services_send_the_query_code(
    api, kind, query_code, type_name, fault, protocol
):
    call = call_for(api, protocol=protocol)
    resp = render_error(call, *standard_error(call, kind), request_id=RID)
    assert header(resp, "x-amzn-query-error") == f"{query_code};{fault}"
    error = parse(call, resp)["Error"]
    assert error["Code"] == query_code
    assert error["QueryErrorCode"] == type_name
    assert error["Type"] == fault


def test_query_compatible_code_can_be_given_either_way():
    call = call_for("cloudwatch")
    by_code = render_error(call, 500, "InternalServiceError", "m", request_id=RID)
    by_name = render_error(call, 500, "InternalServiceFault", "m", request_id=RID)
    assert by_code == by_name
    assert json.loads(by_code.body) == {"__type": "InternalServiceFault", "Message": "m"}


def test_cloudwatch_in_all_three_protocols_reports_throttling():
    for protocol in ("json", "smithy-rpc-v2-cbor", "query"):
        call = call_for("cloudwatch", "ListMetrics", protocol=protocol)
        resp = render_error(call, *standard_error(call, "throttle"), request_id=RID)
        parsed = parse(call, resp)
        assert parsed["Error"]["Code"] == "Throttling", protocol
        assert parsed["ResponseMetadata"]["RequestId"] == RID


def test_cbor_error_bytes_and_mandatory_header():
    call = call_for("cloudwatch", "ListMetrics", protocol="smithy-rpc-v2-cbor")
    resp = render_error(call, 400, "ThrottlingException", "Rate exceeded", request_id=RID)
    assert header(resp, "smithy-protocol") == "rpc-v2-cbor"
    assert header(resp, "Content-Type") == "application/cbor"
    # The reference's example document, byte for byte (section 2.7).
    assert resp.body == (
        bytes.fromhex("a2665f5f74797065782c")
        + b"com.amazonaws.cloudwatch#ThrottlingException"
        + bytes.fromhex("676d6573736167656d")
        + b"Rate exceeded"
    )


@pytest.mark.parametrize(
    "value",
    [
        {"__type": "com.amazonaws.cloudwatch#ThrottlingException", "message": "Rate exceeded"},
        {
            "m": "é" * 40,
            "long": "x" * 70000,
            "nested": {"list": [0, 23, 24, 255, 256, 65536, 2**32, -1, -25]},
        },
        [True, False, None, b"\x00\xff", ""],
    ],
)
def test_cbor_encoder_round_trips_through_botocore(value):
    parser = RpcV2CBORParser()
    stream = parser.get_peekable_stream_from_bytes(cbor.encode(value))
    assert parser.parse_data_item(stream) == value


def test_cbor_encoder_rejects_what_it_does_not_support():
    with pytest.raises(TypeError, match="float"):
        cbor.encode({"x": 1.5})


def test_s3_error_has_no_namespace_and_ids_in_headers_and_body():
    call = call_for("s3", "GetObject")
    resp = render_error(call, *standard_error(call, "throttle"))
    root = ElementTree.fromstring(resp.body)
    assert root.tag == "Error"  # literally: `{namespace}Error` makes botocore read Code=''
    assert root.findtext("Code") == "SlowDown"
    request_id, host_id = header(resp, "x-amz-request-id"), header(resp, "x-amz-id-2")
    assert request_id and root.findtext("RequestId") == request_id
    assert host_id and root.findtext("HostId") == host_id
    assert header(resp, "x-amzn-RequestId") is None
    metadata = parse(call, resp)["ResponseMetadata"]
    assert (metadata["RequestId"], metadata["HostId"]) == (request_id, host_id)


def test_s3_head_is_status_and_ids_only_and_reads_as_503():
    call = call_for("s3", "HeadObject")
    resp = render_error(
        call, *standard_error(call, "throttle"), method="HEAD", request_id="4442587FB7D0A2F9"
    )
    assert resp.body == b""
    assert {k.lower() for k, _ in resp.headers} == {"x-amz-request-id", "x-amz-id-2"}
    parsed = parse(call, resp)
    assert parsed["Error"] == {"Code": "503", "Message": "Service Unavailable"}
    # botocore's generic 5xx path keeps the ids only among the headers.
    assert parsed["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"] == "4442587FB7D0A2F9"


@pytest.mark.parametrize("api", ["dynamodb", "sns", "ec2", "route53", "cloudwatch"])
def test_head_has_no_body_in_any_protocol(api):
    resp = render_error(
        call_for(api), 500, "InternalFailure", "boom", method="head", request_id=RID
    )
    assert resp.body == b""
    assert resp.headers == (("x-amzn-RequestId", RID),)


def test_rest_json_head_keeps_the_error_type_header():
    # rest-json parsers take the code from x-amzn-ErrorType, so a HEAD 4xx is still classified.
    call = call_for("mediastore-data", "DescribeObject")
    resp = render_error(
        call, 400, "ThrottlingException", "Rate exceeded", method="HEAD", request_id=RID
    )
    assert resp.body == b""
    assert resp.headers == (("x-amzn-RequestId", RID), ("x-amzn-ErrorType", "ThrottlingException"))
    assert parse(call, resp)["Error"]["Code"] == "ThrottlingException"


def test_route53_uses_error_response_document():
    call = call_for("route53", "ListHostedZones")
    resp = render_error(call, 400, "Throttling", "Rate exceeded", request_id=RID)
    root = ElementTree.fromstring(resp.body)
    assert root.tag.endswith("ErrorResponse")
    assert [child.tag for child in root] == ["Error", "RequestId"]
    parsed = parse(call, resp)
    assert parsed["Error"] == {"Type": "Sender", "Code": "Throttling", "Message": "Rate exceeded"}
    assert parsed["ResponseMetadata"]["RequestId"] == RID


def test_query_document_layout():
    call = call_for("sns", "Publish")
    resp = render_error(call, 500, "InternalError", "Internal <&> error", request_id=RID)
    root = ElementTree.fromstring(resp.body)
    ns = "{http://sns.amazonaws.com/doc/2010-03-31/}"
    assert root.tag == f"{ns}ErrorResponse"
    error = root.find(f"{ns}Error")
    assert [c.tag.removeprefix(ns) for c in error] == ["Type", "Code", "Message"]
    assert error.findtext(f"{ns}Type") == "Receiver"
    assert root.findtext(f"{ns}RequestId") == RID
    assert parse(call, resp)["Error"]["Message"] == "Internal <&> error"


def test_query_sends_the_modelled_code_not_the_shape_name():
    call = call_for("sns", "Publish")
    resp = render_error(call, 429, "ThrottledException", "Rate exceeded")
    assert ElementTree.fromstring(resp.body).find(".//{*}Code").text == "Throttled"


def test_ec2_document_layout():
    call = call_for("ec2", "DescribeInstances")
    resp = render_error(call, *standard_error(call, "throttle"), request_id=RID)
    root = ElementTree.fromstring(resp.body)
    assert root.tag == "Response"
    assert root.findtext("Errors/Error/Code") == "RequestLimitExceeded"
    assert root.findtext("RequestID") == RID
    assert root.find("Errors/Error/Type") is None
    assert parse(call, resp)["ResponseMetadata"]["RequestId"] == RID


def test_rest_json_retry_after_only_where_modelled_and_modelled_message_key():
    call = call_for("lambda", "Invoke")
    throttle = render_error(call, *standard_error(call, "throttle"))
    assert header(throttle, "Retry-After") == "1"
    assert json.loads(throttle.body) == {"message": "Rate Exceeded."}
    internal = render_error(call, *standard_error(call, "internal"))
    assert header(internal, "Retry-After") is None
    assert json.loads(internal.body) == {"Message": "Internal server error"}  # Lambda's member
    assert header(internal, "x-amzn-ErrorType") == "ServiceException"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, "ValidationException"),
        (404, "ResourceNotFoundException"),
        (409, "ConflictException"),
        (402, "ServiceQuotaExceededException"),
    ],
)
def test_fis_control_api_errors(status, code):
    call = AwsCall(service="fis", api="fis", protocol="rest-json")
    resp = render_error(call, status, code, f"bad: {code}", request_id=RID)
    assert resp.status == status
    assert header(resp, "x-amzn-ErrorType") == code
    assert header(resp, "Content-Type") == "application/json"
    parsed = parse(
        AwsCall(service="fis", api="fis", operation="GetExperiment", protocol="rest-json"), resp
    )
    assert parsed["Error"] == {"Code": code, "Message": f"bad: {code}"}
    assert parsed["ResponseMetadata"]["RequestId"] == RID


def test_unknown_service_falls_back_to_json_readable_by_both_json_parsers():
    call = AwsCall(service="nosuchservice")
    status, code, message = standard_error(call, "throttle")
    assert (status, code) == (400, "ThrottlingException")
    resp = render_error(call, status, code, message, request_id=RID)
    assert header(resp, "Content-Type") == "application/json"
    for protocol in ("json", "rest-json"):
        parsed = create_parser(protocol).parse(
            {
                "status_code": resp.status,
                "headers": HTTPHeaderDict(resp.headers),
                "body": resp.body,
            },
            None,
        )
        assert parsed["Error"]["Code"] == "ThrottlingException", protocol
        assert parsed["ResponseMetadata"]["RequestId"] == RID


def test_missing_protocol_uses_the_models_protocol():
    resp = render_error(AwsCall(service="sns", api="sns"), 400, "Throttling", "Rate exceeded")
    assert ElementTree.fromstring(resp.body).tag.endswith("ErrorResponse")
    resp = render_error(AwsCall(service="monitoring"), 400, "Throttling", "Rate exceeded")
    assert header(resp, "x-amzn-query-error") == "Throttling;Sender"  # signing name -> cloudwatch


def test_unknown_kind_is_rejected_naming_the_valid_ones():
    with pytest.raises(ValueError, match="throttle, internal, unavailable"):
        standard_error(call_for("sns"), "slow")  # type: ignore[arg-type]


# --- Every botocore service: parses back, and botocore's retry rules retry it -----------------


@cache
def legacy_checker(endpoint_prefix: str):
    raw = catalog.loader().load_data("_retry")
    config = translate.build_retry_config(endpoint_prefix, raw["retry"], raw.get("definitions", {}))
    return retryhandler.create_checker_from_retry_config(config, operation_name=None)


def retried_by_legacy(api: str, resp: ErrorResponse, parsed: dict) -> bool:
    http = SimpleNamespace(
        status_code=resp.status, headers=HTTPHeaderDict(resp.headers), content=resp.body
    )
    checker = legacy_checker(catalog.endpoint_prefix(api))
    return bool(
        checker(
            attempt_number=1, response=(http, parsed), caught_exception=None, retries_context=None
        )
    )


def retried_by_every_standard_sdk(resp: ErrorResponse, parsed: dict) -> bool:
    # The code lists and 5xx rule shared by botocore standard, JS v3 and Go v2; deliberately
    # without 1.44's "429 alone" rule, which older botocore and Go v2 do not have.
    context = standard.RetryContext(
        attempt_number=1,
        parsed_response=parsed,
        http_response=SimpleNamespace(
            status_code=resp.status, headers=HTTPHeaderDict(resp.headers)
        ),
    )
    checkers = (standard.TransientRetryableChecker(), standard.ThrottledRetryableChecker())
    return any(c.is_retryable(context) for c in checkers)


def test_every_service_and_kind_parses_back_and_is_retried_everywhere():
    failures = []
    for api in catalog.api_names():
        model = catalog.service_model(api)
        # One ordinary operation, and every HEAD operation (S3, MediaStore Data): no body there.
        operations = [sorted(model.operation_names)[0]] + [
            op
            for op in model.operation_names
            if model.operation_model(op).http.get("method") == "HEAD"
        ]
        for operation in operations:
            call = call_for(api, operation)
            method = model.operation_model(operation).http.get("method", "POST")
            for kind in KINDS:
                status, code, message = standard_error(call, kind)
                resp = render_error(call, status, code, message, method=method, request_id=RID)
                parsed = parse(call, resp)
                problems = []
                if method != "HEAD" or status < 500:  # a bodiless 5xx reads as Code=str(status)
                    if parsed["Error"]["Code"] != code.rpartition("#")[2]:
                        problems.append(f"parsed code {parsed['Error']['Code']!r}")
                if not retried_by_legacy(api, resp, parsed):
                    problems.append("not retried by legacy botocore")
                if not retried_by_every_standard_sdk(resp, parsed):
                    problems.append("not retried by the standard code lists")
                if problems:
                    failures.append(
                        f"{api}.{operation}/{kind} ({status} {code}): {'; '.join(problems)}"
                    )
    assert not failures, "\n".join(failures[:40])


def test_retry_oracles_can_say_no():
    # The checkers above must be able to fail: these are the verified non-retried rows of 3.4.
    ddb, sqs, ec2 = call_for("dynamodb", "GetItem"), call_for("sqs", "SendMessage"), call_for("ec2")
    for api, call, status, code in [
        ("dynamodb", ddb, 400, "RequestLimitExceeded"),
        ("sqs", sqs, 400, "RequestThrottled"),
        ("ec2", ec2, 400, "RequestLimitExceeded"),
    ]:
        resp = render_error(call, status, code, "m")
        assert not retried_by_legacy(api, resp, parse(call, resp)), (api, status, code)
    resp = render_error(call_for("sns", "Publish"), 429, "Throttled", "m")
    assert not retried_by_every_standard_sdk(resp, parse(call_for("sns", "Publish"), resp))
