"""identify() on what clients may send that no SDK would: names no model has, bytes that are not
UTF-8, oversized or odd credential scopes. Everything identify returns must come from
botocore's data (or be None), so metric labels, report rows and caches stay bounded."""

from __future__ import annotations

import pytest
from mitmproxy.http import Headers

from fisproxy.aws import identify as identify_module
from fisproxy.aws.identify import complete, identify, warm

SIG = "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64


def signed(scope: str, *extra: tuple[bytes, bytes]) -> Headers:
    """mitmproxy Headers from raw bytes, as they arrive (undecodable bytes included)."""
    auth = f"AWS4-HMAC-SHA256 Credential={scope}, {SIG}".encode("utf-8", "surrogateescape")
    return Headers([(b"Authorization", auth), *extra])


DYNAMODB = "dynamodb.eu-west-1.amazonaws.com"
SCOPE = "AKIDEXAMPLE/20240501/eu-west-1/dynamodb/aws4_request"


def target(value: bytes) -> Headers:
    return signed(SCOPE, (b"X-Amz-Target", value))


def test_a_modelled_json_operation_is_identified() -> None:
    call = identify("POST", DYNAMODB, "/", target(b"DynamoDB_20120810.PutItem"))
    assert call is not None and (call.service, call.operation, call.region) == ("dynamodb", "PutItem", "eu-west-1")


@pytest.mark.parametrize("value", [
    b"DynamoDB_20120810.Invented1",  # no such operation
    b"DynamoDB_20120810.putitem",  # case matters on the wire
    b"Nobody_2020.PutItem",  # a target prefix no model has: the host's api, which has PutItem
    b"DynamoDB_20120810.Put\xffItem",  # not UTF-8
    b"DynamoDB_20120810.\xed\xa0\x80",  # an encoded surrogate
    b"DynamoDB_20120810." + b"A" * 10_000,
    b"\xff\xfe.\xff",
    b".",
])
def test_a_json_operation_no_model_has_is_unknown(value: bytes) -> None:
    call = identify("POST", DYNAMODB, "/", target(value))
    assert call is not None and call.service == "dynamodb" and call.api == "dynamodb"
    expected = "PutItem" if value == b"Nobody_2020.PutItem" else None
    assert call.operation == expected


def test_a_query_action_no_model_has_is_unknown() -> None:
    headers = signed("AKIDEXAMPLE/20240501/eu-west-1/sqs/aws4_request")
    host = "sqs.eu-west-1.amazonaws.com"
    assert identify("GET", host, "/?Action=SendMessage", headers).operation == "SendMessage"
    for action in ("Invented", "Send%FFMessage", "%ED%A0%80", "x" * 5000):
        call = identify("GET", host, f"/?Action={action}", headers)
        assert call is not None and call.operation is None


def test_a_query_action_in_the_form_body_no_model_has_is_unknown() -> None:
    headers = signed("AKIDEXAMPLE/20240501/eu-west-1/sqs/aws4_request",
                     (b"Content-Type", b"application/x-www-form-urlencoded"))
    call = identify("POST", "sqs.eu-west-1.amazonaws.com", "/", headers)
    assert call is not None and call.needs_body
    done = complete(call, "sqs.eu-west-1.amazonaws.com", b"Action=Invented&Version=2012-11-05")
    assert done.operation is None and not done.needs_body
    done = complete(call, "sqs.eu-west-1.amazonaws.com", b"Action=\xff\xfe&Version=2012-11-05")
    assert done.operation is None


def test_an_rpc_v2_cbor_operation_no_model_has_is_unknown() -> None:
    headers = signed("AKIDEXAMPLE/20240501/eu-west-1/monitoring/aws4_request", (b"smithy-protocol", b"rpc-v2-cbor"))
    host = "monitoring.eu-west-1.amazonaws.com"
    base = "/service/GraniteServiceVersion20100801/operation/"
    assert identify("POST", host, base + "GetMetricData", headers).operation == "GetMetricData"
    for op in ("Invented", "Get%FFMetricData", "\udcff"):
        call = identify("POST", host, base + op, headers)
        assert call is not None and call.operation is None and call.service == "monitoring"


