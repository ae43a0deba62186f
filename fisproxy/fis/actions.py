"""The action catalogue: every FIS action id fisproxy knows, keyed by actionId.

Each `ActionSpec` documents its parameters and targets (ListActions/GetAction), validates
parameter values (`ParameterError` naming the parameter), and compiles them once into what the
engine runs: `duration(params)` and `rule(params) -> RuleSpec`. Kinds register themselves by id
in `ACTIONS`; sampling, durations, operation filters and role targeting are the engine's job.

AWS action ids that act on real infrastructure (reboot an instance, stress a pod) are known but
not `runnable`: templates may use them, and the engine fails the experiment naming them.
Parameter values are strings on the wire; `percentage`, `duration`, etc. are parsed here.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from fisproxy.aws import catalog
from fisproxy.fis.faults import ErrorKind, FaultSpec, RuleSpec
from fisproxy.fis.ids import parse_duration

MAX_ACTION_DURATION = timedelta(hours=12)
LOCALSTACK_MESSAGE = "Failing as per Fault Injection Service configuration"
ROLE = "aws:iam:role"
_ALL = "all"


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


# A value check raises ValueError with the problem only; ActionSpec adds the parameter name.
ValueCheck = Callable[[str], None]
Compiler = Callable[[Mapping[str, str]], RuleSpec | None]


@dataclass(frozen=True)
class ActionSpec:
    """One action id: its documentation, validation and compilation.

    `targets` maps an action target key to the resource type it needs (`Roles` ->
    `aws:iam:role`). `operation_params` name the parameters holding operation names of
    `service` (checked against botocore's models). `compiler` is None for actions with no
    effect on traffic (`aws:fis:wait`) and for non-runnable ones.
    """

    action_id: str
    description: str
    parameters: Mapping[str, ParameterDoc] = field(default_factory=dict)
    targets: Mapping[str, str] = field(default_factory=dict)
    runnable: bool = True
    checks: Mapping[str, ValueCheck] = field(default_factory=dict)
    operation_params: tuple[str, ...] = ()
    compiler: Compiler | None = None

    def validate(self, parameters: Mapping[str, str]) -> None:
        """Raise ParameterError for the first bad parameter. Non-runnable actions only get
        their documented value checks (fisproxy never runs them, AWS may add parameters)."""
        for name, doc in self.parameters.items():
            if doc.required and name not in parameters:
                raise ParameterError(name, f"required by {self.action_id}")
        for name, value in parameters.items():
            if name not in self.parameters:
                if not self.runnable:
                    continue
                raise ParameterError(
                    name, f'{self.action_id} has no parameter "{name}" (valid: {_names(self.parameters)})'
                )
            check = self.checks.get(name)
            if check is None:
                continue
            try:
                check(value)
            except ValueError as e:
                raise ParameterError(name, str(e)) from None
        self._check_operations(parameters)

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
        """How long the action runs; None means until the experiment stops."""
        value = parameters.get("duration")
        return parse_duration(value) if value is not None else None

    def rule(self, parameters: Mapping[str, str]) -> RuleSpec | None:
        """Which requests the action affects and how; None if it affects none."""
        if not self.runnable or self.compiler is None:
            return None
        return self.compiler(parameters)


ACTIONS: dict[str, ActionSpec] = {}


def register(spec: ActionSpec) -> ActionSpec:
    ACTIONS[spec.action_id] = spec
    return spec


def get(action_id: str) -> ActionSpec:
    """The spec for `action_id`; ValueError naming close matches if it is unknown."""
    try:
        return ACTIONS[action_id]
    except KeyError:
        raise ValueError(
            f'unknown action "{action_id}"{_did_you_mean(action_id, ACTIONS)}; see ListActions'
        ) from None


def target_resource_types() -> dict[str, str]:
    """Every resource type an action can target, with a description."""
    types = {t: _RESOURCE_TYPE_DOCS.get(t, f"{t} resources") for s in ACTIONS.values() for t in s.targets.values()}
    return dict(sorted(types.items()))


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


_percentage = _int_range(1, 100)
_milliseconds = _int_range(0, 3_600_000)
_status_code = _int_range(400, 599)


def _duration(value: str) -> None:
    try:
        d = parse_duration(value)
    except ValueError:
        d = None
    if d is None or not timedelta(0) < d <= MAX_ACTION_DURATION:
        raise ValueError(f'must be an ISO 8601 duration up to PT12H (like PT5M or PT30S), got "{value}"')


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


def _one_of(*choices: str) -> ValueCheck:
    def check(value: str) -> None:
        if value not in choices:
            raise ValueError(f'must be one of {", ".join(choices)}, got "{value}"')

    return check


def _error_code(value: str) -> None:
    if not re.fullmatch(r"[A-Za-z][\w.#:-]{0,127}", value):
        raise ValueError(f'must be an error code like ThrottlingException, got "{value}"')


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


# ---- AWS inject-api actions -----------------------------------------------------------------

def _inject_api(error_kind: ErrorKind, what: str) -> ActionSpec:
    def compile_rule(params: Mapping[str, str]) -> RuleSpec:
        return RuleSpec(
            services=_services(params["service"]),
            operations=_split(params.get("operations")),
            region=None,
            percentage=_pct(params),
            faults=(FaultSpec(kind="error", error_kind=error_kind),),
        )

    return ActionSpec(
        action_id=f"aws:fis:inject-api-{error_kind}-error",
        description=f"Cause an AWS service to return {what} responses for specific callers and operations.",
        parameters={
            "service": ParameterDoc("The target AWS API namespace (signing name, e.g. ec2, dynamodb, s3).", True),
            "operations": ParameterDoc("Comma-separated operation names (e.g. DescribeInstances,DescribeVolumes); absent means all."),
            "percentage": ParameterDoc("Percentage (1-100) of calls to fault; absent means 100."),
            "duration": ParameterDoc("How long the fault lasts, ISO 8601 (PT1M); absent means until the experiment stops."),
        },
        targets={"Roles": ROLE},
        checks={"service": _service, "percentage": _percentage, "duration": _duration},
        operation_params=("operations",),
        compiler=compile_rule,
    )


register(_inject_api("internal", "internal error"))
register(_inject_api("throttle", "throttled"))
register(_inject_api("unavailable", "unavailable error"))

register(ActionSpec(
    action_id="aws:fis:wait",
    description="Wait for the specified duration. Stop condition monitoring will continue during this time.",
    parameters={"duration": ParameterDoc("The duration, ISO 8601 (PT5M); fisproxy also accepts seconds (PT2S).", True)},
    checks={"duration": _duration},
))


# ---- LocalStack actions (fis-spec 8.3) ------------------------------------------------------

_LS_SELECT = {
    "region": ParameterDoc("Region whose calls fail; absent means every region."),
    "service": ParameterDoc("Service whose calls fail (e.g. kms); absent or 'all' means every service."),
    "operation": ParameterDoc("Operation names, comma-separated (e.g. ListKeys); absent or 'all' means all."),
    "api": ParameterDoc("Older spelling of operation."),
    "apiCall": ParameterDoc("Older spelling of operation."),
}
_LS_CHECKS: dict[str, ValueCheck] = {"region": _region, "service": _service_or_all}
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


register(ActionSpec(
    action_id="localstack:generic:api-error",
    description="LocalStack: fail matching calls with a custom error (only region given: the whole region is down).",
    parameters={
        **_LS_SELECT,
        "percentage": ParameterDoc("Percentage (1-100) of calls to fail; default 100."),
        "exception": ParameterDoc("Error code returned; default InternalError."),
        "errorCode": ParameterDoc("HTTP status returned; default 500."),
    },
    checks={**_LS_CHECKS, "percentage": _percentage, "exception": _error_code, "errorCode": _status_code},
    operation_params=_LS_OPS,
    compiler=_ls_api_error,
))


def _ls_latency(params: Mapping[str, str]) -> RuleSpec:
    return RuleSpec(
        services=_services(params.get("service")),
        operations=_ls_operations(params),
        region=params.get("region"),
        percentage=100.0,
        faults=(FaultSpec(kind="latency", latency_ms=float(params["latencyMilliseconds"])),),
    )


register(ActionSpec(
    action_id="localstack:generic:latency",
    description="LocalStack: add latency to matching calls.",
    parameters={**_LS_SELECT, "latencyMilliseconds": ParameterDoc("Delay in milliseconds.", True)},
    checks={**_LS_CHECKS, "latencyMilliseconds": _milliseconds},
    operation_params=_LS_OPS,
    compiler=_ls_latency,
))


register(ActionSpec(
    action_id="localstack:kms:inject-api-internal-error",
    description="LocalStack: KMS calls fail with InternalError.",
    parameters={"percentage": ParameterDoc("Percentage (1-100) of calls to fail; default 100.")},
    checks={"percentage": _percentage},
    compiler=lambda params: RuleSpec(
        services=frozenset({"kms"}),
        operations=None,
        region=None,
        percentage=_pct(params),
        faults=(FaultSpec(kind="error", error_kind="internal", status=500, code="InternalError",
                          message=LOCALSTACK_MESSAGE),),
    ),
))


# ---- fisproxy actions -----------------------------------------------------------------------

_FP_SELECT = {
    "service": ParameterDoc("Service (signing name: dynamodb, s3, sqs, ...); absent means every service."),
    "operations": ParameterDoc("Comma-separated operation names; absent means all."),
    "region": ParameterDoc("Region of the calls; absent means every region."),
    "percentage": ParameterDoc("Percentage (1-100) of calls affected, sampled per request; default 100."),
    "phase": ParameterDoc("request (before forwarding) or response (forward first, then act); default request."),
    "duration": ParameterDoc("How long, ISO 8601; absent means until the experiment stops."),
}
_FP_CHECKS: dict[str, ValueCheck] = {
    "service": _service, "region": _region, "percentage": _percentage,
    "phase": _one_of("request", "response"), "duration": _duration,
}


def _fp_rule(params: Mapping[str, str], fault: FaultSpec) -> RuleSpec:
    return RuleSpec(
        services=_services(params.get("service")),
        operations=_split(params.get("operations")),
        region=params.get("region"),
        percentage=_pct(params),
        faults=(fault,),
    )


register(ActionSpec(
    action_id="fisproxy:api:latency",
    description="Delay matching calls by latencyMilliseconds plus up to jitterMilliseconds.",
    parameters={
        **_FP_SELECT,
        "latencyMilliseconds": ParameterDoc("Delay in milliseconds (0 means none).", True),
        "jitterMilliseconds": ParameterDoc("Extra uniform random delay 0..jitter in milliseconds; default 0."),
    },
    checks={**_FP_CHECKS, "latencyMilliseconds": _milliseconds, "jitterMilliseconds": _milliseconds},
    operation_params=("operations",),
    compiler=lambda p: _fp_rule(p, FaultSpec(
        kind="latency",
        phase=p.get("phase", "request"),  # type: ignore[arg-type]  # checked by _one_of
        latency_ms=float(p["latencyMilliseconds"]),
        jitter_ms=float(p.get("jitterMilliseconds", "0")),
    )),
))

register(ActionSpec(
    action_id="fisproxy:api:error",
    description="Answer matching calls with an error in the service's protocol (default: its internal error).",
    parameters={
        **_FP_SELECT,
        "statusCode": ParameterDoc("HTTP status (400-599); default the service's internal-error status."),
        "errorCode": ParameterDoc("Error code (e.g. ThrottlingException); default the service's internal-error code."),
        "message": ParameterDoc("Error message; default the service's own."),
    },
    checks={**_FP_CHECKS, "statusCode": _status_code, "errorCode": _error_code},
    operation_params=("operations",),
    compiler=lambda p: _fp_rule(p, FaultSpec(
        kind="error",
        phase=p.get("phase", "request"),  # type: ignore[arg-type]
        error_kind="internal",
        status=int(p["statusCode"]) if "statusCode" in p else None,
        code=p.get("errorCode"),
        message=p.get("message"),
    )),
))

register(ActionSpec(
    action_id="fisproxy:api:disconnect",
    description="Drop the connection of matching calls: close (FIN), reset (RST) or hang.",
    parameters={**_FP_SELECT, "mode": ParameterDoc("close, reset or hang; default close.")},
    checks={**_FP_CHECKS, "mode": _one_of("close", "reset", "hang")},
    operation_params=("operations",),
    compiler=lambda p: _fp_rule(p, FaultSpec(
        kind="disconnect",
        phase=p.get("phase", "request"),  # type: ignore[arg-type]
        mode=p.get("mode", "close"),  # type: ignore[arg-type]
    )),
))


# ---- AWS actions fisproxy recognises but cannot perform (fis-spec 3.3) ----------------------

_RESOURCE_TYPE_DOCS = {
    ROLE: "IAM role: faults apply to API calls signed by the role (learned from STS responses "
    "or mapped with the accessKeyIds target parameter).",
    "aws:ec2:instance": "Amazon EC2 instance",
    "aws:ec2:spot-instance": "Amazon EC2 Spot Instance",
    "aws:ec2:autoscaling-group": "EC2 Auto Scaling group",
    "aws:ec2:subnet": "VPC subnet",
    "aws:ec2:ebs-volume": "Amazon EBS volume",
    "aws:ecs:cluster": "Amazon ECS cluster",
    "aws:ecs:task": "Amazon ECS task",
    "aws:eks:nodegroup": "Amazon EKS node group",
    "aws:eks:pod": "Kubernetes pod in an Amazon EKS cluster",
    "aws:eks:cluster": "Amazon EKS cluster",
    "aws:rds:cluster": "Amazon Aurora DB cluster",
    "aws:rds:db": "Amazon RDS DB instance",
    "aws:kinesis:stream": "Amazon Kinesis data stream",
    "aws:lambda:function": "AWS Lambda function",
    "aws:dynamodb:global-table": "Amazon DynamoDB global table",
    "aws:s3:bucket": "Amazon S3 bucket",
    "aws:elasticache:replicationgroup": "Amazon ElastiCache replication group",
    "aws:arc:zonal-shift-managed-resource": "Zonal shift managed resource",
}

_D = ParameterDoc
_DURATION_DOC = _D("The duration, ISO 8601.", True)
_NOT_RUNNABLE: list[tuple[str, str, dict[str, str], dict[str, ParameterDoc]]] = [
    ("aws:ec2:reboot-instances", "Reboot the target EC2 instances.", {"Instances": "aws:ec2:instance"}, {}),
    ("aws:ec2:stop-instances", "Stop the target EC2 instances.", {"Instances": "aws:ec2:instance"},
     {"startInstancesAfterDuration": _D("The time to wait before restarting the instances (ISO 8601 duration)."),
      "completeIfInstancesTerminated": _D("Complete the action if the instances are terminated.")}),
    ("aws:ec2:terminate-instances", "Terminate the target EC2 instances.", {"Instances": "aws:ec2:instance"}, {}),
    ("aws:ec2:send-spot-instance-interruptions", "Send a Spot Instance interruption notice.",
     {"SpotInstances": "aws:ec2:spot-instance"},
     {"durationBeforeInterruption": _D("The time to wait before interrupting (ISO 8601).", True)}),
    ("aws:ec2:asg-insufficient-instance-capacity-error", "Insufficient capacity errors for an Auto Scaling group.",
     {"AutoScalingGroups": "aws:ec2:autoscaling-group"},
     {"availabilityZoneIdentifiers": _D("Availability Zones.", True), "duration": _DURATION_DOC,
      "percentage": _D("Percentage of calls.")}),
    ("aws:ec2:api-insufficient-instance-capacity-error", "Insufficient capacity errors for calls by a role.",
     {"Roles": ROLE},
     {"availabilityZoneIdentifiers": _D("Availability Zones.", True), "duration": _DURATION_DOC,
      "percentage": _D("Percentage of calls.")}),
    ("aws:ecs:drain-container-instances", "Drain ECS container instances.", {"Clusters": "aws:ecs:cluster"},
     {"drainagePercentage": _D("Percentage to drain.", True), "duration": _DURATION_DOC}),
    ("aws:ecs:stop-task", "Stop the target ECS tasks.", {"Tasks": "aws:ecs:task"}, {}),
    *[(f"aws:ecs:task-{k}", f"ECS task fault: {k}.", {"Tasks": "aws:ecs:task"}, {"duration": _D("The duration, ISO 8601.")})
      for k in ("cpu-stress", "io-stress", "kill-process", "network-blackhole-port", "network-latency",
                "network-packet-loss")],
    ("aws:eks:terminate-nodegroup-instances", "Terminate EKS node group instances.",
     {"Nodegroups": "aws:eks:nodegroup"},
     {"instanceTerminationPercentage": _D("Percentage of instances to terminate.", True)}),
    *[(f"aws:eks:pod-{k}", f"EKS pod fault: {k}.", {"Pods": "aws:eks:pod"},
       {"kubernetesServiceAccount": _D("The Kubernetes service account.", True), "duration": _D("The duration, ISO 8601.")})
      for k in ("cpu-stress", "delete", "io-stress", "memory-stress", "network-blackhole-port", "network-latency",
                "network-packet-loss")],
    ("aws:eks:inject-kubernetes-custom-resource", "Run a ChaosMesh or Litmus experiment.",
     {"Cluster": "aws:eks:cluster"}, {"maxDuration": _D("The maximum duration, ISO 8601.", True)}),
    ("aws:rds:failover-db-cluster", "Fail over an Aurora DB cluster.", {"Clusters": "aws:rds:cluster"}, {}),
    ("aws:rds:reboot-db-instances", "Reboot RDS DB instances.", {"DBInstances": "aws:rds:db"},
     {"forceFailover": _D("Force a failover (true/false).")}),
    ("aws:ssm:send-command", "Run an SSM document on the target instances.", {"Instances": "aws:ec2:instance"},
     {"documentArn": _D("The SSM document ARN.", True), "documentParameters": _D("Document parameters (JSON)."),
      "documentVersion": _D("Document version."), "duration": _D("The duration, ISO 8601.")}),
    ("aws:ssm:start-automation-execution", "Start an SSM Automation execution.", {},
     {"documentArn": _D("The SSM document ARN.", True), "documentParameters": _D("Document parameters (JSON)."),
      "documentVersion": _D("Document version."), "maxDuration": _D("The maximum duration, ISO 8601.", True)}),
    ("aws:network:disrupt-connectivity", "Deny traffic to or from the target subnets.",
     {"Subnets": "aws:ec2:subnet"},
     {"duration": _DURATION_DOC, "scope": _D("all, availability-zone, dynamodb, prefix-list, s3, ...")}),
    ("aws:kinesis:stream-provisioned-throughput-exception", "Kinesis ProvisionedThroughputExceeded.",
     {"KinesisStreams": "aws:kinesis:stream"}, {"duration": _DURATION_DOC, "percentage": _D("Percentage of calls.")}),
    ("aws:kinesis:stream-expired-iterator-exception", "Kinesis ExpiredIteratorException.",
     {"KinesisStreams": "aws:kinesis:stream"}, {"duration": _DURATION_DOC, "percentage": _D("Percentage of calls.")}),
    *[(f"aws:lambda:invocation-{k}", f"Lambda invocation fault: {k}.", {"Functions": "aws:lambda:function"},
       {"duration": _DURATION_DOC, "invocationPercentage": _D("Percentage of invocations.")})
      for k in ("add-delay", "error", "http-integration-response")],
    ("aws:dynamodb:global-table-pause-replication", "Pause DynamoDB global table replication.",
     {"Tables": "aws:dynamodb:global-table"}, {"duration": _DURATION_DOC}),
    ("aws:s3:bucket-pause-replication", "Pause S3 replication.", {"Buckets": "aws:s3:bucket"},
     {"duration": _DURATION_DOC, "region": _D("Destination region.", True)}),
    ("aws:cloudwatch:assert-alarm-state", "Assert that alarms are in given states.", {},
     {"alarmArns": _D("Alarm ARNs, comma-separated (at most 5).", True),
      "alarmStates": _D("Alarm states, comma-separated.", True)}),
    ("aws:arc:start-zonal-autoshift", "Shift traffic away from an Availability Zone.",
     {"ManagedResources": "aws:arc:zonal-shift-managed-resource"},
     {"availabilityZoneIdentifier": _D("The Availability Zone.", True), "duration": _DURATION_DOC}),
    ("aws:elasticache:interrupt-cluster-az-power", "Interrupt power to ElastiCache nodes in an AZ.",
     {"ReplicationGroups": "aws:elasticache:replicationgroup"}, {"duration": _DURATION_DOC}),
    ("aws:ebs:pause-volume-io", "Pause I/O on EBS volumes.", {"Volumes": "aws:ec2:ebs-volume"},
     {"duration": _DURATION_DOC}),
]

for _id, _desc, _targets, _params in _NOT_RUNNABLE:
    register(ActionSpec(
        action_id=_id,
        description=f"{_desc} (Recognised; fisproxy cannot perform it.)",
        parameters=_params,
        targets=_targets,
        runnable=False,
    ))
