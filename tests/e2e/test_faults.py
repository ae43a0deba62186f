"""The proxy end to end: real fisproxy process, real moto upstream, real boto3 clients going to
real AWS hostnames through the proxy with TLS interception. Each test starts an experiment with
the ordinary FIS API and checks what the SDK sees."""

from __future__ import annotations

import contextlib
import hashlib
import io
import time
import uuid

import botocore.exceptions
import pytest

from tests.e2e.conftest import Fisproxy, start_action
from tests.helpers import SkippedBackoff, backoff_skipped


def make_table(proxy: Fisproxy, name: str) -> None:
    ddb = proxy.client("dynamodb")
    ddb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )


def fault_header(error: botocore.exceptions.ClientError) -> str | None:
    return error.response["ResponseMetadata"]["HTTPHeaders"].get("x-fisproxy-fault")


def test_pass_through_untouched(proxy: Fisproxy) -> None:
    table = f"t-{uuid.uuid4().hex[:8]}"
    make_table(proxy, table)
    ddb = proxy.client("dynamodb")
    ddb.put_item(TableName=table, Item={"pk": {"S": "a"}, "v": {"S": "1"}})
    got = ddb.get_item(TableName=table, Key={"pk": {"S": "a"}})
    assert got["Item"]["v"] == {"S": "1"}
    assert "x-fisproxy-fault" not in got["ResponseMetadata"]["HTTPHeaders"]


def test_dynamodb_throttle_retried_like_a_real_one(proxy: Fisproxy) -> None:
    """The issue's "done when": a throttled PutItem is retried by botocore exactly as a real
    throttle is (DynamoDB's defaults: 4 attempts in standard mode with botocore 1.44, 10 in
    legacy mode), GetItem is untouched."""
    table = f"t-{uuid.uuid4().hex[:8]}"
    make_table(proxy, table)
    exp_id = start_action(proxy, "aws:fis:inject-api-throttle-error",
                          {"service": "dynamodb", "operations": "PutItem", "percentage": "100"})
    # Standard mode (boto3's default) sits through its real back-off; legacy mode's ten
    # attempts skip their 25 s of it (the attempts are the SDK's own either way).
    for mode, attempts, waits in (("standard", 4, contextlib.nullcontext()), ("legacy", 10, backoff_skipped())):
        ddb = proxy.client("dynamodb", retries={"mode": mode})
        with waits, pytest.raises(botocore.exceptions.ClientError) as info:
            ddb.put_item(TableName=table, Item={"pk": {"S": "b"}})
        err = info.value.response
        assert err["Error"]["Code"] == "ThrottlingException"
        assert err["ResponseMetadata"]["RetryAttempts"] == attempts - 1
        assert err["ResponseMetadata"]["HTTPStatusCode"] == 400
        assert fault_header(info.value) == f"{exp_id}/fault/error"
        # GetItem is not in `operations`: untouched.
        assert "Item" not in ddb.get_item(TableName=table, Key={"pk": {"S": "b"}})


@pytest.mark.parametrize(
    ("service", "call", "kind", "code", "status"),
    [
        # json (awsJson1.0/1.1)
        ("kinesis", lambda c: c.list_streams(), "throttle", "LimitExceededException", 400),
        ("sqs", lambda c: c.list_queues(), "throttle", "RequestThrottled", 403),
        ("logs", lambda c: c.describe_log_groups(), "internal", "InternalServerException", 500),
        # query
        ("sns", lambda c: c.list_topics(), "throttle", "Throttling", 400),
        ("sts", lambda c: c.get_caller_identity(), "unavailable", "ServiceUnavailable", 503),
        # ec2
        ("ec2", lambda c: c.describe_instances(), "throttle", "RequestLimitExceeded", 503),
        # rest-json
        ("lambda", lambda c: c.list_functions(), "throttle", "TooManyRequestsException", 429),
        # rest-xml
        ("s3", lambda c: c.list_buckets(), "throttle", "SlowDown", 503),
    ],
)
def test_each_protocol_gets_its_own_error(proxy: Fisproxy, no_backoff: SkippedBackoff, service, call, kind,
                                         code, status) -> None:
    start_action(proxy, f"aws:fis:inject-api-{kind}-error", {"service": service, "percentage": "100"})
    client = proxy.client(service, retries={"mode": "standard", "total_max_attempts": 2})
    with pytest.raises(botocore.exceptions.ClientError) as info:
        call(client)
    err = info.value.response
    assert err["Error"]["Code"] == code
    assert err["ResponseMetadata"]["HTTPStatusCode"] == status
    assert err["ResponseMetadata"]["RetryAttempts"] == 1  # retried: botocore saw a retryable error
    assert len(no_backoff.delays) == 1  # after the back-off its retry handler chose


