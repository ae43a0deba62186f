"""Pure helpers for the resource-scoped faults the proxy applies: which Lambda function an
Invoke names, which Kinesis stream a call names, and the answers those faults send.

No I/O and no mitmproxy here: the proxy passes the request's method, path, headers and (small)
body, and turns the returned `ErrorResponse` (status, headers, body) into its response.

Lambda (`aws:lambda:invocation-*`): Invoke, InvokeWithResponseStream and InvokeAsync name the
function in the path, URL-encoded, as a name, a partial ARN (`123456789012:function:name`) or a
full ARN, each with or without a `:qualifier`; the `Qualifier` query parameter also sets it.
`FunctionTargets` compares that with the targeted functions' ARNs and the target's
`functionQualifier` (https://docs.aws.amazon.com/fis/latest/userguide/targets.html#target-parameters:
absent: every invocation; `$LATEST`: unqualified ones too; else that version or alias).

Kinesis (`aws:kinesis:stream-*`): the JSON (or CBOR, from the Java SDK) body names the stream by
`StreamARN`, `StreamName` or, for SubscribeToShard, `ConsumerARN`. GetRecords names only a
shard iterator: `ShardIterators` remembers which stream the iterators that GetShardIterator and
GetRecords answers hand out belong to (bounded, least recently used first out).
"""

from __future__ import annotations

import io
import json
import struct
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from botocore.parsers import ResponseParserError

from fisproxy.aws.call import AwsCall
from fisproxy.aws.errors import render_error
from fisproxy.aws.renderers import ErrorResponse

# ---- Lambda -------------------------------------------------------------------------------

_INVOKE_PATHS = {
    ("2015-03-31", "invocations"): "Invoke",
    ("2021-11-15", "response-streaming-invocations"): "InvokeWithResponseStream",
    ("2014-11-13", "invoke-async"): "InvokeAsync",
}


@dataclass(frozen=True, slots=True)
class FunctionRef:
    """A function as one request names it; `region`/`account` only when it gave an ARN."""

    name: str
    qualifier: str | None = None
    region: str | None = None
    account: str | None = None
    operation: str = "Invoke"


def parse_function_name(value: str) -> tuple[str, str | None, str | None, str | None]:
    """(name, qualifier, region, account) of a FunctionName in any of its forms."""
    parts = value.split(":")
    if parts[0] == "arn" and len(parts) >= 7 and parts[2] == "lambda" and parts[5] == "function":
        return parts[6], (parts[7] if len(parts) > 7 else None), parts[3] or None, parts[4] or None
    if len(parts) >= 3 and parts[1] == "function":
        return parts[2], (parts[3] if len(parts) > 3 else None), None, parts[0] or None
    if len(parts) == 2:
        return parts[0], parts[1], None, None
    return value, None, None, None


def lambda_invocation(method: str, path: str) -> FunctionRef | None:
    """The function an Invoke-family request names (`path` may carry the query string);
    None for any other request."""
    if method.upper() != "POST":
        return None
    split = urlsplit(path)
    segments = [s for s in split.path.split("/") if s]
    if len(segments) != 4 or segments[1] != "functions":
        return None
    operation = _INVOKE_PATHS.get((segments[0], segments[3]))
    if operation is None:
        return None
    name, qualifier, region, account = parse_function_name(unquote(segments[2]))
    query = parse_qs(split.query).get("Qualifier")
    if query and not qualifier:
        qualifier = query[0]
    return FunctionRef(name, qualifier, region, account, operation)


