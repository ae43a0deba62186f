"""Resource-scoped faults: `proxy-fault` actions compiled into rules once their targets resolved.

An api-fault action's rule depends on its parameters only (`actions.py`); these depend on what
the targets resolved to (which functions, which streams) and on where this proxy runs
(`Placement`: a subnet-targeted disruption applies only on proxies placed in those subnets).
Each rule carries a `Scope` that tells, per call, whether the call names a targeted resource.

- aws:lambda:invocation-add-delay / -error / -http-integration-response: Invoke calls naming a
  targeted function (name, partial or full ARN, qualifier: `resources/scoped.py`).
- aws:kinesis:stream-provisioned-throughput-exception / -expired-iterator-exception: calls
  naming a targeted stream (JSON or CBOR body; GetRecords by the shard iterators learned).
- aws:ec2:api-insufficient-instance-capacity-error: instance launches by the targeted roles
  that name one of the Availability Zones (a launch naming none may land in one: faulted too).
- aws:network:disrupt-connectivity and aws:network:route-table-disrupt-cross-region-connectivity:
  on a proxy placed in a targeted subnet, the calls of the scope are dropped (TCP reset).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from fisproxy.aws.call import AwsCall, RequestParts
from fisproxy.fis.faults import FaultSpec, Phase, RuleSpec
from fisproxy.fis.resources import scoped as helpers
from fisproxy.fis.resources.targets import ResolvedTarget

LAMBDA_INVOKE = frozenset({"Invoke", "InvokeWithResponseStream", "InvokeAsync"})
EC2_LAUNCHES = frozenset({"RunInstances", "CreateFleet", "StartInstances", "RequestSpotInstances",
                          "RequestSpotFleet", "CreateCapacityReservation"})
# The services a disrupt-connectivity scope names, as signing names.
NETWORK_SCOPES: Mapping[str, frozenset[str] | None] = {
    "all": None, "s3": frozenset({"s3"}), "s3express": frozenset({"s3express", "s3"}),
    "dynamodb": frozenset({"dynamodb"}),
}


@dataclass(frozen=True, slots=True)
class Placement:
    """Where this proxy runs (`--placement az=...,subnet=...`, or ECS/EC2 metadata)."""

    az: str | None = None
    az_id: str | None = None
    subnet: str | None = None

    def in_zones(self, zones: frozenset[str] | None) -> bool:
        """Whether this proxy is in one of `zones` (names or ids); None means everywhere."""
        return zones is None or bool({self.az, self.az_id} & zones)

    def in_subnets(self, target: ResolvedTarget | None) -> bool:
        if target is None or self.subnet is None:
            return False
        return any(self.subnet in (r.id, r.arn, r.arn.rsplit("/", 1)[-1]) for r in target.resources)


@dataclass(frozen=True, slots=True)
class LambdaScope:
    functions: helpers.FunctionTargets
    needs_body: bool = False

    def admits(self, call: AwsCall, request: RequestParts | None) -> bool:
        if request is None:
            return False
        return self.functions.matches(helpers.lambda_invocation(request.method, request.path), call.region)


@dataclass(frozen=True, slots=True)
class KinesisScope:
    streams: helpers.StreamTargets
    iterators: helpers.ShardIterators
    needs_body: bool = True

    def admits(self, call: AwsCall, request: RequestParts | None) -> bool:
        if request is None or request.body is None:
            return False
        decoded = helpers.decode_body(request.body, request.headers.get("content-type"))
        ref = helpers.stream_of_request(decoded, call.region, self.iterators)
        return self.streams.matches(ref, call.region)


@dataclass(frozen=True, slots=True)
class ZoneScope:
    """Launch calls naming one of `zones` (names or ids), or naming none."""

    zones: frozenset[str]
    needs_body: bool = True

    def admits(self, call: AwsCall, request: RequestParts | None) -> bool:
        if request is None:
            return False
        named = {v for k, v in _form(request) if k.endswith(("AvailabilityZone", "AvailabilityZoneId"))}
        return not named or bool(named & self.zones)


@dataclass(frozen=True, slots=True)
class OtherRegions:
    """Calls to a region other than `home` (or to `only`, when given)."""

    home: str
    only: str | None = None
    needs_body: bool = False

    def admits(self, call: AwsCall, request: RequestParts | None) -> bool:
        if call.region is None or call.region == self.home:
            return False
        return self.only is None or call.region == self.only


def _form(request: RequestParts) -> list[tuple[str, str]]:
    query = request.path.partition("?")[2]
    body = request.body or b""
    return parse_qsl(query) + parse_qsl(body.decode("utf-8", "replace"))


def _pct(params: Mapping[str, str], name: str) -> float:
    return float(params.get(name) or 100)


def _flag(params: Mapping[str, str], name: str) -> bool:
    return params.get(name, "false").strip().lower() == "true"


@dataclass(frozen=True, slots=True)
class Where:
    """What a proxy-fault rule depends on beyond its parameters and targets: the experiment's
    region, where this proxy runs, and the Kinesis shard iterators it learned."""

    region: str
    placement: Placement
    iterators: helpers.ShardIterators


ScopedCompiler = Callable[[Mapping[str, str], Mapping[str, ResolvedTarget], Where], RuleSpec | None]
"""A proxy-fault action's compiler: (parameters, targets by action target key, where) -> its
rule, or None when it applies nowhere on this proxy."""


def _lambda(make: Callable[[Mapping[str, str], Phase], FaultSpec]) -> ScopedCompiler:
    def compile_rule(params: Mapping[str, str], targets: Mapping[str, ResolvedTarget], where: Where) -> RuleSpec | None:
        functions = targets.get("Functions")
        if functions is None:
            return None
        scope = LambdaScope(helpers.FunctionTargets.from_target(functions))
        phase: Phase = "request" if _flag(params, "preventExecution") else "response"
        return RuleSpec(frozenset({"lambda"}), LAMBDA_INVOKE, None, _pct(params, "invocationPercentage"),
                        (make(params, phase),), scope)

    return compile_rule


def _kinesis(ops: frozenset[str], code: str, message: str) -> ScopedCompiler:
    def compile_rule(params: Mapping[str, str], targets: Mapping[str, ResolvedTarget], where: Where) -> RuleSpec | None:
        streams = targets.get("KinesisStreams")
        if streams is None:
            return None
        scope = KinesisScope(helpers.StreamTargets.from_arns(streams.arns), where.iterators)
        fault = FaultSpec(kind="error", status=400, code=code, message=message)
        return RuleSpec(frozenset({"kinesis"}), ops, None, _pct(params, "percentage"), (fault,), scope)

    return compile_rule


def _capacity(params: Mapping[str, str], targets: Mapping[str, ResolvedTarget], where: Where) -> RuleSpec | None:
    zones = frozenset(z.strip() for z in params.get("availabilityZoneIdentifiers", "").split(",") if z.strip())
    fault = FaultSpec(kind="error", status=500, code="InsufficientInstanceCapacity",
                      message="We currently do not have sufficient capacity in the Availability Zone you requested.")
    return RuleSpec(frozenset({"ec2"}), EC2_LAUNCHES, None, _pct(params, "percentage"), (fault,), ZoneScope(zones))


def _disrupt(params: Mapping[str, str], targets: Mapping[str, ResolvedTarget], where: Where) -> RuleSpec | None:
    if not where.placement.in_subnets(targets.get("Subnets")):
        return None
    services = NETWORK_SCOPES.get(params.get("scope") or "all")
    if services is None and (params.get("scope") or "all") != "all":
        return None  # a scope a proxy cannot tell apart (prefix lists, VPC-internal traffic)
    return RuleSpec(services, None, None, 100.0, (FaultSpec(kind="disconnect", mode="reset"),))


def _cross_region(params: Mapping[str, str], targets: Mapping[str, ResolvedTarget], where: Where) -> RuleSpec | None:
    if not where.placement.in_subnets(targets.get("Subnets")):
        return None
    scope = OtherRegions(where.region, params.get("region") or None)
    return RuleSpec(None, None, None, 100.0, (FaultSpec(kind="disconnect", mode="reset"),), scope)


SCOPED_COMPILERS: Mapping[str, ScopedCompiler] = {
    "aws:lambda:invocation-add-delay": _lambda(lambda p, phase: FaultSpec(
        kind="latency", latency_ms=float(p.get("startupDelayMilliseconds") or 1000))),
    "aws:lambda:invocation-error": _lambda(lambda p, phase: FaultSpec(kind="lambda-error", phase=phase)),
    "aws:lambda:invocation-http-integration-response": _lambda(lambda p, phase: FaultSpec(
        kind="lambda-http", phase=phase, status=int(p.get("statusCode") or 200),
        content_type=p.get("contentTypeHeader") or "text/plain")),
    "aws:kinesis:stream-provisioned-throughput-exception": _kinesis(
        helpers.KINESIS_THROUGHPUT_OPERATIONS, "ProvisionedThroughputExceededException",
        "Rate exceeded for shard in stream."),
    "aws:kinesis:stream-expired-iterator-exception": _kinesis(
        helpers.KINESIS_EXPIRED_ITERATOR_OPERATIONS, "ExpiredIteratorException",
        "Iterator expired. The iterator was created at a time further in the past than the tolerated "
        "delay of 300000 milliseconds."),
    "aws:ec2:api-insufficient-instance-capacity-error": _capacity,
    "aws:network:disrupt-connectivity": _disrupt,
    "aws:network:route-table-disrupt-cross-region-connectivity": _cross_region,
}
"""The proxy-fault actions' compilers, by action id: attached to their `ActionSpec` entries
(`actions.py`), the one action registry."""


def compile_rule(
    action_id: str,
    params: Mapping[str, str],
    targets: Mapping[str, ResolvedTarget],
    *,
    region: str,
    placement: Placement,
    iterators: helpers.ShardIterators,
) -> RuleSpec | None:
    """The rule of a running proxy-fault action, or None when it applies nowhere on this proxy
    (a subnet-targeted action on a proxy placed elsewhere). `targets` by the action's target
    key (`Functions`, `KinesisStreams`, `Roles`, `Subnets`)."""
    compiler = SCOPED_COMPILERS.get(action_id)
    return None if compiler is None else compiler(params, targets, Where(region, placement, iterators))
