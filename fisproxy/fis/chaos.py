"""The LocalStack Chaos API: `/_localstack/chaos/faults` and `/_localstack/chaos/effects`.

Shapes and semantics follow LocalStack's Chaos API
(https://docs.localstack.cloud/user-guide/chaos-engineering/chaos-api/):

- faults: a JSON array of `FaultRule`s. GET reads, POST replaces, PATCH appends, DELETE removes
  the rules exactly equal to the given ones; each answers 200 with the whole current list, echoed
  as given (no defaults filled in, keys in the order the client wrote them).
- effects: `{"latency": <ms>}`. GET reads (default 0), POST replaces.
- invalid input: 400 `{"message": "Error validating JSON schema: <jsonschema's message>"}` or
  `{"message": "Error decoding JSON: <json error>"}`; the configuration is left as it was.

LocalStack validates with `jsonschema` against its OpenAPI schemas. jsonschema is not a
dependency: the models below carry the same constraints and `_schema_message` words pydantic's
errors as jsonschema would, choosing among several errors as `jsonschema.best_match` does.

Matching (`ChaosState.match`, once per proxied AWS request) reads a precompiled, immutable
snapshot that is swapped whole on every change, so it takes no lock and calls no pydantic.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    model_serializer,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from fisproxy.aws.call import AwsCall
from fisproxy.fis import jsonbody
from fisproxy.fis.decide import decide
from fisproxy.fis.faults import Fault, FaultSpec, RuleSpec
from fisproxy.httpdata import ApiRequest, ApiResponse

log = logging.getLogger(__name__)

FAULTS_PATH = "/_localstack/chaos/faults"
EFFECTS_PATH = "/_localstack/chaos/effects"

DEFAULT_STATUS = 503
DEFAULT_CODE = "ServiceUnavailable"
FAULT_MESSAGE = "Operation failed due to a simulated fault"


# --- shapes (LocalStack OpenAPI `FaultRule`, `NetworkEffectsConfig`) ---------------------------


def _not_null(json_type: str) -> BeforeValidator:
    """An absent field takes its default; an explicit `null` is a type error, as in the schema."""

    def check(value: Any) -> Any:
        if value is None:
            raise PydanticCustomError(
                "json_type", "Input should be of JSON type {expected}", {"expected": json_type}
            )
        return value

    return BeforeValidator(check)


def _integral(value: Any) -> Any:
    # JSON Schema's "integer" (draft 6 on) accepts 400.0; strict int would not.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_STRING = _not_null("string")
_INTEGER = _not_null("integer")

Region = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9-]+$")]
Service = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9-_]+$")]
Operation = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z]+$")]
ErrorCode = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9]+$")]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Description = Annotated[str, StringConstraints(max_length=8192)]
StatusCode = Annotated[int, BeforeValidator(_integral), Field(ge=400, le=599)]
# An hour, as for fisproxy:api:latency's latencyMilliseconds: LocalStack's schema sets no
# maximum, but a number past a float (10**400) or an asyncio timer (1e308) would break the
# proxy at the first request it delays.
MAX_LATENCY_MS = 3_600_000
Latency = Annotated[int, BeforeValidator(_integral), Field(ge=0, le=MAX_LATENCY_MS)]


class _Echoed(BaseModel):
    """Strict JSON shape that dumps the fields the client set, in the client's key order.

    Equality is by that content (key order aside), which is what DELETE's "exactly equal" means.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    _order: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _remember_order(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        model = handler(data)
        if isinstance(data, dict):
            model._order = tuple(data)
        return model

    @model_serializer(mode="wrap")
    def _in_client_order(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        rank = {key: i for i, key in enumerate(self._order)}
        return dict(sorted(data.items(), key=lambda item: rank.get(item[0], len(rank))))

    def wire(self) -> dict[str, Any]:
        """The JSON object as the client gave it: set fields only, camelCase names."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Echoed):
            return NotImplemented
        return type(self) is type(other) and self.wire() == other.wire()


class FaultError(_Echoed):
    """The error a matching request gets; absent fields mean 503 `ServiceUnavailable`."""

    status_code: Annotated[StatusCode | None, _INTEGER] = Field(default=None, alias="statusCode")
    code: Annotated[ErrorCode | None, _STRING] = None


class FaultRule(_Echoed):
    """Which requests fail. Absent `region`/`service`/`operation` match anything; `probability`
    (absent: 1.0) is rolled per request; `description` has no effect."""

    region: Annotated[Region | None, _STRING] = None
    service: Annotated[Service | None, _STRING] = None
    operation: Annotated[Operation | None, _STRING] = None
    probability: Annotated[Probability | None, _not_null("number")] = None
    description: Annotated[Description | None, _STRING] = None
    error: Annotated[FaultError | None, _not_null("object")] = None


class NetworkEffects(_Echoed):
    """Latency in milliseconds added to every AWS call; 0 means none."""

    latency: Latency


_RULES = TypeAdapter(list[FaultRule])


# --- jsonschema-style messages -----------------------------------------------------------------

# pydantic error type -> the JSON Schema type the value failed to be
_JSON_TYPES = {
    "string_type": "string",
    "int_type": "integer",
    "int_from_float": "integer",
    "float_type": "number",
    "finite_number": "number",
    "model_type": "object",
    "model_attributes_type": "object",
    "dict_type": "object",
    "list_type": "array",
}


class SchemaError(ValueError):
    """Input that does not satisfy the Chaos API's JSON schema; the text is jsonschema's."""


def _bound(value: Any) -> Any:
    # The schema's bounds are integers (`maximum: 1`); pydantic hands them back as 1.0 for floats.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _schema_message(errors: Sequence[ErrorDetails]) -> str:
    """jsonschema's message for the error `jsonschema.validate` would report.

    jsonschema reports a whole-object error (additional or missing property) at the object's
    path and all unexpected keys of one object in one message; `best_match` then prefers the
    shallowest path, then the greatest among siblings, then the first found.
    """
    extras: dict[tuple[int | str, ...], list[str]] = {}
    candidates: list[tuple[tuple[int | str, ...], str]] = []
    for err in errors:
        loc, kind, value = tuple(err["loc"]), err["type"], err["input"]
        ctx = err.get("ctx") or {}
        if kind == "extra_forbidden":
            if loc[:-1] not in extras:
                extras[loc[:-1]] = []
                candidates.append((loc[:-1], ""))  # message filled in below
            extras[loc[:-1]].append(str(loc[-1]))
        elif kind == "missing":
            candidates.append((loc[:-1], f"{loc[-1]!r} is a required property"))
        elif kind == "json_type":
            candidates.append((loc, f"{value!r} is not of type {ctx['expected']!r}"))
        elif kind in _JSON_TYPES:
            candidates.append((loc, f"{value!r} is not of type {_JSON_TYPES[kind]!r}"))
        elif kind == "string_pattern_mismatch":
            candidates.append((loc, f"{value!r} does not match {ctx['pattern']!r}"))
        elif kind == "string_too_long":
            candidates.append((loc, f"{value!r} is too long"))
        elif kind == "greater_than_equal":
            candidates.append((loc, f"{value!r} is less than the minimum of {_bound(ctx['ge'])!r}"))
        elif kind == "less_than_equal":
            candidates.append(
                (loc, f"{value!r} is greater than the maximum of {_bound(ctx['le'])!r}")
            )
        else:  # a constraint the Chaos schemas do not have: pydantic's own words
            candidates.append((loc, err["msg"]))
    path, message = max(candidates, key=lambda c: (-len(c[0]), c[0]))
    if not message:
        keys = sorted(extras[path])
        verb = "was" if len(keys) == 1 else "were"
        message = f"Additional properties are not allowed ({', '.join(map(repr, keys))} {verb} unexpected)"
    return message


def _unique(items: list[Any]) -> bool:
    # JSON equality: unlike Python's, true is not 1 (jsonschema's uniqueItems works the same way).
    keys = [json.dumps(item, sort_keys=True) for item in items]
    return len(set(keys)) == len(keys)


def parse_rules(data: Any) -> list[FaultRule]:
    """A faults request body (decoded JSON): an array of unique `FaultRule`s, or SchemaError."""
    if isinstance(data, list) and not _unique(data):
        raise SchemaError(f"{data!r} has non-unique elements")
    try:
        return _RULES.validate_python(data)
    except ValidationError as e:
        raise SchemaError(_schema_message(e.errors())) from None


def parse_effects(data: Any) -> NetworkEffects:
    """An effects request body (decoded JSON), or SchemaError."""
    try:
        return NetworkEffects.model_validate(data)
    except ValidationError as e:
        raise SchemaError(_schema_message(e.errors())) from None


# --- state and matching -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A Chaos rule (or the effects' latency) as `fis.decide` reads it: for every caller,
    never stopped (a changed configuration replaces the candidates whole)."""

    rule: RuleSpec
    source: str
    stopped: None = None

    def admits(self, access_key: str | None) -> bool:
        return True

    @classmethod
    def of_rule(cls, index: int, rule: FaultRule) -> _Candidate:
        error = rule.error or FaultError()
        spec = FaultSpec(
            kind="error",
            status=error.status_code if error.status_code is not None else DEFAULT_STATUS,
            code=error.code if error.code is not None else DEFAULT_CODE,
            message=FAULT_MESSAGE,
        )
        # LocalStack's service names are lower case, `_` read as `-` (`cognito_identity`).
        service = rule.service.lower().replace("_", "-") if rule.service is not None else None
        return cls(
            RuleSpec(
                services=frozenset({service}) if service is not None else None,
                operations=frozenset({rule.operation}) if rule.operation is not None else None,
                region=rule.region,
                percentage=100.0 * (rule.probability if rule.probability is not None else 1.0),
                faults=(spec,),
            ),
            source=f"chaos/{index}",
        )

    @classmethod
    def of_effects(cls, effects: NetworkEffects) -> _Candidate:
        spec = FaultSpec(kind="latency", latency_ms=float(effects.latency))
        return cls(RuleSpec(None, None, None, 100.0, (spec,)), source="chaos/effects")


@dataclass(frozen=True, slots=True)
class _Snapshot:
    rules: tuple[FaultRule, ...]
    effects: NetworkEffects
    candidates: tuple[_Candidate, ...]

    @classmethod
    def build(cls, rules: Iterable[FaultRule], effects: NetworkEffects) -> _Snapshot:
        rules = tuple(rules)
        latency = (_Candidate.of_effects(effects),) if effects.latency > 0 else ()
        return cls(
            rules=rules,
            effects=effects,
            candidates=latency + tuple(_Candidate.of_rule(i, r) for i, r in enumerate(rules)),
        )


class ChaosState:
    """The current fault rules and network effects, persisted through `load`/`save`.

    `load()` returns the saved document (`{"faults": [...], "effects": {...}}`) or None; `save`
    is called with the new document before a change takes effect, so a change is acknowledged
    only once saved. Changes are serialised by a lock; `match` reads without one.
    """

    def __init__(
        self,
        load: Callable[[], dict[str, Any] | None] = lambda: None,
        save: Callable[[dict[str, Any]], None] = lambda doc: None,
    ) -> None:
        self._load = load
        self._save = save
        self._lock = threading.Lock()
        self._snap = _Snapshot.build((), NetworkEffects(latency=0))
        self.reload()

    def reload(self) -> None:
        """Read the saved configuration again (another proxy on the store changed it)."""
        doc = self._load()
        if not doc:
            return
        try:
            rules = parse_rules(doc.get("faults", []))
            effects = parse_effects(doc.get("effects", {"latency": 0}))
        except SchemaError as e:
            # Not fatal: the proxy still works, and the log says why the rules are gone.
            log.warning("ignoring the saved chaos configuration: %s", e)
            return
        with self._lock:
            self._snap = _Snapshot.build(rules, effects)

    @property
    def faults(self) -> list[FaultRule]:
        return list(self._snap.rules)

    @property
    def effects(self) -> NetworkEffects:
        return self._snap.effects

    def faults_doc(self) -> list[dict[str, Any]]:
        return [rule.wire() for rule in self._snap.rules]

    def set_faults(self, rules: Iterable[FaultRule]) -> None:
        self._change(lambda snap: (tuple(rules), snap.effects))

    def add_faults(self, rules: Iterable[FaultRule]) -> None:
        self._change(lambda snap: (snap.rules + tuple(rules), snap.effects))

    def remove_faults(self, rules: Iterable[FaultRule]) -> None:
        """Remove every rule exactly equal to one of `rules`; others (and absent ones) stay."""
        doomed = [rule.wire() for rule in rules]
        self._change(
            lambda snap: (tuple(r for r in snap.rules if r.wire() not in doomed), snap.effects)
        )

    def set_effects(self, effects: NetworkEffects) -> None:
        self._change(lambda snap: (snap.rules, effects))

    def _change(
        self, update: Callable[[_Snapshot], tuple[tuple[FaultRule, ...], NetworkEffects]]
    ) -> None:
        with self._lock:
            rules, effects = update(self._snap)
            self._save({"faults": [r.wire() for r in rules], "effects": effects.wire()})
            self._snap = _Snapshot.build(rules, effects)

    def candidates(self) -> tuple[_Candidate, ...]:
        """The effects' latency, then the fault rules in order, for `fis.decide`: the first rule
        that matches a request and wins its probability roll applies (a lost roll lets later
        rules have their turn; once one applied, the rest are not rolled)."""
        return self._snap.candidates

    def match(self, call: AwsCall, rng: random.Random) -> list[Fault]:
        """The chaos faults for one AWS request (what `decide` makes of `candidates`)."""
        return list(decide(call, self._snap.candidates, rng).faults)


# --- HTTP ---------------------------------------------------------------------------------------


def _message(status: int, text: str) -> ApiResponse:
    return ApiResponse.json(status, {"message": text})


class ChaosApi:
    """Serves the two Chaos API paths over `ApiRequest`s; `handle` returns None for other paths."""

    _ALLOWED = {FAULTS_PATH: "GET, POST, PATCH, DELETE", EFFECTS_PATH: "GET, POST"}

    def __init__(self, state: ChaosState) -> None:
        self.state = state

    def handle(self, request: ApiRequest) -> ApiResponse | None:
        path = request.path.rstrip("/") if request.path != "/" else request.path
        if path not in self._ALLOWED:
            return None
        method = request.method.upper()
        if method not in self._ALLOWED[path].split(", "):
            return ApiResponse.json(
                405, {"message": "Method Not Allowed"}, {"allow": self._ALLOWED[path]}
            )
        if method == "GET":
            return self._current(path)
        try:
            # NaN and Infinity parse, as in LocalStack (the schema then refuses them); nesting
            # is bounded, where LocalStack's json.loads would raise RecursionError.
            data = jsonbody.loads(request.body, finite=False)
        except jsonbody.BodyError as e:  # not JSON, bytes that are not UTF-8/16/32, too deep
            return _message(400, f"Error decoding JSON: {e}")
        try:
            if path == EFFECTS_PATH:
                self.state.set_effects(parse_effects(data))
            elif method == "POST":
                self.state.set_faults(parse_rules(data))
            elif method == "PATCH":
                self.state.add_faults(parse_rules(data))
            else:
                self.state.remove_faults(parse_rules(data))
        except SchemaError as e:
            return _message(400, f"Error validating JSON schema: {e}")
        return self._current(path)

    def _current(self, path: str) -> ApiResponse:
        if path == EFFECTS_PATH:
            return ApiResponse.json(200, self.state.effects.wire())
        return ApiResponse.json(200, self.state.faults_doc())
