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
  on a proxy placed in a targeted subnet, the requests of the scope hang until the client's
  timeout (`network.py`: what each scope covers, the facts it reads on the upstream at start,
  and what the action's log says when it starts).

Besides its compiler, an action may have an entry in `FACT_LOOKUPS` (what it reads on the
upstream once, at experiment start, kept with the experiment for every proxy) and in
`START_NOTES` (what its log says when it starts): one entry per action, attached to its
`ActionSpec` like the compilers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fisproxy.aws.call import AwsCall, RequestParts
from fisproxy.fis import network
from fisproxy.fis.faults import FaultSpec, Phase, RuleSpec
from fisproxy.fis.resources import scoped as helpers
from fisproxy.fis.resources.targets import ResolvedTarget

LAMBDA_INVOKE = frozenset({"Invoke", "InvokeWithResponseStream", "InvokeAsync"})
EC2_LAUNCHES = frozenset({"RunInstances", "CreateFleet", "StartInstances", "RequestSpotInstances",
                          "RequestSpotFleet", "CreateCapacityReservation"})


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
    # What the action read on the upstream at start (`FACT_LOOKUPS`), kept in its RunState.
    facts: Mapping[str, Any] = field(default_factory=dict)


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
    subnet = network.placed_subnet(targets.get("Subnets"), where.placement.subnet)
    if subnet is None:
        return None
    return network.compile_disrupt(params, subnet, region=where.region, facts=where.facts)


def _cross_region(params: Mapping[str, str], targets: Mapping[str, ResolvedTarget], where: Where) -> RuleSpec | None:
    if not where.placement.in_subnets(targets.get("Subnets")):
        return None
    return network.compile_cross_region(params, region=where.region)


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

FactLookup = Callable[[Mapping[str, str], Mapping[str, ResolvedTarget], Any, str], dict[str, Any]]
"""(parameters, targets by action target key, the experiment role's clients, region) -> JSON-safe
facts, read on the upstream once at experiment start (blocking); Failure if it cannot."""

def _subnet_facts(params: Mapping[str, str], targets: Mapping[str, ResolvedTarget], clients: Any,
                  region: str) -> dict[str, Any]:
    return network.lookup(params, targets.get("Subnets"), clients, region)


FACT_LOOKUPS: Mapping[str, FactLookup] = {network.DISRUPT: _subnet_facts}

StartNotes = Callable[[Mapping[str, str]], list[str]]
"""(parameters) -> what the action's log says when it starts (what fisproxy drops, what never
passes through a proxy)."""

def _notes(action_id: str) -> StartNotes:
    def notes(params: Mapping[str, str]) -> list[str]:
        return network.start_notes(action_id, params)

    return notes


START_NOTES: Mapping[str, StartNotes] = {
    action_id: _notes(action_id) for action_id in (network.DISRUPT, network.CROSS_REGION, network.TRANSIT_GATEWAY)
}


def compile_rule(
    action_id: str,
    params: Mapping[str, str],
    targets: Mapping[str, ResolvedTarget],
    *,
    region: str,
    placement: Placement,
    iterators: helpers.ShardIterators,
    facts: Mapping[str, Any] | None = None,
) -> RuleSpec | None:
    """The rule of a running proxy-fault action, or None when it applies nowhere on this proxy
    (a subnet-targeted action on a proxy placed elsewhere). `targets` by the action's target
    key (`Functions`, `KinesisStreams`, `Roles`, `Subnets`)."""
    compiler = SCOPED_COMPILERS.get(action_id)
    return None if compiler is None else compiler(params, targets, Where(region, placement, iterators, facts or {}))
