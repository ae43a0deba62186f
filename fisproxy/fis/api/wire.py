"""FIS API requests decoded as botocore's `fis` model describes them.

Routing is `aws/restmatch.py`'s route table over the model's REST URI templates, the same
inverse of botocore's REST serializer that identifies every rest-json call through the proxy:
method and path give the operation, its `{labels}` the URI members (percent-decoded: ARNs,
action ids). Query parameters are read by their wire names into their members' types
(integers, lists of strings). These URI and query members are checked by botocore's
`ParamValidator` against their shapes (types, minimum lengths and values), extended with what
botocore leaves to the service: maximums, patterns, and text that is not valid UTF-8
(undecodable bytes reach here as lone surrogates). A problem is a ValidationException naming
the wire name: `maxResults: must be 1-100, got 0`.

The JSON body is parsed by `jsonbody.py` (bounded, finite, valid Unicode); the handler
validates it with the operation's request model (`inputs.py`).

One quirk is not in the model: clients that leave the `/` of an ARN label unencoded (curl,
hand-written requests: `/tags/arn:aws:fis:...:experiment/EXP...`) are understood. The only
label that can hold a slash is `resourceArn`, the whole rest of the `/tags/` routes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import parse_qs, unquote

from botocore.model import ListShape, ServiceModel, Shape
from botocore.validate import ParamValidator, ValidationErrors

from fisproxy.aws import catalog, restmatch
from fisproxy.fis import jsonbody
from fisproxy.fis.api.errors import UnknownOperation, invalid, shown
from fisproxy.httpdata import ApiRequest

_ARN_ROUTES = "/tags/"
_INTEGER = re.compile(r"-?[0-9]{1,18}")  # ASCII digits only (int() also takes "1_0", "\u0663")


@dataclass(frozen=True)
class OperationInput:
    """One request, decoded: the operation's name, its URI and query members by member name
    (typed and checked), and its JSON body (an object; empty when the operation has none)."""

    operation: str
    params: Mapping[str, Any] = field(default_factory=dict)
    body: Mapping[str, Any] = field(default_factory=dict)


def decode(request: ApiRequest) -> OperationInput:
    """The operation and input of `request`; FisError (ValidationException) for input the model
    forbids, UnknownOperation when no operation has this method and path."""
    path, _, raw_query = request.path.partition("?")
    query: dict[str, list[str]] = {k: list(v) for k, v in request.query.items()}
    for k, v in parse_qs(raw_query).items():
        query.setdefault(k, []).extend(v)
    path = _arn_slashes_encoded(path)
    route = _route(request.method.upper(), path, query)
    operation = _model().operation_model(route.operation)
    members: Mapping[str, Shape] = operation.input_shape.members if operation.input_shape else {}
    params: dict[str, Any] = {}
    labels = route.labels(path)
    for name, shape in members.items():
        wire = shape.serialization.get("name", name)
        where = shape.serialization.get("location")
        if where == "uri" and wire in labels:
            value = unquote(labels[wire])
        elif where == "querystring" and query.get(wire):
            value = _typed(query[wire], shape)
        else:
            continue  # a body member, or not given
        problem = _VALIDATOR.problem(value, shape)
        if problem is not None:
            raise invalid(f"{wire}: {problem}")
        params[name] = value
    return OperationInput(operation.name, params, _body(members, request.body))


@cache
def _model() -> ServiceModel:
    return catalog.service_model("fis")


def _arn_slashes_encoded(path: str) -> str:
    if path.startswith(_ARN_ROUTES):
        return _ARN_ROUTES + path[len(_ARN_ROUTES):].replace("/", "%2F")
    return path


def _route(method: str, path: str, query: Mapping[str, list[str]]) -> restmatch.Route:
    table = restmatch.route_table("fis")
    first = {k: v[0] for k, v in query.items() if v}
    found = table.match(method, path, first, {})
    if found is not None:
        return found.route
    if any(table.match(other, path, first, {}) for other in table.routes if other != method):
        raise invalid(f"{method} is not allowed on {shown(path)}")
    raise UnknownOperation(f"No FIS operation for {method} {shown(path)}")


def _typed(values: list[str], shape: Shape) -> Any:
    """Query values as the member's type; a value that is not of it is left as text, for the
    validator to name."""
    if isinstance(shape, ListShape):
        return values
    if shape.type_name in ("integer", "long") and _INTEGER.fullmatch(values[0]):
        return int(values[0])
    return values[0]


def _body(members: Mapping[str, Shape], raw: bytes) -> Mapping[str, Any]:
    if not raw.strip() or all(s.serialization.get("location") for s in members.values()):
        return {}
    try:
        body = jsonbody.loads(raw)
    except jsonbody.BodyError as e:
        raise invalid(f"The request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object")
    return body


# ---- checks ---------------------------------------------------------------------------------

class _Problems(ValidationErrors):
    """What the validator reports, kept as (reason, details) for fisproxy's messages."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, Any]]] = []

    def report(self, name: str, reason: str, **kwargs: Any) -> None:
        super().report(name, reason, **kwargs)
        self.found.append((reason, kwargs))