def test_s3_head_error_has_no_body(proxy: Fisproxy) -> None:
    s3 = proxy.client("s3")
    bucket = f"b-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"x")
    start_action(proxy, "aws:fis:inject-api-unavailable-error",
                 {"service": "s3", "operations": "HeadObject", "percentage": "100"})
    with pytest.raises(botocore.exceptions.ClientError) as info:
        proxy.client("s3", retries={"total_max_attempts": 1}).head_object(Bucket=bucket, Key="k")
    assert info.value.response["Error"]["Code"] == "503"
    assert proxy.client("s3").get_object(Bucket=bucket, Key="k")["Body"].read() == b"x"


def test_latency_only_on_matching_calls(proxy: Fisproxy) -> None:
    start_action(proxy, "fisproxy:api:latency",
                 {"service": "sqs", "operations": "ListQueues", "latencyMilliseconds": "800"})
    sqs = proxy.client("sqs")
    t0 = time.monotonic()
    matching = sqs.list_queues()
    delayed = time.monotonic() - t0
    assert delayed >= 0.8
    assert matching["ResponseMetadata"]["HTTPHeaders"]["x-fisproxy-fault"].endswith("/fault/latency")
    other = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}")  # not ListQueues
    assert "x-fisproxy-fault" not in other["ResponseMetadata"]["HTTPHeaders"]  # no fault applied


@pytest.mark.parametrize(("mode", "exc"), [
    ("close", botocore.exceptions.ConnectionError),
    ("reset", botocore.exceptions.ConnectionError),
    ("hang", botocore.exceptions.ReadTimeoutError),
])
def test_disconnect(proxy: Fisproxy, mode: str, exc: type[Exception]) -> None:
    start_action(proxy, "fisproxy:api:disconnect", {"service": "sns", "operations": "ListTopics", "mode": mode})
    sns = proxy.client("sns", retries={"total_max_attempts": 1}, read_timeout=2)
    with pytest.raises(exc):
        sns.list_topics()
    sns.list_subscriptions()  # other operations still work


def test_response_phase_write_happens_client_sees_error(proxy: Fisproxy) -> None:
    s3 = proxy.client("s3")
    bucket = f"b-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    start_action(proxy, "fisproxy:api:error", {
        "service": "s3", "operations": "PutObject", "statusCode": "500",
        "errorCode": "InternalError", "phase": "response",
    })
    with pytest.raises(botocore.exceptions.ClientError) as info:
        proxy.client("s3", retries={"total_max_attempts": 1}).put_object(Bucket=bucket, Key="k", Body=b"written")
    assert info.value.response["Error"]["Code"] == "InternalError"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"written"


def test_percentage_sampled_per_request(proxy: Fisproxy) -> None:
    start_action(proxy, "fisproxy:api:error", {
        "service": "sns", "operations": "ListTopics", "percentage": "50", "statusCode": "400",
        "errorCode": "Throttling",
    })
    sns = proxy.client("sns", retries={"total_max_attempts": 1})
    failures = 0
    for _ in range(60):
        try:
            sns.list_topics()
        except botocore.exceptions.ClientError:
            failures += 1
    assert 10 <= failures <= 50


def test_large_objects_pass_through_byte_exact(proxy: Fisproxy) -> None:
    s3 = proxy.client("s3")
    bucket = f"b-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    data = bytes(range(256)) * (50 * 1024 * 1024 // 256)
    s3.upload_fileobj(io.BytesIO(data), bucket, "big")  # multipart (> 8 MB threshold)
    got = s3.get_object(Bucket=bucket, Key="big")["Body"].read()
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    s3.put_object(Bucket=bucket, Key="single", Body=data[: 20 * 1024 * 1024])
    assert s3.head_object(Bucket=bucket, Key="single")["ContentLength"] == 20 * 1024 * 1024


def test_failed_upload_gets_error(proxy: Fisproxy) -> None:
    s3 = proxy.client("s3")
    bucket = f"b-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    start_action(proxy, "aws:fis:inject-api-throttle-error",
                 {"service": "s3", "operations": "PutObject", "percentage": "100"})
    with pytest.raises(botocore.exceptions.ClientError) as info:
        proxy.client("s3", retries={"total_max_attempts": 1}).put_object(
            Bucket=bucket, Key="k", Body=b"z" * (20 * 1024 * 1024))
    assert info.value.response["Error"]["Code"] == "SlowDown"
    with pytest.raises(botocore.exceptions.ClientError):
        s3.head_object(Bucket=bucket, Key="k")  # never reached the upstream


