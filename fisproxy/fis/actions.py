"""The action catalogue: every FIS action id fisproxy knows, keyed by actionId.

The catalogue's one definition is `data/actions.yaml` (AWS's actions reference, LocalStack's and
fisproxy's own actions), loaded once at import. Each `ActionSpec` documents its parameters and
targets (ListActions/GetAction), validates parameter values (`ParameterError` naming the
parameter) and says how fisproxy runs it (`kind`):

- `api-fault`: faults on API calls; `rule(params)` compiles it into the `RuleSpec` the proxy
  applies (the compilers live here, keyed by action id).
- `resource`: API calls on the upstream made with the experiment role: `implementation`, the
  action's class in `fis/resources/` (how it runs, how it is undone).
- `proxy-fault`: a fault on the calls that name the targeted resources (Lambda invocations,
  Kinesis streams, ...), applied in the proxy: `scoped`, its compiler in `proxyfaults.py`.

Each action id is one `ActionSpec` entry: the catalogue's data plus, by kind, its compiler,
scoped compiler or implementation, attached here when the catalogue loads (one registry; no
other table maps an action id to behaviour). `compile` gives any running action's rule.
- `wait`: nothing happens; sequencing.
- `agent` / `aws-internal`: cannot run here. Such an action ends `skipped` when it would start,
  `skip_reason` saying what fisproxy cannot do and what that means, and the experiment runs on
  (AWS's published scenarios include such actions); with `fisproxy_fail_unperformable` the
  experiment fails at start instead, with `failure_reason`. `skip_reason()` is the one decision
  the engine applies: the action's own kind, or a target the upstream could not list.

Parameter values are strings on the wire; `percentage`, `duration`, etc. are parsed here.
Sampling, durations, operation filters and role targeting are the engine's job.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from typing import Any, Literal, cast, get_args

import yaml

from fisproxy.aws import catalog
from fisproxy.fis.faults import ErrorKind, FaultSpec, RateLimit, RuleSpec
from fisproxy.fis.ids import parse_duration
from fisproxy.fis.proxyfaults import (
    FACT_LOOKUPS,
    SCOPED_COMPILERS,
    START_NOTES,
    FactLookup,
    ScopedCompiler,
    StartNotes,
    Where,
)
from fisproxy.fis.resources import IMPLEMENTATIONS, ResolvedTarget, ResourceAction

MAX_ACTION_DURATION = timedelta(hours=12)
LOCALSTACK_MESSAGE = "Failing as per Fault Injection Service configuration"
ROLE = "aws:iam:role"
_ALL = "all"

ActionKind = Literal["api-fault", "resource", "proxy-fault", "wait", "agent", "aws-internal"]
UnknownParameters = Literal["reject", "ignore"]


class ParameterError(ValueError):
    """A bad action parameter: `str()` is `<parameter>: <problem>`."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"{parameter}: {problem}")
        self.parameter = parameter
        self.problem = problem


@dataclass(frozen=True, slots=True)
class ParameterDoc:
    description: str
    required: bool = False
    # A CHECKS name (`percentage`, `duration:PT15M`, `one-of:tcp,udp`); None: any string.
    check: str | None = None


# A value check raises ValueError with the problem only; ActionSpec adds the parameter name.
ValueCheck = Callable[[str], None]
Compiler = Callable[[Mapping[str, str]], RuleSpec | None]


