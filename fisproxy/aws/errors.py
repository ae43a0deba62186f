"""Protocol-correct AWS error responses: which error a fault sends, and its exact bytes.

`error_for(call, kind, status=, code=, message=)` is what a fault sends: the service's own
throttle / internal / unavailable error (`standard_error`), or the user's own code, which SDKs
then report exactly as given; `render_error(call, status, code, message)` renders any error in
the call's protocol (see `renderers.py`). Codes are resolved against botocore's model, so callers may pass either a
shape name or a modelled error code (`InternalErrorException` or `InternalError` for SNS), and
may prefix a json `__type` namespace (`com.amazon.coral.availability#ThrottlingException`).

Every code chosen here is one all SDKs retry, *at the status that goes with it*: botocore's
legacy mode matches code AND status (`Throttling`/`ThrottlingException`/
`ProvisionedThroughputExceededException` only at 400, EC2 `RequestLimitExceeded` only at 503,
SQS `RequestThrottled` only at 403); 5xx is retried whatever the code. See botocore's
retry rules (https://github.com/boto/botocore/blob/develop/botocore/data/_retry.json,
https://github.com/boto/botocore/blob/develop/botocore/retries/standard.py) and the SDKs' shared
retry behavior (https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Literal, cast

from botocore.model import ServiceModel, StructureShape

from fisproxy.aws import catalog
from fisproxy.aws.call import AwsCall
from fisproxy.aws.renderers import ErrorDetails, ErrorResponse, renderer_for

__all__ = ["ErrorKind", "ErrorResponse", "error_for", "render_error", "standard_error"]

ErrorKind = Literal["throttle", "internal", "unavailable"]
Payload = tuple[int, str, str]

_DEFAULT_MESSAGES = {
    "throttle": "Rate exceeded",
    "internal": "Internal server error",
    "unavailable": "Service is unable to handle request.",
}

# Throttles that differ from the generic rule (table 3.6). Where a service has several, the
# first one the operation models wins (Kinesis: data plane vs control plane), else the first.
_THROTTLES: dict[str, tuple[Payload, ...]] = {
    # On-demand/control-plane form; clients match this exact __type. Not RequestLimitExceeded:
    # legacy botocore does not retry it.
    "dynamodb": (
        (
            400,
            "com.amazon.coral.availability#ThrottlingException",
            "Throughput exceeds the current capacity of your table or index. DynamoDB is "
            "automatically scaling your table or index so please try again shortly. If "
            "exceptions persist, check if you have a hot key: https://docs.aws.amazon.com/"
            "amazondynamodb/latest/developerguide/bp-partition-key-design.html",
        ),
    ),
    "kinesis": (
        (400, "ProvisionedThroughputExceededException", "Rate exceeded for shard."),
        (400, "LimitExceededException", "Rate exceeded for stream."),
    ),
    "sqs": ((403, "RequestThrottled", "Request is throttled"),),
    "ec2": ((503, "RequestLimitExceeded", "Request limit exceeded."),),
    "lambda": ((429, "TooManyRequestsException", "Rate Exceeded."),),
    "apigateway": ((429, "TooManyRequestsException", "Too Many Requests"),),
    "s3": ((503, "SlowDown", "Please reduce your request rate."),),
}

# Internal / unavailable errors of services whose model has no such shape (table 3.6);
# every other service's comes from its model, or from the generic rule.
_INTERNALS: dict[str, Payload] = {
    "s3": (500, "InternalError", "We encountered an internal error. Please try again."),
    "ec2": (500, "InternalError", "An internal error has occurred"),
    "sqs": (500, "InternalError", "Internal server error"),
}
_UNAVAILABLES: dict[str, Payload] = {
    "ec2": (503, "Unavailable", "The server is overloaded and can't handle the request."),
}

# Modelled server-fault shapes by name: InternalServerError, InternalFailureException,
# KMSInternalException, InternalServiceFault, ServiceFailureException, Lambda's ServiceException.
# An upper-case prefix (KMS, WAF) is allowed; longer prefixes name something else
# (HandlerInternalFailure, InvalidECSServiceException).
_INTERNAL_NAME = re.compile(
    r"^(?:[A-Z]{2,}(?=[A-Z][a-z]))?(?:Internal(?:Server|Service)?|Service(?:Failure)?|Server)"
    r"(?:Error|Failure|Fault|Exception)+$"
)
_UNAVAILABLE_NAME = re.compile(r"^ServiceUnavailable(?:Exception)?$")

# The common throttle is `ThrottlingException` in JSON protocols and `Throttling` in awsQuery;
# awsQueryCompatible services (CloudWatch) answer `__type` ThrottlingException with the
# query code Throttling, which is what SDKs then report.
_QUERY_ALIASES = {"ThrottlingException": "Throttling"}
_JSON_ALIASES = {query: json_name for json_name, query in _QUERY_ALIASES.items()}
# Protocols that report the query-style code (`Throttling`, a model's error code).
_XML_PROTOCOLS = frozenset({"query", "ec2", "rest-xml"})


@dataclass(frozen=True)
class _Shape:
    """What rendering needs from one modelled error shape."""

    name: str
    code: str  # the model's error code (query protocols), else the name
    status: int | None
    sender_fault: bool
    message_key: str | None
    retry_after: bool


def _shape_info(shape: StructureShape) -> _Shape:
    error = shape.metadata.get("error") or {}
    message_key = next((m for m in shape.members if m.lower() == "message"), None)
    retry_after = any(
        m.serialization.get("location") == "header"
        and m.serialization.get("name", "").lower() == "retry-after"
        for m in shape.members.values()
    )
    return _Shape(
        name=shape.name,
        code=shape.error_code or shape.name,
        status=error.get("httpStatusCode"),
        sender_fault=bool(error.get("senderFault")),
        message_key=message_key,
        retry_after=retry_after,
    )


@cache
def _error_index(api: str) -> dict[str, _Shape]:
    """Modelled errors of `api` by shape name and by error code (names win on a clash)."""
    # botocore types error_shapes as Shape; every model's error shapes are structures
    shapes = [_shape_info(cast(StructureShape, s)) for s in catalog.service_model(api).error_shapes]
    index = {s.code: s for s in shapes}
    index.update({s.name: s for s in shapes})
    return index


@cache
def _operation_errors(api: str, operation: str) -> tuple[str, ...]:
    model = catalog.service_model(api)
    if operation not in model.operation_names:
        return ()
    return tuple(s.name for s in model.operation_model(operation).error_shapes)


def _api_of(call: AwsCall) -> str | None:
    """botocore service name for the call: its `api`, else what its signing name means."""
    names = catalog.api_names()
    if call.api in names:
        return call.api
    if call.service in names:
        return call.service
    apis = catalog.apis_for_service(call.service)
    return apis[0] if apis else None


def _model(api: str | None) -> ServiceModel | None:
    return catalog.service_model(api) if api else None


def _protocol(call: AwsCall, model: ServiceModel | None) -> str | None:
    if call.protocol:
        return call.protocol
    return model.resolved_protocol if model is not None else None


def standard_error(call: AwsCall, kind: ErrorKind) -> Payload:
    """(status, code, message) of the service's own throttle / internal / unavailable error.

    The code is the one SDKs report (`Error.Code`, after any `namespace#`): the model's error
    code for query and awsQueryCompatible services, the shape name otherwise. Order: the
    service's row of table 3.6 for throttles; the modelled fault shape (operation first,
    then service) for internal / unavailable; a short table for services that model none;
    then the generic rule (400 ThrottlingException or Throttling, 500 InternalFailure,
    503 ServiceUnavailable).
    """
    if kind not in _DEFAULT_MESSAGES:
        raise ValueError(f"unknown error kind {kind!r}; valid: {', '.join(_DEFAULT_MESSAGES)}")
    api = _api_of(call)
    model = _model(api)
    protocol = _protocol(call, model)
    query_style = protocol in _XML_PROTOCOLS or (
        model is not None and "awsQueryCompatible" in model.metadata
    )
    operation_errors = _operation_errors(api, call.operation) if api and call.operation else ()
    message = _DEFAULT_MESSAGES[kind]

    if kind == "throttle":
        candidates = _THROTTLES.get(api or "")
        if candidates:
            modelled = [c for c in candidates if c[1].rpartition("#")[2] in operation_errors]
            return (modelled or candidates)[0]
        return 400, "Throttling" if query_style else "ThrottlingException", message

    pattern, status, table, generic = (
        (_INTERNAL_NAME, 500, _INTERNALS, "InternalFailure")
        if kind == "internal"
        else (_UNAVAILABLE_NAME, 503, _UNAVAILABLES, "ServiceUnavailable")
    )
    if api:
        shape = _modelled_fault(api, operation_errors, pattern)
        if shape is not None:
            if kind == "internal" and shape.status and shape.status >= 500:
                status = shape.status
            return status, shape.code if query_style else shape.name, message
    return table.get(api or "", (status, generic, message))


def _modelled_fault(
    api: str, operation_errors: tuple[str, ...], pattern: re.Pattern[str]
) -> _Shape | None:
    """The service's modelled server-fault shape matching `pattern`, preferring one the
    operation lists, then names starting with `Internal` (over e.g. DependentService...)."""
    shapes = {
        s.name: s
        for s in _error_index(api).values()
        if pattern.match(s.name) and not s.sender_fault and (s.status is None or s.status >= 500)
    }
    if not shapes:
        return None
    ranked = sorted(
        shapes.values(),
        key=lambda s: (s.name not in operation_errors, "Internal" not in s.name, s.name),
    )
    return ranked[0]


# The order in which a custom code is looked up among the service's standard errors.
_KINDS: tuple[ErrorKind, ...] = ("throttle", "unavailable", "internal")


def error_for(
    call: AwsCall,
    kind: ErrorKind | None,
    *,
    status: int | None = None,
    code: str | None = None,
    message: str | None = None,
    method: str = "POST",
    request_id: str | None = None,
) -> ErrorResponse:
    """The error response a fault sends for `call`: the one place that picks its payload.

    Without `code` (or with the code of the standard error of `kind`), it is the service's
    own error of `kind` (`standard_error`; `None` means "internal"). A custom `code` (the
    Chaos API's `error.code`, `fisproxy:api:error`'s `errorCode`, LocalStack's `exception`)
    reaches the SDK exactly as given: botocore (boto3, the AWS CLI) reports it as the error
    code in every protocol, also for awsQueryCompatible services such as SQS, where a code is
    otherwise replaced by its query-style form (`ThrottlingException` by `Throttling`).

    A custom code's status and message are those of the service's standard error with that
    code when there is one (`Throttling` -> 400 "Rate exceeded"), else the status the model
    gives that error (Lambda's ResourceNotFoundException -> 404), else the status of `kind`'s
    error, with the message "<code> (injected by fisproxy)". `status` and `message`, when
    given (not empty), win.
    """
    chosen_status, chosen_code, chosen_message = standard_error(call, kind or "internal")
    exact = False
    if code and code != chosen_code:
        exact = True
        known = next((e for e in (standard_error(call, k) for k in _KINDS) if e[1] == code), None)
        if known is not None:
            chosen_status, chosen_code, chosen_message = known
        else:
            api = _api_of(call)
            shape = _error_index(api).get(code.rpartition("#")[2]) if api else None
            if shape is not None and shape.status is not None:
                chosen_status = shape.status
            chosen_code, chosen_message = code, f"{code} (injected by fisproxy)"
    return render_error(
        call,
        status if status is not None else chosen_status,
        chosen_code,
        message or chosen_message,
        method=method,
        request_id=request_id,
        exact_code=exact,
    )


def render_error(
    call: AwsCall,
    status: int,
    code: str,
    message: str,
    *,
    method: str = "POST",
    request_id: str | None = None,
    exact_code: bool = False,
) -> ErrorResponse:
    """`status`/`code`/`message` as the call's service would send them, in `call.protocol`.

    The protocol is `call.protocol`, else the model's resolved protocol, else (unknown
    service) a json fallback that both json and rest-json parsers read. HEAD requests get no
    body: the status, request-id headers and (rest-json) `x-amzn-ErrorType`. `request_id`
    defaults to a fresh one in the service's format. Content-Length is the HTTP layer's.

    `code` is resolved against the model: a shape name or its modelled error code gives the
    wire form the service uses (SNS `ThrottledException` is sent as `Throttled`). With
    `exact_code`, SDKs report `code` itself (after any `namespace#`) instead: the xml code and
    the `x-amzn-query-error` code are `code`, and json's `__type` is `code` unless the service
    is awsQueryCompatible, where it stays the modelled shape's name (botocore picks SQS's
    exception class from it).
    """
    api = _api_of(call)
    model = _model(api)
    namespace, _, short = code.rpartition("#")
    shape = _error_index(api).get(short) if api else None
    query_compatible = model is not None and "awsQueryCompatible" in model.metadata
    if exact_code:
        name = shape.name if shape is not None and query_compatible else short
        query_code = short
    elif shape is not None:
        name, query_code = shape.name, shape.code
    elif query_compatible:
        name, query_code = _JSON_ALIASES.get(short, short), _QUERY_ALIASES.get(short, short)
    else:
        name = query_code = short
    details = ErrorDetails(
        status=status,
        name=name,
        namespace=namespace or None,
        query_code=query_code,
        message=message,
        message_key=(shape.message_key if shape and shape.message_key else "message"),
        retry_after=bool(shape and shape.retry_after),
        model=model,
        request_id=request_id,
        head=method.upper() == "HEAD",
    )
    return renderer_for(_protocol(call, model)).render(details)
