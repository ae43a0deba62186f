"""identify() against real requests built by botocore for every operation of the common services.

botocore is the oracle: each operation is called with a minimal input generated from its input
shape on a client with dummy credentials; a `before-send` handler captures the signed
`AWSPreparedRequest` and answers with a fake response, so nothing reaches the network. The
expected signing service and region are botocore's own (`before-sign`, or the request's
credential scope when the signer switched to another scope, like S3 Express).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import botocore.session
import pytest
from botocore import UNSIGNED
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.serialize import create_serializer
from mitmproxy.http import Headers

from fisproxy.aws import catalog
from fisproxy.aws.call import AwsCall
from fisproxy.aws.identify import identify, is_aws_host, warm

SERVICES = (
    "s3", "dynamodb", "sqs", "sns", "lambda", "ec2", "kinesis", "sts", "iam", "cloudwatch",
    "logs", "kms", "ssm", "stepfunctions", "events", "secretsmanager", "apigateway",
)  # fmt: skip
REGION = "eu-west-1"
ACCESS_KEY = "AKIDEXAMPLE"
# Wire-identical pairs in botocore's S3 model: same method, path, query and required
# members. The deprecated operation is reported as its successor.
WIRE_IDENTICAL = {
    ("s3", "GetBucketLifecycle"): "GetBucketLifecycleConfiguration",
    ("s3", "PutBucketLifecycle"): "PutBucketLifecycleConfiguration",
    ("s3", "GetBucketNotification"): "GetBucketNotificationConfiguration",
    ("s3", "PutBucketNotification"): "PutBucketNotificationConfiguration",
}
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")


# -- building real requests with botocore ----------------------------------------------------


class _EmptyBody:
    def stream(self, **kwargs: Any) -> Iterator[bytes]:
        yield b""

    def read(self, *args: Any, **kwargs: Any) -> bytes:
        return b""


def dummy(shape: Any, name: str = "", *, service: str = "svc", depth: int = 0) -> Any:
    """A minimal value for a shape: required members only, URL-safe strings."""
    if depth > 8:
        return None
    kind = shape.type_name
    if kind == "structure":
        if shape.metadata.get("document"):
            return {}
        if shape.metadata.get("union"):
            first, member = next(iter(shape.members.items()))
            return {first: dummy(member, first, service=service, depth=depth + 1)}
        return {
            m: dummy(shape.members[m], m, service=service, depth=depth + 1)
            for m in shape.required_members
        }
    if kind == "list":
        return [dummy(shape.member, name, service=service, depth=depth + 1)]
    if kind == "map":
        return {"key1": dummy(shape.value, name, service=service, depth=depth + 1)}
    if kind == "string":
        if shape.enum:
            return shape.enum[0]
        if name.endswith(("Arn", "ARN")):  # endpoint rules parse some ARNs (Kinesis)
            kind = name.removesuffix("ARN").removesuffix("Arn").lower()
            kind = kind if kind in ("stream", "queue", "channel") else "stream"
            return f"arn:aws:{service}:{REGION}:123456789012:{kind}/name1"
        return "name1"
    if kind in ("integer", "long"):
        return 1
    if kind in ("float", "double"):
        return 1.0
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return datetime.datetime(2020, 1, 1)
    if kind == "blob":
        return b"data"
    return "name1"


@cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


def make_client(api: str, region: str = REGION, **config: Any) -> Any:
    extra = {k: config.pop(k) for k in ("aws_account_id", "endpoint_url") if k in config}
    return _session().create_client(
        api,
        region_name=region,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key="secret",
        config=Config(parameter_validation=False, retries={"max_attempts": 1}, **config),
        **extra,
    )


@dataclass
class Captured:
    method: str
    host: str
    path: str
    headers: Headers
    body: bytes | None
    signing_name: str | None
    signing_region: str | None

    def identify(self, with_body: bool = True) -> AwsCall | None:
        return identify(
            self.method, self.host, self.path, self.headers, self.body if with_body else None
        )

    @property
    def expected_service(self) -> str | None:
        # The scope the signer actually used (S3 Express re-scopes to `s3express`), else
        # botocore's signing name (unsigned requests).
        found = _SCOPE.search(self.headers.get("authorization", ""))
        return found.group(2) if found else self.signing_name

    @property
    def expected_region(self) -> str | None:
        found = _SCOPE.search(self.headers.get("authorization", ""))
        return found.group(1) if found else self.signing_region


def _headers(items: Any) -> Headers:
    def b(v: str | bytes) -> bytes:
        return v.encode() if isinstance(v, str) else v

    return Headers([(b(k), b(v)) for k, v in items])


def from_url(method: str, url: str, headers: Any = (), body: Any = None) -> Captured:
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if isinstance(body, str):
        body = body.encode()
    if not isinstance(body, bytes):  # streaming bodies: identification must not need them
        body = None
    return Captured(method, parts.hostname or "", path, _headers(headers), body, None, None)


def capture(
    client: Any, operation: str, params: dict | None = None, *, strict: bool = True
) -> Captured | None:
    """Call `operation` and return the request botocore would have sent. If botocore refuses
    to build it (endpoint rules reject the configuration): an error, or None if not strict."""
    model = client.meta.service_model.operation_model(operation)
    if params is None:
        service = client.meta.service_model.signing_name
        params = dummy(model.input_shape, service=service) if model.input_shape else {}
    seen: dict[str, Any] = {}

    def before_sign(signing_name: str | None = None, region_name: str | None = None, **_: Any):
        seen["signing"] = (signing_name, region_name)

    def before_send(request: Any, **_: Any) -> AWSResponse:
        seen["request"] = request
        return AWSResponse(request.url, 200, {}, _EmptyBody())

    client.meta.events.register("before-sign", before_sign)
    client.meta.events.register("before-send", before_send)
    try:
        client._make_api_call(operation, params)
    except Exception as e:  # parsing the fake empty response may fail; the request is what counts
        if "request" not in seen:
            if not strict:
                return None
            raise AssertionError(f"botocore built no request for {operation}: {e!r}") from e
    finally:
        client.meta.events.unregister("before-sign", before_sign)
        client.meta.events.unregister("before-send", before_send)
    request = seen["request"]
    captured = from_url(request.method, request.url, request.headers.items(), request.body)
    captured.signing_name, captured.signing_region = seen.get("signing", (None, None))
    return captured


def signed_with(protocol: str, api: str, operation: str, params: dict, region: str = REGION) -> Captured:
    """A request serialised by botocore's serializer for `protocol` (not the model's default),
    signed with SigV4: what another SDK speaking that protocol sends."""
    model = catalog.service_model(api).operation_model(operation)
    serialized = create_serializer(protocol).serialize_to_request(params, model)
    host = f"{catalog.endpoint_prefix(api)}.{region}.amazonaws.com"
    query = serialized.get("query_string") or ""
    url = f"https://{host}{serialized['url_path']}"
    if query and isinstance(query, dict):
        from urllib.parse import urlencode

        url += "?" + urlencode(query)
    request = AWSRequest(serialized["method"], url, serialized["headers"], serialized["body"])
    SigV4Auth(Credentials(ACCESS_KEY, "secret"), catalog.signing_name(api), region).add_auth(request)
    prepared = request.prepare()
    return from_url(prepared.method, prepared.url, prepared.headers.items(), prepared.body)


# -- every operation of the common services --------------------------------------------------


@dataclass
class Outcome:
    api: str
    operation: str
    call: AwsCall | None
    captured: Captured

    @property
    def ok(self) -> bool:
        c = self.call
        return (
            c is not None
            and c.operation == self.operation
            and c.api == self.api
            and c.service == self.captured.expected_service
            and c.region == self.captured.expected_region
            and c.access_key == (ACCESS_KEY if "authorization" in self.captured.headers else None)
            and c.protocol == catalog.resolved_protocol(self.api)
        )


@cache
def outcomes(api: str) -> tuple[Outcome, ...]:
    return run_all(api)


def run_all(api: str, strict: bool = True, **config: Any) -> tuple[Outcome, ...]:
    """Every operation of `api`; with `strict=False` those botocore cannot build in this
    configuration (S3 Object Lambda on dual-stack, path-style on accelerate) are left out."""
    client = make_client(api, **config)
    result = []
    for operation in client.meta.service_model.operation_names:
        captured = capture(client, operation, strict=strict)
        if captured is not None:
            result.append(Outcome(api, operation, captured.identify(), captured))
    return tuple(result)


def _failures(results: tuple[Outcome, ...]) -> list[str]:
    failures = []
    for r in results:
        if r.ok:
            continue
        twin = WIRE_IDENTICAL.get((r.api, r.operation))
        if twin is not None and r.call is not None and r.call.operation == twin:
            continue
        c = r.captured
        failures.append(f"{r.operation}: {c.method} {c.host}{c.path[:80]} -> {r.call}")
    return failures


@pytest.mark.parametrize("api", SERVICES)
def test_every_operation_is_identified(api: str) -> None:
    results = outcomes(api)
    assert len(results) == len(catalog.service_model(api).operation_names)
    assert _failures(results) == []


# Services that share a signing name, endpoint prefix, target prefix or host with another, or
# speak a protocol the common set does not (rpc-v2-cbor only: eventbridgev2).
SHARED_NAME_SERVICES = (
    "sesv2", "ses", "pinpoint-email", "mailmanager", "s3control", "bedrock-runtime", "bedrock",
    "apigatewayv2", "route53", "cloudfront", "dynamodbstreams", "elb", "elbv2", "rds",
    "cognito-idp", "eventbridgev2", "iot-data", "ecr", "lambda-core", "simpledbv2", "iam-toolbox",
)  # fmt: skip


@pytest.mark.parametrize("api", SHARED_NAME_SERVICES)
def test_services_sharing_names_with_others(api: str) -> None:
    assert _failures(outcomes(api)) == []


@pytest.mark.parametrize("style", ["path", "virtual"])
def test_every_s3_operation_in_both_addressing_styles(style: str) -> None:
    results = run_all("s3", s3={"addressing_style": style})
    bucket_hosts = {r.captured.host for r in results if r.operation == "GetObject"}
    assert bucket_hosts == ({"name1.s3.eu-west-1.amazonaws.com"} if style == "virtual" else {"s3.eu-west-1.amazonaws.com"})
    assert _failures(results) == []


def test_report_share_identified(capsys: pytest.CaptureFixture[str]) -> None:
    """Share per service (run with -s to read it); all but the wire-identical pairs."""
    total = ok = 0
    lines = []
    for api in SERVICES:
        results = outcomes(api)
        good = sum(r.ok for r in results)
        total += len(results)
        ok += good
        missed = ", ".join(r.operation for r in results if not r.ok)
        lines.append(f"{api:15s} {good:4d}/{len(results):4d}  {missed}")
    lines.append(f"{'overall':15s} {ok:4d}/{total:4d} = {100 * ok / total:.2f}%")
    with capsys.disabled():
        print("\nidentified (service, region, operation, api, protocol, key):")
        print("\n".join(lines))
    assert total - ok == len(WIRE_IDENTICAL)


@pytest.mark.parametrize("api", ["sns", "sts", "iam", "ec2"])
def test_query_action_in_body_needs_body(api: str) -> None:
    for r in outcomes(api):
        call = r.captured.identify(with_body=False)
        assert call is not None and call.operation is None and call.needs_body, r.operation
        assert call.api == api and call.service == r.captured.expected_service
        assert call.protocol == catalog.resolved_protocol(api)


# -- addressing, endpoints and partitions ----------------------------------------------------


def test_dotted_bucket_falls_back_to_path_style() -> None:
    c = capture(make_client("s3"), "HeadObject", {"Bucket": "my.bucket", "Key": "a/b c.txt"})
    assert (c.host, c.path) == ("s3.eu-west-1.amazonaws.com", "/my.bucket/a/b%20c.txt")
    assert c.identify() == AwsCall("s3", REGION, "HeadObject", "s3", "rest-xml", ACCESS_KEY)


def test_us_east_1_global_bucket_host_and_list_objects_on_bucket_host() -> None:
    client = make_client("s3", "us-east-1")
    c = capture(client, "ListObjects", {"Bucket": "my-bucket"})
    assert c.host == "my-bucket.s3.amazonaws.com" and c.path.startswith("/?")  # encoding-type
    assert c.identify() == AwsCall("s3", "us-east-1", "ListObjects", "s3", "rest-xml", ACCESS_KEY)
    c = capture(client, "ListBuckets", {})
    assert c.host == "s3.amazonaws.com"
    assert c.identify().operation == "ListBuckets"


def test_greedy_keys_with_slashes_and_encoded_characters() -> None:
    client = make_client("s3")
    c = capture(client, "GetObject", {"Bucket": "b1", "Key": "dir/sub dir/ü+?.txt"})
    assert c.identify().operation == "GetObject"
    c = capture(client, "UploadPart", {"Bucket": "b1", "Key": "d/k", "PartNumber": 2, "UploadId": "u"})
    assert c.identify().operation == "UploadPart"


@pytest.mark.parametrize(
    ("api", "config", "host"),
    [
        ("dynamodb", {"use_fips_endpoint": True}, "dynamodb-fips.eu-west-1.amazonaws.com"),
        ("dynamodb", {"use_dualstack_endpoint": True}, "dynamodb.eu-west-1.api.aws"),
        ("kms", {"use_fips_endpoint": True}, "kms-fips.eu-west-1.amazonaws.com"),
        ("sqs", {"use_dualstack_endpoint": True}, "sqs.eu-west-1.api.aws"),
        ("s3", {"use_dualstack_endpoint": True}, "name1.s3.dualstack.eu-west-1.amazonaws.com"),
        ("s3", {"s3": {"use_accelerate_endpoint": True}}, "name1.s3-accelerate.amazonaws.com"),
    ],
)
def test_fips_dualstack_accelerate(api: str, config: dict, host: str) -> None:
    results = run_all(api, strict=api != "s3", **config)
    assert host in {r.captured.host for r in results}
    assert len(results) > 0.9 * len(catalog.service_model(api).operation_names)
    assert _failures(results) == []


def test_fips_dualstack_host_without_signature_gives_region() -> None:
    for host in ("dynamodb-fips.us-east-2.amazonaws.com", "dynamodb.us-east-2.api.aws"):
        headers = Headers(x_amz_target="DynamoDB_20120810.ListTables")
        call = identify("POST", host, "/", headers, b"{}")
        assert call == AwsCall("dynamodb", "us-east-2", "ListTables", "dynamodb", "json")
    call = identify("HEAD", "my-bucket.s3-fips.dualstack.us-east-1.amazonaws.com", "/k", Headers())
    assert call == AwsCall("s3", "us-east-1", "HeadObject", "s3", "rest-xml")


def test_china_partition() -> None:
    c = capture(make_client("sqs", "cn-north-1"), "SendMessage", {"QueueUrl": "https://x/1/q", "MessageBody": "hi"})
    assert c.host == "sqs.cn-north-1.amazonaws.com.cn"
    assert c.identify() == AwsCall("sqs", "cn-north-1", "SendMessage", "sqs", "json", ACCESS_KEY)
    unsigned = identify("POST", "iam.cn-north-1.amazonaws.com.cn", "/?Action=ListRoles", Headers())
    assert unsigned == AwsCall("iam", "cn-north-1", "ListRoles", "iam", "query")


def test_global_endpoint_region_from_credential_scope_data() -> None:
    c = capture(make_client("iam"), "ListRoles", {})
    assert c.host == "iam.amazonaws.com"
    assert c.identify() == AwsCall("iam", "us-east-1", "ListRoles", "iam", "query", ACCESS_KEY)
    body = b"Action=ListRoles&Version=2010-05-08"
    headers = Headers(content_type="application/x-www-form-urlencoded; charset=utf-8")
    assert identify("POST", "iam.amazonaws.com", "/", headers, body).region == "us-east-1"
    assert identify("POST", "iam.us-gov.amazonaws.com", "/", headers, body).region == "us-gov-west-1"


def test_dynamodb_account_id_endpoint() -> None:
    client = make_client("dynamodb", aws_account_id="123456789012", account_id_endpoint_mode="required")
    c = capture(client, "GetItem", {"TableName": "t", "Key": {"pk": {"S": "a"}}})
    assert c.host == "123456789012.ddb.eu-west-1.amazonaws.com"
    assert c.identify() == AwsCall("dynamodb", REGION, "GetItem", "dynamodb", "json", ACCESS_KEY)
    # The same host without a signature: the host alone must say dynamodb.
    c.headers.pop("authorization")
    assert c.identify() == AwsCall("dynamodb", REGION, "GetItem", "dynamodb", "json")


def test_custom_endpoint_url_trusts_the_credential_scope() -> None:
    client = make_client("s3", endpoint_url="http://127.0.0.1:4566")
    c = capture(client, "CreateMultipartUpload", {"Bucket": "b1", "Key": "k/1"})
    assert (c.host, c.path) == ("127.0.0.1", "/b1/k/1?uploads")
    assert c.identify() == AwsCall("s3", REGION, "CreateMultipartUpload", "s3", "rest-xml", ACCESS_KEY)
    client = make_client("stepfunctions", endpoint_url="http://localhost:4566")
    c = capture(client, "StartExecution", {"stateMachineArn": "arn:aws:states:eu-west-1:1:sm:x"})
    assert c.identify() == AwsCall("states", REGION, "StartExecution", "stepfunctions", "json", ACCESS_KEY)


def test_localstack_virtual_host() -> None:
    # botocore keeps custom endpoints path-style; other SDKs and LocalStack docs use
    # `<bucket>.s3.localhost.localstack.cloud`, the same request with the bucket moved.
    client = make_client("s3", endpoint_url="http://s3.localhost.localstack.cloud:4566")
    c = capture(client, "ListObjectsV2", {"Bucket": "b1"})
    assert c.path.startswith("/b1?list-type=2")
    call = identify("GET", "b1." + c.host, c.path.replace("/b1", "/", 1), c.headers)
    assert call == AwsCall("s3", REGION, "ListObjectsV2", "s3", "rest-xml", ACCESS_KEY)
    assert identify("GET", "b1." + c.host, "/", c.headers).operation == "ListObjects"


@pytest.mark.parametrize(
    ("host", "target", "region", "operation"),
    [
        ("my.bucket.s3-eu-west-1.amazonaws.com", "/k?uploadId=u1", "eu-west-1", "ListParts"),
        ("my.bucket.s3.eu-west-1.amazonaws.com", "/", "eu-west-1", "ListObjects"),
        ("b1.s3-fips.dualstack.us-east-2.amazonaws.com", "/?versions", "us-east-2", "ListObjectVersions"),
        ("b1.s3.dualstack.eu-west-1.amazonaws.com", "/a/b", "eu-west-1", "GetObject"),
        ("b1.s3-accelerate.amazonaws.com", "/a/b?tagging", None, "GetObjectTagging"),
        ("myap-123456789012.s3-accesspoint.us-west-2.amazonaws.com", "/k", "us-west-2", "GetObject"),
        ("s3.eu-west-1.amazonaws.com", "/", "eu-west-1", "ListBuckets"),
        ("s3express-control.us-west-2.amazonaws.com", "/", "us-west-2", "ListDirectoryBuckets"),
    ],
)
def test_unsigned_s3_host_forms(host: str, target: str, region: str | None, operation: str) -> None:
    assert identify("GET", host, target, Headers()) == AwsCall("s3", region, operation, "s3", "rest-xml")


def test_catalog_metadata_matches_botocore() -> None:
    # catalog reads `metadata` from the head of the model files: it must equal botocore's load.
    for api in (*SERVICES, *SHARED_NAME_SERVICES, "eks", "secretsmanager"):
        full = catalog.loader().load_service_model(api, "service-2")["metadata"]
        assert catalog.metadata(api) == full, api
        assert catalog.resolved_protocol(api) == catalog.service_model(api).resolved_protocol


# -- auth forms -------------------------------------------------------------------------------


def test_presigned_sigv2_s3_default() -> None:
    client = make_client("s3", "us-east-1")
    url = client.generate_presigned_url("get_object", Params={"Bucket": "my-bucket", "Key": "a/b"})
    assert "AWSAccessKeyId=" in url  # boto3's SigV2 presign default in us-east-1
    call = from_url("GET", url).identify()
    # The global host carries no region: us-east-1 from endpoints.json, whatever the bucket's.
    assert call == AwsCall("s3", "us-east-1", "GetObject", "s3", "rest-xml", ACCESS_KEY)


def test_presigned_sigv4_s3_and_sts() -> None:
    client = make_client("s3", "eu-central-1")
    url = client.generate_presigned_url("put_object", Params={"Bucket": "my-bucket", "Key": "k"})
    assert "X-Amz-Credential=" in url
    call = from_url("PUT", url).identify()
    assert call == AwsCall("s3", "eu-central-1", "PutObject", "s3", "rest-xml", ACCESS_KEY)
    url = make_client("sts", "us-east-1").generate_presigned_url("get_caller_identity")
    call = from_url("GET", url).identify()
    assert call == AwsCall("sts", "us-east-1", "GetCallerIdentity", "sts", "query", ACCESS_KEY)


def test_sigv2_authorization_header() -> None:
    client = make_client("s3", "us-west-2", signature_version="s3")
    c = capture(client, "PutObject", {"Bucket": "my-bucket", "Key": "k", "Body": b"x"})
    assert c.headers["authorization"].startswith(f"AWS {ACCESS_KEY}:")
    assert c.identify() == AwsCall("s3", "us-west-2", "PutObject", "s3", "rest-xml", ACCESS_KEY)


def test_unsigned_requests_are_identified_from_the_host() -> None:
    c = capture(make_client("s3", signature_version=UNSIGNED), "GetObject", {"Bucket": "pub", "Key": "k"})
    assert "authorization" not in c.headers
    assert c.identify() == AwsCall("s3", REGION, "GetObject", "s3", "rest-xml")
    sts = make_client("sts")
    c = capture(sts, "AssumeRoleWithWebIdentity", {"RoleArn": "arn:aws:iam::1:role/r", "RoleSessionName": "s", "WebIdentityToken": "token123"})
    assert "authorization" not in c.headers
    assert c.identify() == AwsCall("sts", REGION, "AssumeRoleWithWebIdentity", "sts", "query")
    cognito = make_client("cognito-identity")
    c = capture(cognito, "GetId", {"IdentityPoolId": "eu-west-1:1"})
    assert c.identify() == AwsCall("cognito-identity", REGION, "GetId", "cognito-identity", "json")


def test_sigv4a_region_from_region_set_or_host() -> None:
    auth = (
        "AWS4-ECDSA-P256-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261127/s3/aws4_request, "
        "SignedHeaders=host;x-amz-date;x-amz-region-set, Signature=3045022100f633"
    )
    mrap = "mfzwi23gnjvgw.mrap.accesspoint.s3-global.amazonaws.com"
    call = identify("GET", mrap, "/k", Headers(authorization=auth, x_amz_region_set="*"))
    assert call == AwsCall("s3", None, "GetObject", "s3", "rest-xml", "AKIAIOSFODNN7EXAMPLE")
    sts_auth = auth.replace("/s3/", "/sts/")
    headers = Headers(authorization=sts_auth, x_amz_region_set="us-west-2",
                      content_type="application/x-www-form-urlencoded")
    call = identify("POST", "localhost", "/", headers, b"Action=GetCallerIdentity&Version=2011-06-15")
    assert call == AwsCall("sts", "us-west-2", "GetCallerIdentity", "sts", "query", "AKIAIOSFODNN7EXAMPLE")
    call = identify("POST", "sts.us-east-1.amazonaws.com", "/", Headers(authorization=sts_auth, x_amz_region_set="us-east-1,us-west-2"), None)
    assert call.region == "us-east-1" and call.needs_body


# -- protocols other than the model's default --------------------------------------------------


def test_cloudwatch_json_is_the_default() -> None:
    c = capture(make_client("cloudwatch"), "PutMetricData", {"Namespace": "n", "MetricData": []})
    assert c.headers["x-amz-target"] == "GraniteServiceVersion20100801.PutMetricData"
    assert c.identify() == AwsCall("monitoring", REGION, "PutMetricData", "cloudwatch", "json", ACCESS_KEY)


@pytest.mark.parametrize(("protocol", "wire"), [("query", "query"), ("smithy-rpc-v2-cbor", "smithy-rpc-v2-cbor")])
def test_cloudwatch_in_query_and_cbor(protocol: str, wire: str) -> None:
    for operation in ("PutMetricData", "GetMetricData", "DescribeAlarms", "ListMetrics"):
        model = catalog.service_model("cloudwatch").operation_model(operation)
        c = signed_with(protocol, "cloudwatch", operation, dummy(model.input_shape))
        call = c.identify()
        assert call == AwsCall("monitoring", REGION, operation, "cloudwatch", wire, ACCESS_KEY)
    if protocol == "query":
        assert c.identify(with_body=False).needs_body


def test_rpc_v2_with_absolute_shape_id_and_prefix() -> None:
    c = signed_with("smithy-rpc-v2-cbor", "cloudwatch", "ListMetrics", {})
    path = "/prefix/service/com.amazonaws.cloudwatch%23GraniteServiceVersion20100801/operation/ListMetrics"
    call = identify("POST", c.host, path, c.headers, c.body)
    assert call == AwsCall("monitoring", REGION, "ListMetrics", "cloudwatch", "smithy-rpc-v2-cbor", ACCESS_KEY)


def test_js_style_x_id_and_sqs_query_mode() -> None:
    auth = "AWS4-HMAC-SHA256 Credential=AKID/20261127/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=ab"
    call = identify("PUT", "b1.s3.us-east-1.amazonaws.com", "/k?x-id=PutObject", Headers(authorization=auth))
    assert call.operation == "PutObject"
    call = identify("GET", "b1.s3.us-east-1.amazonaws.com", "/k?x-id=GetObject", Headers(authorization=auth))
    assert call.operation == "GetObject"
    # Old SQS clients speak query.
    auth = auth.replace("/s3/", "/sqs/")
    headers = Headers(authorization=auth, content_type="application/x-www-form-urlencoded")
    call = identify("POST", "sqs.us-east-1.amazonaws.com", "/", headers, b"Action=SendMessage&QueueUrl=x&MessageBody=y")
    assert call == AwsCall("sqs", "us-east-1", "SendMessage", "sqs", "query", "AKID")


def test_query_version_chooses_between_services_sharing_a_host() -> None:
    headers = Headers(content_type="application/x-www-form-urlencoded")
    v1 = identify("POST", "elasticloadbalancing.us-east-1.amazonaws.com", "/", headers,
                  b"Action=DescribeLoadBalancers&Version=2012-06-01")
    v2 = identify("POST", "elasticloadbalancing.us-east-1.amazonaws.com", "/", headers,
                  b"Action=DescribeLoadBalancers&Version=2015-12-01")
    assert (v1.api, v2.api) == ("elb", "elbv2")
    rds = identify("POST", "rds.us-east-1.amazonaws.com", "/", headers, b"Action=DescribeDBInstances&Version=2014-10-31")
    assert rds.api == "rds" and rds.service == "rds"


def test_timestream_shared_target_prefix_uses_host() -> None:
    headers = Headers(x_amz_target="Timestream_20181101.DescribeEndpoints")
    assert identify("POST", "query.timestream.us-east-1.amazonaws.com", "/", headers).api == "timestream-query"
    assert identify("POST", "ingest.timestream.us-east-1.amazonaws.com", "/", headers).api == "timestream-write"
    headers = Headers(x_amz_target="Timestream_20181101.WriteRecords")
    assert identify("POST", "localhost", "/", Headers(
        x_amz_target="Timestream_20181101.WriteRecords",
        authorization="AWS4-HMAC-SHA256 Credential=K/20261127/us-east-1/timestream/aws4_request, Signature=x",
    )).api == "timestream-write"


def test_dynamodb_streams_shares_the_signing_name() -> None:
    c = capture(make_client("dynamodbstreams"), "ListStreams", {})
    assert c.identify() == AwsCall("dynamodb", REGION, "ListStreams", "dynamodbstreams", "json", ACCESS_KEY)
    assert c.identify().names == {"dynamodb", "dynamodbstreams"}


# -- not AWS ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "headers"),
    [
        ("example.com", {}),
        ("localhost", {"authorization": "Bearer abc"}),
        ("127.0.0.1", {"authorization": "Basic dXNlcjpwYXNz"}),
        ("amazonaws.com.evil.example", {}),
        ("169.254.169.254", {}),
    ],
)
def test_non_aws_requests(host: str, headers: dict[str, str]) -> None:
    assert identify("GET", host, "/latest/meta-data/?Action=x", Headers(**headers)) is None


def test_is_aws_host() -> None:
    for host in ("sqs.eu-west-1.amazonaws.com", "dynamodb.us-east-1.api.aws",
                 "sqs.cn-north-1.amazonaws.com.cn", "b.s3.amazonaws.com", "IAM.AMAZONAWS.COM."):
        assert is_aws_host(host), host
    for host in ("example.com", "localhost", "amazonaws.com", "notamazonaws.com", "127.0.0.1"):
        assert not is_aws_host(host), host


def test_warm_builds_the_indexes_identification_uses() -> None:
    from fisproxy.aws import catalog

    indexes = (catalog.apis_by_signing_name, catalog.apis_by_endpoint_prefix, catalog.apis_by_target_prefix)
    for index in indexes:
        index.cache_clear()
    warm()
    assert all(index.cache_info().currsize == 1 for index in indexes)
    misses = [index.cache_info().misses for index in indexes]
    headers = Headers(x_amz_target="DynamoDB_20120810.GetItem")
    assert identify("POST", "dynamodb.us-east-1.amazonaws.com", "/", headers).operation == "GetItem"
    assert [index.cache_info().misses for index in indexes] == misses  # nothing built per request


def test_complete_reads_the_action_from_the_form_body() -> None:
    """A query call decided before its body arrived is finished from the body alone."""
    from mitmproxy.http import Headers

    from fisproxy.aws.identify import complete

    headers = Headers(
        authorization="AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261127/eu-west-1/sns/"
                      "aws4_request, SignedHeaders=host, Signature=" + "0" * 64,
        content_type="application/x-www-form-urlencoded; charset=utf-8",
    )
    body = b"Action=Publish&Version=2010-03-31&TopicArn=arn&Message=hi"
    first = identify("POST", "sns.eu-west-1.amazonaws.com", "/", headers)
    assert first is not None and first.needs_body and first.operation is None
    done = complete(first, "sns.eu-west-1.amazonaws.com", body)
    assert done == identify("POST", "sns.eu-west-1.amazonaws.com", "/", headers, body)
    assert (done.operation, done.region, done.api, done.needs_body) == ("Publish", "eu-west-1", "sns", False)