@dataclass(frozen=True)
class ActionSpec:
    """One action id: its documentation, validation, and how fisproxy runs it.

    `targets` maps an action target key to the resource type it needs (`Roles` ->
    `aws:iam:role`). `duration_parameter` names the parameter that says how long the action
    lasts (`duration`, `startInstancesAfterDuration`, `maxDuration`, ...). `operation_params`
    name the parameters holding operation names of `service` (checked against botocore's
    models). `compiler` turns an `api-fault` action's parameters into its `RuleSpec`.
    """

    action_id: str
    description: str
    parameters: Mapping[str, ParameterDoc] = field(default_factory=dict)
    targets: Mapping[str, str] = field(default_factory=dict)
    kind: ActionKind = "api-fault"
    reason: str | None = None
    duration_parameter: str | None = "duration"
    unknown_parameters: UnknownParameters = "reject"
    operation_params: tuple[str, ...] = ()
    compiler: Compiler | None = None
    scoped: ScopedCompiler | None = None
    implementation: type[ResourceAction] | None = None
    lookup: FactLookup | None = None  # what a proxy fault reads on the upstream at start
    notes: StartNotes | None = None  # what the action's log says when it starts

    @property
    def runnable(self) -> bool:
        """The engine applies it as a rule or a wait (what fisproxy ran before resource
        actions); resource and proxy-fault actions run through `fis/resources`."""
        return self.kind in ("api-fault", "wait")

    @property
    def performable(self) -> bool:
        """fisproxy can perform it, one way or another (False: `failure_reason` says why)."""
        return self.kind not in ("agent", "aws-internal")

    @property
    def failure_reason(self) -> str | None:
        """Why the action cannot run here (agent / aws-internal), when the proxy is told to
        fail such experiments (fisproxy_fail_unperformable)."""
        if self.performable:
            return None
        return f"{self.action_id} cannot run in fisproxy: it {self.reason}."

    @property
    def skipped_reason(self) -> str | None:
        """The state reason of this action when skipped (agent / aws-internal): what fisproxy
        cannot do, and that the experiment runs on without it."""
        if self.performable:
            return None
        return (f"Skipped: {self.action_id} cannot run in fisproxy: it {self.reason}. "
                "The experiment runs on without this action's effect.")

    def validate(self, parameters: Mapping[str, str]) -> None:
        """Raise ParameterError for the first bad parameter: a missing required one, an unknown
        one (unless this action ignores unknown parameters), a value its check refuses."""
        for name, param in self.parameters.items():
            if param.required and name not in parameters:
                raise ParameterError(name, f"required by {self.action_id}")
        for name, value in parameters.items():
            doc = self.parameters.get(name)
            if doc is None:
                if self.unknown_parameters == "ignore":
                    continue
                raise ParameterError(
                    name, f'{self.action_id} has no parameter "{name}" (valid: {_names(self.parameters)})'
                )
            if doc.check is None:
                continue
            try:
                CHECKS.get(doc.check)(value)
            except ValueError as e:
                raise ParameterError(name, str(e)) from None
        self._check_operations(parameters)

    def ignored_parameters(self, parameters: Mapping[str, str]) -> tuple[str, ...]:
        """Parameters this action does not know and ignores (for the experiment log)."""
        return tuple(sorted(n for n in parameters if n not in self.parameters))

    def _check_operations(self, parameters: Mapping[str, str]) -> None:
        service = parameters.get("service")
        for name in self.operation_params:
            ops = _split(parameters.get(name))
            if ops is None:
                continue
            if service is None or service == _ALL:
                raise ParameterError(name, "operation names need a service parameter")
            known = catalog.operation_names(service)
            for op in ops:
                if op not in known:
                    raise ParameterError(
                        name, f'{service} has no operation "{op}"{_did_you_mean(op, known)}'
                    )

    def duration(self, parameters: Mapping[str, str]) -> timedelta | None:
        """How long the action lasts: its duration parameter, or None when absent (an
        api-fault then lasts until the experiment stops; a resource action until its effect
        is done)."""
        if self.duration_parameter is None:
            return None
        value = parameters.get(self.duration_parameter)
        return parse_duration(value) if value is not None else None

    def rule(self, parameters: Mapping[str, str]) -> RuleSpec | None:
        """Which requests an api-fault action affects and how; None for every other kind."""
        if self.kind != "api-fault" or self.compiler is None:
            return None
        return self.compiler(parameters)

    def facts(self, parameters: Mapping[str, str], targets: Mapping[str, ResolvedTarget], clients: Any,
              region: str) -> dict[str, Any]:
        """What the running action's rule needs from the upstream, read once at experiment
        start (blocking): empty for most actions. Failure if it cannot be read."""
        return self.lookup(parameters, targets, clients, region) if self.lookup is not None else {}

    def start_notes(self, parameters: Mapping[str, str]) -> list[str]:
        """What the action's log says when it starts (network disruption: what fisproxy drops,
        what never passes through a proxy)."""
        return self.notes(parameters) if self.notes is not None else []

    def compile(self, parameters: Mapping[str, str], targets: Mapping[str, ResolvedTarget],
                where: Where) -> RuleSpec | None:
        """The rule of a running api-fault or proxy-fault action (`targets` by the action's
        target keys), or None: another kind, or a rule for other proxies (another subnet)."""
        if self.kind == "proxy-fault" and self.scoped is not None:
            return self.scoped(parameters, targets, where)
        return self.rule(parameters)