class _ServiceValidator(ParamValidator):
    """botocore's client-side checks, and the ones it leaves to the service.

    `_validate` and its `_validate_<type>` methods are ParamValidator's dispatch by shape type
    (botocore's stubs list only `validate`, which would report through its own, unreadable
    error list)."""

    # List items are checked one by one only when their shape has one of these.
    VALIDATED_METADATA_ATTRS = ParamValidator.VALIDATED_METADATA_ATTRS | {"max", "pattern"}

    def problem(self, value: Any, shape: Shape) -> str | None:
        """What is wrong with one member's value, or None."""
        problems = _Problems()
        self._validate(value, shape, problems, "")  # type: ignore[attr-defined]
        if not problems.found:
            return None
        reason, details = problems.found[0]
        scalar = shape.member if isinstance(shape, ListShape) else shape
        return _message(reason, details, scalar, value)

    def _validate_string(self, param: Any, shape: Shape, errors: ValidationErrors, name: str) -> None:
        if isinstance(param, str) and not _is_text(param):
            errors.report(name, "not text", param=param)
            return
        super()._validate_string(param, shape, errors, name)  # type: ignore[misc]  # type, min length
        if not isinstance(param, str):
            return
        hi = shape.metadata.get("max")
        if hi is not None and len(param) > hi:
            errors.report(name, "too long", param=param, max_allowed=hi)
            return
        pattern = shape.metadata.get("pattern")
        compiled = _compiled(pattern) if pattern else None
        if compiled is not None and not compiled.fullmatch(param):
            errors.report(name, "no match", param=param, pattern=pattern)

    def _validate_integer(self, param: Any, shape: Shape, errors: ValidationErrors, name: str) -> None:
        super()._validate_integer(param, shape, errors, name)  # type: ignore[misc]  # type, minimum
        hi = shape.metadata.get("max")
        if isinstance(param, int) and hi is not None and param > hi:
            errors.report(name, "invalid range", param=param)

    _validate_long = _validate_integer


_VALIDATOR = _ServiceValidator()


def _message(reason: str, details: Mapping[str, Any], shape: Shape, member_value: Any) -> str:
    value = details.get("param")
    lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
    if reason == "not text":
        return "must be valid UTF-8 text"
    if reason == "invalid type":
        kind = "an integer" if shape.type_name in ("integer", "long") else f"a {shape.type_name}"
        return f'must be {kind}, got "{shown(str(value))}"'
    if reason == "invalid length":  # botocore reports the length, not the text
        got = f'"{shown(member_value)}"' if isinstance(member_value, str) else f"{value} characters"
        return f"must be at least {lo} characters, got {got}"
    if reason == "too long":
        return f'must be at most {hi} characters, got "{shown(str(value))}"'
    if reason == "no match":
        return f'must match {details["pattern"]}, got "{shown(str(value))}"'
    if reason == "invalid range":
        return f"must be {lo}-{hi}, got {value}"
    return reason


def _is_text(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


@cache
def _compiled(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:  # a Java-only construct: the length checks still hold
        return None