@dataclass(frozen=True, slots=True)
class FunctionTargets:
    """The functions one action targets: (region, account, name) of each ARN, and the target's
    functionQualifier."""

    functions: frozenset[tuple[str, str, str]]
    qualifier: str | None = None

    @classmethod
    def from_arns(cls, arns: Iterable[str], qualifier: str | None = None) -> FunctionTargets:
        keys = set()
        for arn in arns:
            name, _, region, account = parse_function_name(arn)
            keys.add((region or "", account or "", name))
        return cls(frozenset(keys), qualifier or None)

    @classmethod
    def from_target(cls, target: Any) -> FunctionTargets:
        """From a `ResolvedTarget` of type aws:lambda:function."""
        return cls.from_arns(target.arns, target.parameters.get("functionQualifier"))

    def matches(self, ref: FunctionRef | None, request_region: str | None) -> bool:
        if ref is None:
            return False
        region = ref.region or request_region or ""
        named = any(
            name == ref.name and (not region or not r or r == region) and (ref.account is None or a == ref.account)
            for r, a, name in self.functions
        )
        if not named:
            return False
        if self.qualifier is None:
            return True
        if self.qualifier == "$LATEST":
            return ref.qualifier in (None, "$LATEST")
        return ref.qualifier == self.qualifier


def invocation_type(headers: Mapping[str, str]) -> str:
    """RequestResponse (default), Event or DryRun, from X-Amz-Invocation-Type."""
    for k, v in headers.items():
        if k.lower() == "x-amz-invocation-type":
            return v
    return "RequestResponse"


def _lambda_answer(status: int, payload: bytes, extra: tuple[tuple[str, str], ...] = ()) -> ErrorResponse:
    headers = (
        ("Content-Type", "application/json"),
        ("X-Amzn-RequestId", str(uuid.uuid4())),
        ("X-Amz-Executed-Version", "$LATEST"),
        *extra,
    )
    return ErrorResponse(status, headers, payload)


def function_error_response(
    kind: str = "invocation-error", message: str = "Invocation failed by an AWS FIS experiment",
    *, request_invocation_type: str = "RequestResponse",
) -> ErrorResponse | None:
    """What Lambda answers when the function failed (aws:lambda:invocation-error): 200 with
    `X-Amz-Function-Error: Unhandled` and the runtime's error document. An Event invocation is
    accepted (202, the failure happens out of the caller's sight); DryRun is left untouched
    (None)."""
    if request_invocation_type == "DryRun":
        return None
    if request_invocation_type == "Event":
        return ErrorResponse(202, (("X-Amzn-RequestId", str(uuid.uuid4())),), b"")
    body = json.dumps({"errorMessage": message, "errorType": kind, "stackTrace": []}).encode()
    return _lambda_answer(200, body, (("X-Amz-Function-Error", "Unhandled"),))


def http_integration_response(
    status_code: int, content_type: str, *, request_invocation_type: str = "RequestResponse",
) -> ErrorResponse | None:
    """What the function returns under aws:lambda:invocation-http-integration-response: a
    successful invocation (200) whose payload is the HTTP response ALB, API Gateway and VPC
    Lattice integrations read: statusCode and the Content-Type header, empty body."""
    if request_invocation_type == "DryRun":
        return None
    if request_invocation_type == "Event":
        return ErrorResponse(202, (("X-Amzn-RequestId", str(uuid.uuid4())),), b"")
    payload = {"statusCode": status_code, "headers": {"Content-Type": content_type}, "body": ""}
    return _lambda_answer(200, json.dumps(payload).encode())


# ---- Kinesis ------------------------------------------------------------------------------

KINESIS_THROUGHPUT_OPERATIONS = frozenset({"GetRecords", "GetShardIterator", "PutRecord", "PutRecords"})
KINESIS_EXPIRED_ITERATOR_OPERATIONS = frozenset({"GetRecords"})


@dataclass(frozen=True, slots=True)
class StreamRef:
    name: str
    region: str | None = None
    account: str | None = None

    @classmethod
    def from_arn(cls, arn: str) -> StreamRef | None:
        # arn:aws:kinesis:<region>:<account>:stream/<name>[/consumer/<consumer>:<time>]
        parts = arn.split(":", 5)
        if len(parts) != 6 or parts[2] != "kinesis" or not parts[5].startswith("stream/"):
            return None
        return cls(parts[5].split("/")[1], parts[3] or None, parts[4] or None)