def test_role_targeting_learned_from_sts(proxy: Fisproxy) -> None:
    """Only callers using credentials of the targeted role are faulted; the role is learned
    from the STS AssumeRole answer that passed through the proxy."""
    iam = proxy.client("iam")
    role_name = f"app-{uuid.uuid4().hex[:6]}"
    role_arn = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    creds = proxy.client("sts").assume_role(RoleArn=role_arn, RoleSessionName="session1")["Credentials"]
    start_action(
        proxy, "aws:fis:inject-api-internal-error",
        {"service": "sns", "operations": "ListTopics", "percentage": "100"},
        targets={"appRole": {"resourceType": "aws:iam:role", "resourceArns": [role_arn], "selectionMode": "ALL"}},
        action_targets={"Roles": "appRole"},
    )
    as_role = proxy.client("sns", retries={"total_max_attempts": 1}, access_key=creds["AccessKeyId"],
                           secret_key=creds["SecretAccessKey"], session_token=creds["SessionToken"])
    with pytest.raises(botocore.exceptions.ClientError) as info:
        as_role.list_topics()
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    proxy.client("sns", retries={"total_max_attempts": 1}).list_topics()  # another caller: untouched


def test_malformed_request_passes_through(proxy: Fisproxy) -> None:
    """A request the proxy cannot identify goes upstream untouched, even while an experiment
    faults every operation of that service."""
    import requests

    start_action(proxy, "aws:fis:inject-api-internal-error", {"service": "dynamodb", "percentage": "100"})
    resp = requests.post(
        "https://dynamodb.us-east-1.amazonaws.com/", data=b"\x00not json",
        headers={"content-type": "application/x-amz-json-1.0"},
        proxies={"https": proxy.proxy_url}, verify=proxy.ca, timeout=10,
    )
    assert "x-fisproxy-fault" not in resp.headers


def test_aws_actions_act_in_the_experiment_region(proxy: Fisproxy) -> None:
    """Like real FIS, an inject-api action without a region faults only its experiment's
    region (the FIS client here is in us-east-1)."""
    start_action(proxy, "aws:fis:inject-api-throttle-error", {"service": "sns", "percentage": "100"})
    with pytest.raises(botocore.exceptions.ClientError):
        proxy.client("sns", "us-east-1", retries={"total_max_attempts": 1}).list_topics()
    proxy.client("sns", "us-west-2", retries={"total_max_attempts": 1}).list_topics()


def vm_hwm_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.slow
def test_200mb_object_streams_both_ways(proxy: Fisproxy, tmp_path) -> None:
    """A 200 MB PutObject and GetObject stream through: the proxy's peak memory does not follow
    the body in either direction."""
    assert proxy.proc is not None
    # moto decodes and stores the 200 MB (aws-chunked, with a checksum) before it answers: on a
    # busy machine that takes longer than the usual 20 s read timeout.
    s3 = proxy.client("s3", read_timeout=180)
    bucket = f"b-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    size = 200 * 1024 * 1024
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        for _ in range(200):
            f.write(b"\x5a" * (1024 * 1024))
    before = vm_hwm_kib(proxy.proc.pid)
    with big.open("rb") as body:
        s3.put_object(Bucket=bucket, Key="big", Body=body)
    after_put = vm_hwm_kib(proxy.proc.pid)
    stream = s3.get_object(Bucket=bucket, Key="big")["Body"]
    received = sum(len(chunk) for chunk in iter(lambda: stream.read(1024 * 1024), b""))
    after_get = vm_hwm_kib(proxy.proc.pid)
    up, down = (after_put - before) / 1024, (after_get - after_put) / 1024
    print(f"proxy VmHWM growth: 200 MiB PutObject {up:.1f} MiB, GetObject {down:.1f} MiB")
    assert received == size
    assert up < 50, f"proxy peak memory grew by {up:.0f} MiB for a 200 MiB upload"
    assert down < 50, f"proxy peak memory grew by {down:.0f} MiB for a 200 MiB download"


def test_small_request_error_keeps_the_connection(proxy: Fisproxy) -> None:
    """An injected error on a request with a small body is answered in place: the client's
    keep-alive connection stays open for its retry, as with a real AWS error."""
    import http.client

    start_action(proxy, "aws:fis:inject-api-throttle-error",
                 {"service": "dynamodb", "operations": "PutItem", "percentage": "100"})
    body = b'{"TableName": "t", "Item": {"pk": {"S": "a"}}}'
    headers = {
        "Host": "dynamodb.us-east-1.amazonaws.com", "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "DynamoDB_20120810.PutItem", "X-Amz-Date": "20261127T120000Z",
        "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261127/us-east-1/"
                         "dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=" + "0" * 64,
    }
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    for _ in range(3):
        conn.request("POST", "http://dynamodb.us-east-1.amazonaws.com/", body, headers)
        resp = conn.getresponse()
        assert b"ThrottlingException" in resp.read()
        assert resp.status == 400 and resp.getheader("connection", "").lower() != "close"
    sock = conn.sock
    conn.request("POST", "http://dynamodb.us-east-1.amazonaws.com/", body, headers)
    conn.getresponse().read()
    assert conn.sock is sock  # the same connection all along
    conn.close()
