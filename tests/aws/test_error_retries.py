"""Real boto3 clients retry our errors as they would a real service's.

Each scenario starts a small HTTP/1.1 keep-alive server on 127.0.0.1 that answers every request
with one rendered `ErrorResponse`, points a real boto3 client at it (`endpoint_url`, plain
http, dummy credentials), makes one call and counts the requests that arrived. Expected
attempt counts are the verified matrix of the reference (section 3.4) for the installed
botocore 1.44: legacy 10 for DynamoDB and 5 otherwise, standard 4 for DynamoDB and 3
otherwise; and 1 for the rows legacy botocore does not retry (wrong status for the code).

botocore's back-off sleeps are skipped (`tests.helpers.SkippedBackoff`: they would be 25.5 s for
legacy DynamoDB's ten attempts, up to 1+2+4+8 s for the others) and recorded instead: every
retry must come after a back-off the SDK decided on. The calls run one after another in a module
fixture, one client and one server each; each test then asserts on its own scenario's outcome.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import ClientError

from fisproxy.aws import catalog
from fisproxy.aws.call import AwsCall
from fisproxy.aws.errors import ErrorKind, ErrorResponse, render_error, standard_error
from tests.helpers import CA_VARS, PROXY_VARS, SkippedBackoff, backoff_skipped

LEGACY_ATTEMPTS = {"dynamodb": 10}
STANDARD_ATTEMPTS = {"dynamodb": 4}


@dataclass(frozen=True)
class Scenario:
    api: str
    operation: str  # botocore operation name
    params: dict[str, Any]
    mode: str  # botocore retry mode
    attempts: int  # requests that must reach the server
    code: str  # Error.Code the client must raise
    kind: ErrorKind | None = None  # a standard error...
    error: tuple[int, str] | None = None  # ...or an explicit (status, code)

    @property
    def id(self) -> str:
        what = self.kind if self.error is None else f"{self.error[0]}-{self.error[1]}"
        return f"{self.api}-{self.operation}-{what}-{self.mode}"

    def call(self) -> AwsCall:
        return AwsCall(
            service=catalog.signing_name(self.api),
            api=self.api,
            operation=self.operation,
            protocol=catalog.service_model(self.api).resolved_protocol,
        )

    def respond(self, method: str) -> ErrorResponse:
        call = self.call()
        if self.kind is not None:
            status, code, message = standard_error(call, self.kind)
        else:
            assert self.error is not None
            status, code = self.error
            message = "injected"
        return render_error(call, status, code, message, method=method)


def _both_modes(api, operation, params, kind, code) -> list[Scenario]:
    """The scenario in legacy and standard mode, with the matrix's attempt counts."""
    return [
        Scenario(api, operation, params, "legacy", LEGACY_ATTEMPTS.get(api, 5), code, kind),
        Scenario(api, operation, params, "standard", STANDARD_ATTEMPTS.get(api, 3), code, kind),
    ]


KINESIS_PUT = {"StreamName": "s", "Data": b"x", "PartitionKey": "p"}
S3_LIST = {"Bucket": "bucket"}
S3_HEAD = {"Bucket": "bucket", "Key": "k"}
# fmt: off
SCENARIOS: list[Scenario] = [
    *_both_modes("dynamodb", "ListTables", {}, "throttle", "ThrottlingException"),
    *_both_modes("dynamodb", "ListTables", {}, "internal", "InternalServerError"),
    *_both_modes("dynamodb", "ListTables", {}, "unavailable", "ServiceUnavailable"),
    *_both_modes("kinesis", "PutRecord", KINESIS_PUT, "throttle", "ProvisionedThroughputExceededException"),
    *_both_modes("kinesis", "ListStreams", {}, "throttle", "LimitExceededException"),
    *_both_modes("sqs", "ListQueues", {}, "throttle", "RequestThrottled"),
    *_both_modes("sns", "ListTopics", {}, "throttle", "Throttling"),
    *_both_modes("sts", "GetCallerIdentity", {}, "throttle", "Throttling"),
    *_both_modes("iam", "ListRoles", {}, "internal", "ServiceFailure"),
    *_both_modes("ec2", "DescribeInstances", {}, "throttle", "RequestLimitExceeded"),
    *_both_modes("lambda", "ListFunctions", {}, "throttle", "TooManyRequestsException"),
    *_both_modes("lambda", "ListFunctions", {}, "internal", "ServiceException"),
    *_both_modes("s3", "ListObjectsV2", S3_LIST, "throttle", "SlowDown"),
    *_both_modes("s3", "ListObjectsV2", S3_LIST, "internal", "InternalError"),
    *_both_modes("s3", "HeadObject", S3_HEAD, "throttle", "503"),  # no body: status only
    *_both_modes("cloudwatch", "ListMetrics", {}, "throttle", "Throttling"),
    *_both_modes("cloudwatch", "ListMetrics", {}, "internal", "InternalServiceError"),
    *_both_modes("logs", "DescribeLogGroups", {}, "throttle", "ThrottlingException"),
    # Controls: codes legacy botocore retries only with another status (reference 3.4).
    Scenario("dynamodb", "ListTables", {}, "legacy", 1, "RequestLimitExceeded", error=(400, "RequestLimitExceeded")),
    Scenario("sqs", "ListQueues", {}, "legacy", 1, "RequestThrottled", error=(400, "RequestThrottled")),
    Scenario("ec2", "DescribeInstances", {}, "legacy", 1, "RequestLimitExceeded", error=(400, "RequestLimitExceeded")),
    # A non-retryable DynamoDB error is tried once only if its x-amz-crc32 is right (a wrong
    # one makes botocore retry it as a checksum failure).
    Scenario("dynamodb", "ListTables", {}, "legacy", 1, "ValidationException", error=(400, "ValidationException")),
    Scenario("dynamodb", "ListTables", {}, "standard", 1, "ValidationException", error=(400, "ValidationException")),
    # The FIS control API's own errors: not retried, mapped to the modelled exceptions.
    *[
        Scenario("fis", "GetExperiment", {"id": "EXP1"}, "standard", 1, code, error=(status, code))
        for status, code in [
            (400, "ValidationException"),
            (404, "ResourceNotFoundException"),
            (409, "ConflictException"),
            (402, "ServiceQuotaExceededException"),
        ]
    ],
]
# fmt: on