def test_a_credential_scope_naming_no_known_service_lets_the_host_decide() -> None:
    headers = signed("AKIDEXAMPLE/20240501/eu-west-1/invented-service/aws4_request",
                     (b"X-Amz-Target", b"DynamoDB_20120810.GetItem"))
    call = identify("POST", DYNAMODB, "/", headers)
    assert call is not None and (call.service, call.operation) == ("dynamodb", "GetItem")
    # No AWS host to fall back on: not a call fisproxy can name, so it passes through untouched.
    assert identify("POST", "127.0.0.1", "/", headers) is None
    odd = signed("AKIDEXAMPLE/20240501/eu-west-1/dyn\udcffamodb/aws4_request")
    assert identify("POST", "127.0.0.1", "/", odd) is None


@pytest.mark.parametrize("region", ["eu-west-\udcff", "x" * 100, "EU WEST 1", "eu_west_1", "-", "eu-west-1\x00"])
def test_a_region_that_is_not_a_region_name_is_not_reported(region: str) -> None:
    headers = signed(f"AKIDEXAMPLE/20240501/{region}/dynamodb/aws4_request",
                     (b"X-Amz-Target", b"DynamoDB_20120810.GetItem"))
    call = identify("POST", "localhost", "/", headers)
    assert call is not None and call.service == "dynamodb" and call.region is None


@pytest.mark.parametrize("region", ["us-gov-west-1", "eu-isoe-west-1", "local", "mars-north-9"])
def test_region_names_botocore_does_not_list_are_kept_when_well_formed(region: str) -> None:
    headers = signed(f"AKIDEXAMPLE/20240501/{region}/dynamodb/aws4_request")
    call = identify("POST", "localhost", "/", headers)
    assert call is not None and call.region == region


@pytest.mark.parametrize("key", ["AK\udcffID", "AK ID\x01", "A" * 200])
def test_an_access_key_id_that_is_not_short_printable_ascii_is_not_reported(key: str) -> None:
    call = identify("POST", DYNAMODB, "/", signed(f"{key}/20240501/eu-west-1/dynamodb/aws4_request"))
    assert call is not None and call.access_key is None
    sigv2 = Headers([(b"Authorization", f"AWS {key}:sig".encode("utf-8", "surrogateescape"))])
    call = identify("GET", "bucket.s3.amazonaws.com", "/key", sigv2)
    assert call is not None and call.access_key is None


def test_invented_names_do_not_grow_identification_caches() -> None:
    warm()
    caches = [identify_module._rank_order, identify_module._query_apis, identify_module._rest_apis]
    for i in range(3000):  # a warm-up pass fills what legitimately varies
        scope = f"AK{i}/20240501/r{i % 7}-x-{i}/svc{i}/aws4_request"
        identify("POST", DYNAMODB, "/", signed(scope, (b"X-Amz-Target", f"DynamoDB_20120810.Op{i}".encode())))
        identify("GET", "sqs.eu-west-1.amazonaws.com", f"/?Action=Op{i}", signed(scope))
        identify("POST", "monitoring.eu-west-1.amazonaws.com", f"/service/S{i}/operation/Op{i}", signed(scope))
    sizes = [c.cache_info().currsize for c in caches]
    for i in range(3000, 6000):
        scope = f"AK{i}/20240501/r{i % 7}-x-{i}/svc{i}/aws4_request"
        identify("POST", DYNAMODB, "/", signed(scope, (b"X-Amz-Target", f"DynamoDB_20120810.Op{i}".encode())))
        identify("GET", "sqs.eu-west-1.amazonaws.com", f"/?Action=Op{i}", signed(scope))
        identify("POST", "monitoring.eu-west-1.amazonaws.com", f"/service/S{i}/operation/Op{i}", signed(scope))
    assert [c.cache_info().currsize for c in caches] == sizes