@dataclass(frozen=True, slots=True)
class ResourceTypeSpec:
    """A target resource type (ListTargetResourceTypes/GetTargetResourceType)."""

    resource_type: str
    description: str
    parameters: Mapping[str, ParameterDoc] = field(default_factory=dict)


ACTIONS: dict[str, ActionSpec] = {}
RESOURCE_TYPES: dict[str, ResourceTypeSpec] = {}


def get(action_id: str) -> ActionSpec:
    """The spec for `action_id`; ValueError naming close matches if it is unknown."""
    try:
        return ACTIONS[action_id]
    except KeyError:
        raise ValueError(
            f'unknown action "{action_id}"{_did_you_mean(action_id, ACTIONS)}; see ListActions'
        ) from None


def skip_reason(action_id: str, action_targets: Mapping[str, str] | None,
                unresolved: Mapping[str, str]) -> str | None:
    """Why an action ends `skipped` instead of starting, or None: it is one fisproxy cannot
    perform (agent, AWS-internal), or a target it uses could not be resolved because the
    upstream does not implement the API that lists it (`unresolved`: target -> reason)."""
    spec = ACTIONS.get(action_id)
    if spec is not None and spec.skipped_reason is not None:
        return spec.skipped_reason
    for target in (action_targets or {}).values():
        if target in unresolved:
            return f"Skipped: {unresolved[target]}"
    return None


def targets_of_skipped_only(actions: Mapping[str, Any]) -> frozenset[str]:
    """Targets that only actions fisproxy skips use (an `aws:eks:pod` target of a pod fault):
    not resolved at all, so a target fisproxy cannot list does not fail the experiment.
    `actions`: action name -> an action with `action_id` and `targets`."""
    runnable: set[str] = set()
    skipped: set[str] = set()
    for action in actions.values():
        spec = ACTIONS.get(action.action_id)
        used = set((action.targets or {}).values())
        (skipped if spec is not None and not spec.performable else runnable).update(used)
    return frozenset(skipped - runnable)


def target_resource_types() -> dict[str, str]:
    """Every resource type an action can target, with its description."""
    return {name: spec.description for name, spec in sorted(RESOURCE_TYPES.items())}


# ---- value checks ---------------------------------------------------------------------------

def _names(items: Mapping[str, object] | set[str] | frozenset[str]) -> str:
    return ", ".join(sorted(items))