@dataclass
class Outcome:
    attempts: int = 0
    code: str | None = None
    exception: str | None = None
    invocation_ids: set[str] = field(default_factory=set)
    attempt_headers: list[str] = field(default_factory=list)
    backoff: list[float] = field(default_factory=list)  # the delays the SDK would have slept


class _ErrorServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, scenario: Scenario):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.scenario = scenario
        self.outcome = Outcome()
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as AWS endpoints
    disable_nagle_algorithm = True  # head and body are two writes: no 40 ms delayed-ACK stall
    server: _ErrorServer

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with self.server.lock:
            outcome = self.server.outcome
            outcome.attempts += 1
            outcome.invocation_ids.add(self.headers.get("amz-sdk-invocation-id", ""))
            outcome.attempt_headers.append(self.headers.get("amz-sdk-request", ""))
        resp = self.server.scenario.respond(self.command)
        self.send_response(resp.status)
        for name, value in resp.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def _run(scenario: Scenario, client: Any, server: _ErrorServer, skipped: SkippedBackoff) -> Outcome:
    method = getattr(client, xform_name(scenario.operation))
    before = len(skipped.delays)
    try:
        method(**scenario.params)
    except ClientError as e:
        server.outcome.code = e.response["Error"]["Code"]
        server.outcome.exception = type(e).__name__
    except Exception as e:  # ResponseParserError, ChecksumError...: this scenario's failure
        server.outcome.exception = f"{type(e).__name__}: {e}"
    server.outcome.backoff = skipped.delays[before:]
    return server.outcome


def _client(session: boto3.session.Session, scenario: Scenario, port: int) -> Any:
    config = Config(
        retries={"mode": scenario.mode},
        connect_timeout=5,
        read_timeout=20,
        s3={"addressing_style": "path"},
    )
    return session.client(scenario.api, endpoint_url=f"http://127.0.0.1:{port}", config=config)


def _run_all(skipped: SkippedBackoff) -> dict[str, Outcome]:
    session = boto3.session.Session(
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        region_name="us-east-1",
    )
    outcomes = {}
    for scenario in SCENARIOS:
        server = _ErrorServer(scenario)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        try:
            client = _client(session, scenario, server.server_address[1])
            outcomes[scenario.id] = _run(scenario, client, server, skipped)
        finally:
            server.shutdown()
            server.server_close()
    return outcomes


@pytest.fixture(scope="module")
def outcomes() -> dict[str, Outcome]:
    with pytest.MonkeyPatch.context() as mp, backoff_skipped() as skipped:
        for name in list(os.environ):
            if name in CA_VARS or name in PROXY_VARS or name.startswith("AWS_"):
                mp.delenv(name)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        return _run_all(skipped)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
def test_real_client_attempts_match_the_verified_matrix(scenario: Scenario, outcomes):
    outcome = outcomes[scenario.id]
    assert outcome.exception is not None, "the call succeeded"
    assert (outcome.attempts, outcome.code) == (scenario.attempts, scenario.code)
    # All requests were attempts of one call, numbered 1..N by the SDK itself.
    assert len(outcome.invocation_ids) == 1
    numbers = [h.split("attempt=")[1].split(";")[0] for h in outcome.attempt_headers]
    assert numbers == [str(n) for n in range(1, scenario.attempts + 1)]
    # Each retry came after a back-off the SDK's retry handler decided on.
    assert len(outcome.backoff) == scenario.attempts - 1


@pytest.mark.parametrize(
    ("scenario_id", "exception"),
    [
        ("fis-GetExperiment-400-ValidationException-standard", "ValidationException"),
        ("fis-GetExperiment-404-ResourceNotFoundException-standard", "ResourceNotFoundException"),
        ("fis-GetExperiment-409-ConflictException-standard", "ConflictException"),
        (
            "fis-GetExperiment-402-ServiceQuotaExceededException-standard",
            "ServiceQuotaExceededException",
        ),
        ("dynamodb-ListTables-internal-standard", "InternalServerError"),
        ("sqs-ListQueues-throttle-standard", "RequestThrottled"),  # class from QueryErrorCode
        ("lambda-ListFunctions-throttle-standard", "TooManyRequestsException"),
        ("cloudwatch-ListMetrics-throttle-standard", "ClientError"),  # not modelled
    ],
)
def test_modelled_exception_classes_are_raised(scenario_id, exception, outcomes):
    # The client's error factory picks the model's exception class, as for a real response.
    assert outcomes[scenario_id].exception == exception


def test_scenario_ids_are_unique():
    assert len({s.id for s in SCENARIOS}) == len(SCENARIOS)