def decode_body(body: bytes, content_type: str | None) -> Mapping[str, Any] | None:
    """A Kinesis request body as a mapping: JSON, or CBOR (`application/x-amz-cbor-1.1`)."""
    if not body:
        return None
    if content_type and "cbor" in content_type.lower():
        try:
            from botocore.parsers import BaseCBORParser  # botocore's decoder, not a public API

            value = BaseCBORParser().parse_data_item(io.BufferedReader(io.BytesIO(body)))
        except (ResponseParserError, ValueError, IndexError, KeyError, struct.error):
            return None  # malformed traffic passes through untouched
    else:
        try:
            value = json.loads(body)
        except ValueError:
            return None
    return value if isinstance(value, Mapping) else None


class ShardIterators:
    """Which stream a shard iterator belongs to, learned from answers; at most `limit` kept."""

    def __init__(self, limit: int = 10_000) -> None:
        self._limit = limit
        self._streams: OrderedDict[str, StreamRef] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, iterator: str | None, stream: StreamRef | None) -> None:
        if not iterator or stream is None:
            return
        with self._lock:
            self._streams[iterator] = stream
            self._streams.move_to_end(iterator)
            while len(self._streams) > self._limit:
                self._streams.popitem(last=False)

    def stream_of(self, iterator: str | None) -> StreamRef | None:
        if not iterator:
            return None
        with self._lock:
            stream = self._streams.get(iterator)
            if stream is not None:
                self._streams.move_to_end(iterator)
            return stream

    def learn(self, operation: str, request: Mapping[str, Any] | None, answer: Mapping[str, Any] | None,
              region: str | None) -> None:
        """Record the iterators a GetShardIterator or GetRecords answer hands out."""
        if answer is None:
            return
        if operation == "GetShardIterator":
            self.remember(answer.get("ShardIterator"), stream_of_request(request, region))
        elif operation == "GetRecords":
            current = self.stream_of((request or {}).get("ShardIterator")) or stream_of_request(request, region)
            self.remember(answer.get("NextShardIterator"), current)

    def __len__(self) -> int:
        return len(self._streams)


def stream_of_request(request: Mapping[str, Any] | None, region: str | None,
                      iterators: ShardIterators | None = None) -> StreamRef | None:
    """The stream a decoded Kinesis request names, if any."""
    if not request:
        return None
    for key in ("StreamARN", "ConsumerARN"):
        value = request.get(key)
        if isinstance(value, str) and (ref := StreamRef.from_arn(value)) is not None:
            return ref
    name = request.get("StreamName")
    if isinstance(name, str) and name:
        return StreamRef(name, region)
    if iterators is not None:
        return iterators.stream_of(request.get("ShardIterator"))
    return None


@dataclass(frozen=True, slots=True)
class StreamTargets:
    """The streams one action targets: (region, account, name) of each ARN."""

    streams: frozenset[tuple[str, str, str]]

    @classmethod
    def from_arns(cls, arns: Iterable[str]) -> StreamTargets:
        keys = set()
        for arn in arns:
            ref = StreamRef.from_arn(arn)
            if ref is not None:
                keys.add((ref.region or "", ref.account or "", ref.name))
        return cls(frozenset(keys))

    def matches(self, ref: StreamRef | None, request_region: str | None) -> bool:
        if ref is None:
            return False
        region = ref.region or request_region or ""
        return any(
            name == ref.name and (not region or not r or r == region) and (ref.account is None or a == ref.account)
            for r, a, name in self.streams
        )


def kinesis_throughput_error(call: AwsCall, stream: StreamRef | None) -> ErrorResponse:
    """Kinesis's ProvisionedThroughputExceededException (400) in the call's protocol."""
    where = f" in stream {stream.name}" if stream else ""
    account = f" under account {stream.account}" if stream and stream.account else ""
    return render_error(call, 400, "ProvisionedThroughputExceededException",
                        f"Rate exceeded for shard shardId-000000000000{where}{account}.")


def kinesis_expired_iterator_error(call: AwsCall) -> ErrorResponse:
    """Kinesis's ExpiredIteratorException (400) in the call's protocol."""
    return render_error(call, 400, "ExpiredIteratorException",
                        "Iterator expired. The iterator was created at a time further in the past "
                        "than the tolerated delay of 300000 milliseconds.")