def _did_you_mean(word: str, choices: Mapping[str, object] | frozenset[str] | set[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _int_range(lo: int, hi: int) -> ValueCheck:
    def check(value: str) -> None:
        try:
            n = int(value.strip())
        except ValueError:
            n = None
        if n is None or not lo <= n <= hi:
            raise ValueError(f'must be an integer {lo}-{hi}, got "{value}"')

    return check


def _decimal_range(lo: float, hi: float) -> ValueCheck:
    def check(value: str) -> None:
        try:
            n = float(value.strip())
        except ValueError:
            n = None
        if n is None or not lo <= n <= hi:
            raise ValueError(f'must be a number {lo:g}-{hi:g}, got "{value}"')

    return check


def _duration_up_to(limit: timedelta) -> ValueCheck:
    # AWS takes whole minutes from PT1M for most actions; fisproxy also takes seconds, so
    # experiments can be tested in seconds. The upper bound is AWS's.
    spelled = "PT12H" if limit == MAX_ACTION_DURATION else f"PT{int(limit.total_seconds() // 60)}M"

    def check(value: str) -> None:
        try:
            d = parse_duration(value)
        except ValueError:
            d = None
        if d is None or not timedelta(0) < d <= limit:
            raise ValueError(f'must be an ISO 8601 duration up to {spelled} (like PT5M or PT30S), got "{value}"')

    return check


def _boolean(value: str) -> None:
    if value.strip().lower() not in ("true", "false"):
        raise ValueError(f'must be true or false, got "{value}"')


def _one_of(*choices: str) -> ValueCheck:
    def check(value: str) -> None:
        if value not in choices:
            raise ValueError(f'must be one of {", ".join(choices)}, got "{value}"')

    return check


def _list_of(*choices: str) -> ValueCheck:
    def check(value: str) -> None:
        items = [v.strip() for v in value.split(",")]
        bad = [v for v in items if v not in choices]
        if bad or not items:
            raise ValueError(f'must be a comma-separated list of {", ".join(choices)}, got "{value}"')

    return check


def _json_object(value: str) -> None:
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ValueError(f"must be a JSON object, got {value[:80]!r}")


def _service(value: str) -> None:
    if not catalog.is_known_service(value):
        raise ValueError(f'unknown AWS service "{value}"{_did_you_mean(value, catalog.apis_by_signing_name())}')


def _service_or_all(value: str) -> None:
    if value != _ALL:
        _service(value)


_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


def _region(value: str) -> None:
    if not _REGION.match(value):
        raise ValueError(f'must be an AWS region like us-east-1, got "{value}"')


def _error_code(value: str) -> None:
    if not re.fullmatch(r"[A-Za-z][\w.#:-]{0,127}", value):
        raise ValueError(f'must be an error code like ThrottlingException, got "{value}"')


def _exception(value: str) -> None:
    # LocalStack takes any text as the error code (`Internal Server Error`, with spaces).
    if not value.strip() or len(value) > 256 or any(ord(c) < 32 for c in value):
        raise ValueError(f"must be 1-256 printable characters, got {value[:80]!r}")


_ARN = re.compile(r"^arn:[\w-]+:[\w-]+:[\w-]*:\d*:.+$")
_ALARM_ARN = re.compile(r"^arn:[\w-]+:cloudwatch:[a-z0-9-]+:\d{12}:alarm:.+$")


def _arn(value: str) -> None:
    if not _ARN.match(value):
        raise ValueError(f'must be an ARN like arn:aws:ssm:us-east-1::document/AWS-RunShellScript, got "{value}"')


def _alarm_arns(value: str) -> None:
    arns = [a.strip() for a in value.split(",") if a.strip()]
    if not 1 <= len(arns) <= 5:
        raise ValueError(f"must be 1 to 5 alarm ARNs, comma-separated, got {len(arns)}")
    for arn in arns:
        if not _ALARM_ARN.match(arn):
            raise ValueError(f'must be CloudWatch alarm ARNs like arn:aws:cloudwatch:us-east-1:123456789012:alarm:name, got "{arn}"')


class _Checks:
    """Value checks by the name the catalogue uses: a word (`percentage`) or a word with an
    argument after a colon (`integer:0-100`, `one-of:tcp,udp`, `duration:PT15M`)."""

    _FIXED: Mapping[str, ValueCheck] = {
        "duration": _duration_up_to(MAX_ACTION_DURATION),
        "percentage": _int_range(1, 100),
        "milliseconds": _int_range(0, 3_600_000),
        "status-code": _int_range(400, 599),
        "boolean": _boolean,
        "json-object": _json_object,
        "service": _service,
        "service-or-all": _service_or_all,
        "region": _region,
        "error-code": _error_code,
        "exception": _exception,
        "arn": _arn,
        "alarm-arns": _alarm_arns,
    }

    def get(self, name: str) -> ValueCheck:
        if name in self._FIXED:
            return self._FIXED[name]
        word, _, arg = name.partition(":")
        if word == "integer":
            lo, hi = arg.split("-")
            return _int_range(int(lo), int(hi))
        if word == "decimal":
            lo, hi = arg.split("-")
            return _decimal_range(float(lo), float(hi))
        if word == "duration":
            return _duration_up_to(parse_duration(arg))
        if word == "one-of":
            return _one_of(*arg.split(","))
        if word == "list-of":
            return _list_of(*arg.split(","))
        raise KeyError(f"unknown parameter check {name!r}")


CHECKS = _Checks()


def _split(value: str | None) -> frozenset[str] | None:
    """A comma-separated operation list; None (any) when absent, empty or `all`."""
    if value is None or value.strip().lower() == _ALL:
        return None
    names = frozenset(p.strip() for p in value.split(",") if p.strip())
    return names or None


def _services(value: str | None) -> frozenset[str] | None:
    return None if value is None or value == _ALL else frozenset({value})


def _pct(params: Mapping[str, str], default: int = 100) -> float:
    return float(int(params.get("percentage", default)))


# ---- compilers of the api-fault actions -----------------------------------------------------

def _inject_api(error_kind: ErrorKind) -> Compiler:
    def compile_rule(params: Mapping[str, str]) -> RuleSpec:
        return RuleSpec(
            services=_services(params["service"]),
            operations=_split(params.get("operations")),
            region=None,
            percentage=_pct(params),
            faults=(FaultSpec(kind="error", error_kind=error_kind),),
        )

    return compile_rule


_LS_OPS = ("operation", "api", "apiCall")


def _ls_operations(params: Mapping[str, str]) -> frozenset[str] | None:
    for name in _LS_OPS:
        if name in params:
            return _split(params[name])
    return None


def _ls_api_error(params: Mapping[str, str]) -> RuleSpec:
    return RuleSpec(
        services=_services(params.get("service")),
        operations=_ls_operations(params),
        region=params.get("region"),
        percentage=_pct(params),
        faults=(FaultSpec(
            kind="error",
            error_kind="internal",
            status=int(params.get("errorCode", "500")),
            code=params.get("exception", "InternalError"),
            message=LOCALSTACK_MESSAGE,
        ),),
    )


def _ls_latency(params: Mapping[str, str]) -> RuleSpec:
    return RuleSpec(
        services=_services(params.get("service")),
        operations=_ls_operations(params),
        region=params.get("region"),
        percentage=100.0,
        faults=(FaultSpec(kind="latency", latency_ms=float(params["latencyMilliseconds"])),),
    )


def _ls_kms(params: Mapping[str, str]) -> RuleSpec:
    return RuleSpec(
        services=frozenset({"kms"}),
        operations=None,
        region=None,
        percentage=_pct(params),
        faults=(FaultSpec(kind="error", error_kind="internal", status=500, code="InternalError",
                          message=LOCALSTACK_MESSAGE),),
    )


def _fp_rule(params: Mapping[str, str], fault: FaultSpec) -> RuleSpec:
    return RuleSpec(
        services=_services(params.get("service")),
        operations=_split(params.get("operations")),
        region=params.get("region"),
        percentage=_pct(params),
        faults=(fault,),
        zones=_split(params.get("availabilityZones")),
    )


def _fp_latency(p: Mapping[str, str]) -> RuleSpec:
    return _fp_rule(p, FaultSpec(
        kind="latency",
        phase=p.get("phase", "request"),  # type: ignore[arg-type]  # checked by one-of
        latency_ms=float(p["latencyMilliseconds"]),
        jitter_ms=float(p.get("jitterMilliseconds", "0")),
    ))


def _fp_error(p: Mapping[str, str]) -> RuleSpec:
    return _fp_rule(p, FaultSpec(
        kind="error",
        phase=p.get("phase", "request"),  # type: ignore[arg-type]
        error_kind="internal",
        status=int(p["statusCode"]) if "statusCode" in p else None,
        code=p.get("errorCode"),
        message=p.get("message"),
    ))


def _fp_disconnect(p: Mapping[str, str]) -> RuleSpec:
    return _fp_rule(p, FaultSpec(
        kind="disconnect",
        phase=p.get("phase", "request"),  # type: ignore[arg-type]
        mode=p.get("mode", "close"),  # type: ignore[arg-type]
    ))


def _fp_rate_limit(p: Mapping[str, str]) -> RuleSpec:
    rate = float(p["requestsPerSecond"])
    burst = int(p.get("burst") or max(1, math.ceil(rate)))
    rule = _fp_rule(p, FaultSpec(kind="rate-limit", error_kind="throttle"))
    return dataclasses.replace(rule, percentage=100.0,
                               limit=RateLimit(rate, burst, fleet=p.get("scope") == "fleet"))


COMPILERS: Mapping[str, Compiler] = {
    "aws:fis:inject-api-internal-error": _inject_api("internal"),
    "aws:fis:inject-api-throttle-error": _inject_api("throttle"),
    "aws:fis:inject-api-unavailable-error": _inject_api("unavailable"),
    "localstack:generic:api-error": _ls_api_error,
    "localstack:generic:latency": _ls_latency,
    "localstack:kms:inject-api-internal-error": _ls_kms,
    "fisproxy:api:latency": _fp_latency,
    "fisproxy:api:error": _fp_error,
    "fisproxy:api:disconnect": _fp_disconnect,
    "fisproxy:api:rate-limit": _fp_rate_limit,
}


# ---- loading the catalogue ------------------------------------------------------------------

def _parameter_docs(raw: Mapping[str, Any] | None) -> dict[str, ParameterDoc]:
    docs = {}
    for name, p in (raw or {}).items():
        doc = ParameterDoc(str(p["description"]), bool(p.get("required", False)), p.get("check"))
        if doc.check is not None:
            CHECKS.get(doc.check)  # an unknown check name fails the import, not a template
        docs[name] = doc
    return docs


def _load(text: str) -> tuple[dict[str, ActionSpec], dict[str, ResourceTypeSpec]]:
    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # C loader: 5x faster
    kinds = get_args(ActionKind)
    actions: dict[str, ActionSpec] = {}
    for action_id, raw in data["actions"].items():
        kind = raw["runs"]
        if kind not in kinds:
            raise ValueError(f"{action_id}: runs must be one of {kinds}, got {kind!r}")
        parameters = _parameter_docs(raw.get("parameters"))
        default_duration = "duration" if "duration" in parameters else None
        strict = action_id.startswith(("aws:fis:", "fisproxy:"))
        actions[action_id] = ActionSpec(
            action_id=action_id,
            description=raw["description"],
            parameters=parameters,
            targets=dict(raw.get("targets") or {}),
            kind=cast(ActionKind, kind),
            reason=raw.get("reason"),
            duration_parameter=raw.get("duration", default_duration),
            unknown_parameters=raw.get("unknown_parameters", "reject" if strict else "ignore"),
            operation_params=tuple(raw.get("operation_parameters") or ()),
            compiler=COMPILERS.get(action_id),
            scoped=SCOPED_COMPILERS.get(action_id),
            implementation=IMPLEMENTATIONS.get(action_id),
            lookup=FACT_LOOKUPS.get(action_id),
            notes=START_NOTES.get(action_id),
        )
    types = {
        name: ResourceTypeSpec(name, raw["description"], _parameter_docs(raw.get("parameters")))
        for name, raw in data["resource_types"].items()
    }
    return actions, types


def _load_packaged() -> None:
    text = resources.files("fisproxy.fis").joinpath("data/actions.yaml").read_text(encoding="utf-8")
    actions, types = _load(text)
    ACTIONS.update(actions)
    RESOURCE_TYPES.update(types)


_load_packaged()
