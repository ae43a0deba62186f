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
  timeout (`network.py`: what each scope covers, the facts it looks up on the upstream at start,
  and what the action's log says when it starts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
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
    key (`Functions`, `KinesisStreams`, `Roles`, `Subnets`); `facts`: what `lookup_facts` read
    on the upstream at start."""
    if action_id.startswith("aws:lambda:invocation-"):
        functions = targets.get("Functions")
        if functions is None:
            return None
        scope = LambdaScope(helpers.FunctionTargets.from_target(functions))
        pct = _pct(params, "invocationPercentage")
        phase: Phase = "request" if _flag(params, "preventExecution") else "response"
        if action_id == "aws:lambda:invocation-add-delay":
            fault = FaultSpec(kind="latency", latency_ms=float(params.get("startupDelayMilliseconds") or 1000))
        elif action_id == "aws:lambda:invocation-error":
            fault = FaultSpec(kind="lambda-error", phase=phase)
        else:
            fault = FaultSpec(kind="lambda-http", phase=phase, status=int(params.get("statusCode") or 200),
                              content_type=params.get("contentTypeHeader") or "text/plain")
        return RuleSpec(frozenset({"lambda"}), LAMBDA_INVOKE, None, pct, (fault,), scope)
    if action_id.startswith("aws:kinesis:stream-"):
        streams = targets.get("KinesisStreams")
        if streams is None:
            return None
        scope_k = KinesisScope(helpers.StreamTargets.from_arns(streams.arns), iterators)
        if action_id == "aws:kinesis:stream-expired-iterator-exception":
            ops, code = helpers.KINESIS_EXPIRED_ITERATOR_OPERATIONS, "ExpiredIteratorException"
            message = ("Iterator expired. The iterator was created at a time further in the past than "
                       "the tolerated delay of 300000 milliseconds.")
        else:
            ops, code = helpers.KINESIS_THROUGHPUT_OPERATIONS, "ProvisionedThroughputExceededException"
            message = "Rate exceeded for shard in stream."
        fault = FaultSpec(kind="error", status=400, code=code, message=message)
        return RuleSpec(frozenset({"kinesis"}), ops, None, _pct(params, "percentage"), (fault,), scope_k)
    if action_id == "aws:ec2:api-insufficient-instance-capacity-error":
        zones = frozenset(z.strip() for z in params.get("availabilityZoneIdentifiers", "").split(",") if z.strip())
        fault = FaultSpec(kind="error", status=500, code="InsufficientInstanceCapacity",
                          message="We currently do not have sufficient capacity in the Availability Zone you requested.")
        return RuleSpec(frozenset({"ec2"}), EC2_LAUNCHES, None, _pct(params, "percentage"), (fault,),
                        ZoneScope(zones))
    if action_id == network.DISRUPT:
        subnet = network.placed_subnet(targets.get("Subnets"), placement.subnet)
        if subnet is None:
            return None
        return network.compile_disrupt(params, subnet, region=region, facts=facts or {})
    if action_id == network.CROSS_REGION:
        if not placement.in_subnets(targets.get("Subnets")):
            return None
        return network.compile_cross_region(params, region=region)
    return None


def lookup_facts(action_id: str, params: Mapping[str, str], targets: Mapping[str, ResolvedTarget],
                 clients: Any, region: str) -> dict[str, Any]:
    """What a proxy-fault action needs from the upstream before its rule can be compiled, read
    once at experiment start (blocking; the experiment role's `clients`): JSON-safe, kept with
    the experiment for every proxy. Empty for actions that need nothing."""
    if action_id == network.DISRUPT:
        return network.lookup(params, targets.get("Subnets"), clients, region)
    return {}


def start_notes(action_id: str, params: Mapping[str, str]) -> list[str]:
    """What the action's log says when it starts about what fisproxy does and cannot reach."""
    return network.start_notes(action_id, params)
