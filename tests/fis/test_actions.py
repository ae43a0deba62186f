"""The action catalogue: ids, parameter validation naming the parameter, compiled rules."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fisproxy.aws import catalog
from fisproxy.fis.actions import (
    ACTIONS,
    ParameterError,
    get,
    target_resource_types,
)
from fisproxy.fis.apifaults import LOCALSTACK_MESSAGE
from fisproxy.fis.faults import FaultSpec, RuleSpec

DESIGN_ACTIONS = [  # the README's API fault table
    "aws:fis:inject-api-internal-error", "aws:fis:inject-api-throttle-error",
    "aws:fis:inject-api-unavailable-error", "aws:fis:wait", "localstack:generic:api-error",
    "localstack:generic:latency", "fisproxy:api:latency", "fisproxy:api:error", "fisproxy:api:disconnect",
]
NOT_RULES = [  # AWS actions that act on resources: no rule for the API-fault engine
    "aws:ec2:reboot-instances", "aws:ec2:stop-instances", "aws:ecs:task-cpu-stress", "aws:eks:pod-delete",
    "aws:ssm:send-command", "aws:network:disrupt-connectivity", "aws:lambda:invocation-add-delay",
    "aws:cloudwatch:assert-alarm-state", "aws:ebs:pause-volume-io",
]


def test_registry_is_keyed_by_action_id() -> None:
    assert all(spec.action_id == key for key, spec in ACTIONS.items())
    for action_id in DESIGN_ACTIONS + ["localstack:kms:inject-api-internal-error"]:
        assert ACTIONS[action_id].runnable, action_id
    for action_id in NOT_RULES:
        assert not ACTIONS[action_id].runnable, action_id
        assert ACTIONS[action_id].rule({}) is None


def test_unknown_action_names_close_matches() -> None:
    with pytest.raises(ValueError, match=r'unknown action "aws:fis:wiat" \(did you mean aws:fis:wait\?\)'):
        get("aws:fis:wiat")


@pytest.mark.parametrize("kind", ["internal", "throttle", "unavailable"])
def test_inject_api_compiles_to_an_error_of_its_kind(kind: str) -> None:
    spec = ACTIONS[f"aws:fis:inject-api-{kind}-error"]
    assert spec.targets == {"Roles": "aws:iam:role"}
    params = {"service": "dynamodb", "operations": "PutItem, GetItem", "percentage": "25", "duration": "PT2M"}
    spec.validate(params)
    assert spec.rule(params) == RuleSpec(
        services=frozenset({"dynamodb"}), operations=frozenset({"PutItem", "GetItem"}), region=None,
        percentage=25.0, faults=(FaultSpec(kind="error", error_kind=kind),),  # type: ignore[arg-type]
    )
    assert spec.duration(params) == timedelta(minutes=2)
    assert spec.duration({"service": "dynamodb"}) is None  # until the experiment stops
    rule = spec.rule({"service": "sqs"})
    assert rule is not None and rule.operations is None and rule.percentage == 100.0


def test_wait_has_a_duration_and_no_rule() -> None:
    spec = ACTIONS["aws:fis:wait"]
    spec.validate({"duration": "PT2S"})
    assert spec.duration({"duration": "PT2S"}) == timedelta(seconds=2)
    assert spec.rule({"duration": "PT2S"}) is None
    with pytest.raises(ParameterError, match="^duration: required"):
        spec.validate({})


def test_localstack_api_error_defaults_and_aliases() -> None:
    spec = ACTIONS["localstack:generic:api-error"]
    region_down = spec.rule({"region": "us-west-1", "errorCode": "503"})
    assert region_down == RuleSpec(
        services=None, operations=None, region="us-west-1", percentage=100.0,
        faults=(FaultSpec(kind="error", error_kind="internal", status=503, code="InternalError",
                          message=LOCALSTACK_MESSAGE),),
    )
    assert LOCALSTACK_MESSAGE == "Failing as per Fault Injection Service configuration"
    for alias in ("operation", "api", "apiCall"):
        params = {"service": "kms", alias: "ListKeys", "exception": "SomeTerribleException", "errorCode": "400"}
        spec.validate(params)
        rule = spec.rule(params)
        assert rule is not None and rule.operations == frozenset({"ListKeys"}) and rule.services == frozenset({"kms"})
        assert rule.faults[0].code == "SomeTerribleException" and rule.faults[0].status == 400
    everything = spec.rule({"service": "dynamodb", "api": "all"})
    assert everything is not None and everything.operations is None
    spec.validate({"service": "all"})
    assert spec.rule({"service": "all"}).services is None  # type: ignore[union-attr]


def test_localstack_latency_and_kms() -> None:
    latency = ACTIONS["localstack:generic:latency"].rule(
        {"service": "dynamodb", "region": "us-east-1", "latencyMilliseconds": "5000"})
    assert latency is not None and latency.faults == (FaultSpec(kind="latency", latency_ms=5000.0),)
    assert latency.region == "us-east-1"
    kms = ACTIONS["localstack:kms:inject-api-internal-error"].rule({"percentage": "50"})
    assert kms is not None and kms.services == frozenset({"kms"}) and kms.percentage == 50.0
    assert kms.faults[0].code == "InternalError" and kms.faults[0].status == 500


def test_fisproxy_actions_compile_their_parameters() -> None:
    lat = ACTIONS["fisproxy:api:latency"].rule({"service": "s3", "operations": "GetObject", "latencyMilliseconds": "200",
                                                "jitterMilliseconds": "50", "phase": "response", "region": "eu-west-1"})
    assert lat == RuleSpec(frozenset({"s3"}), frozenset({"GetObject"}), "eu-west-1", 100.0,
                           (FaultSpec(kind="latency", phase="response", latency_ms=200.0, jitter_ms=50.0),))
    err = ACTIONS["fisproxy:api:error"].rule({"statusCode": "429", "errorCode": "TooManyRequests", "message": "m",
                                              "percentage": "10"})
    assert err == RuleSpec(None, None, None, 10.0, (FaultSpec(kind="error", error_kind="internal", status=429,
                                                              code="TooManyRequests", message="m"),))
    default_err = ACTIONS["fisproxy:api:error"].rule({"service": "sqs"})
    assert default_err is not None and default_err.faults[0].status is None and default_err.faults[0].code is None
    disc = ACTIONS["fisproxy:api:disconnect"].rule({"mode": "hang"})
    assert disc is not None and disc.faults == (FaultSpec(kind="disconnect", mode="hang"),)
    assert ACTIONS["fisproxy:api:disconnect"].rule({}).faults[0].mode == "close"  # type: ignore[union-attr]


BAD = [
    ("aws:fis:inject-api-throttle-error", {"service": "dynamodb", "percentage": "150"},
     'percentage: must be an integer 1-100, got "150"'),
    ("aws:fis:inject-api-throttle-error", {"service": "dynamodb", "percentage": "12.5"}, "percentage: must be an integer"),
    ("aws:fis:inject-api-throttle-error", {"service": "nosuch"}, 'service: unknown AWS service "nosuch"'),
    ("aws:fis:inject-api-throttle-error", {"service": "ec2", "operations": "DescribeInstance"},
     'operations: ec2 has no operation "DescribeInstance" \\(did you mean DescribeInstances'),
    ("aws:fis:inject-api-throttle-error", {"service": "ec2", "duration": "PT0S"}, "duration: must be an ISO 8601"),
    ("aws:fis:inject-api-throttle-error", {"service": "ec2", "duration": "PT12H1S"}, "duration: .* up to PT12H"),
    ("aws:fis:wait", {"duration": "P1Y"}, "duration: must be an ISO 8601"),
    ("fisproxy:api:latency", {}, "latencyMilliseconds: required"),
    ("fisproxy:api:latency", {"latencyMilliseconds": "-1"}, "latencyMilliseconds: must be an integer 0-3600000"),
    ("fisproxy:api:latency", {"latencyMilliseconds": "1", "phase": "before"},
     'phase: must be one of request, response, got "before"'),
    ("fisproxy:api:latency", {"latencyMilliseconds": "1", "operations": "GetItem"},
     "operations: operation names need a service parameter"),
    ("fisproxy:api:error", {"statusCode": "200"}, "statusCode: must be an integer 400-599"),
    ("fisproxy:api:error", {"errorCode": "has space"}, "errorCode: must be an error code"),
    ("fisproxy:api:disconnect", {"mode": "drop"}, "mode: must be one of close, reset, hang"),
    ("fisproxy:api:disconnect", {"region": "mars"}, 'region: must be an AWS region like us-east-1, got "mars"'),
    ("localstack:generic:api-error", {"service": "kms", "operation": "ListKey"}, 'operation: kms has no operation "ListKey"'),
    ("localstack:generic:api-error", {"errorCode": "abc"}, "errorCode: must be an integer 400-599"),
    ("localstack:generic:api-error", {"exception": "line\nbreak"}, "exception: must be 1-256 printable characters"),
    ("localstack:generic:latency", {"service": "s3"}, "latencyMilliseconds: required"),
    ("aws:ssm:send-command", {}, "documentArn: required by aws:ssm:send-command"),
]


@pytest.mark.parametrize(("action_id", "params", "message"), BAD)
def test_bad_parameters_name_the_parameter(action_id: str, params: dict[str, str], message: str) -> None:
    with pytest.raises(ParameterError, match="^" + message):
        ACTIONS[action_id].validate(params)


def test_aws_resource_actions_ignore_and_report_undocumented_parameters() -> None:
    # AWS's own Kinesis example passes `service` to a Kinesis action.
    spec = ACTIONS["aws:kinesis:stream-provisioned-throughput-exception"]
    params = {"duration": "PT5M", "percentage": "100", "service": "kinesis"}
    spec.validate(params)
    assert spec.ignored_parameters(params) == ("service",)
    ACTIONS["aws:ec2:stop-instances"].validate({"somethingNew": "x"})


def test_localstack_actions_accept_what_localstack_accepts() -> None:
    spec = ACTIONS["localstack:generic:api-error"]
    params = {"service": "dynamodb", "exception": "Internal Server Error", "errorCode": "500", "latency": "4"}
    spec.validate(params)  # an exception with spaces; an unknown parameter ignored
    assert spec.ignored_parameters(params) == ("latency",)
    rule = spec.rule(params)
    assert rule is not None and rule.faults[0].code == "Internal Server Error"


def test_fis_and_fisproxy_actions_reject_unknown_parameters() -> None:
    # A typo (`operation` for `operations`) would otherwise fault every operation.
    with pytest.raises(ParameterError, match='^operation: aws:fis:inject-api-throttle-error has no parameter "operation"'):
        ACTIONS["aws:fis:inject-api-throttle-error"].validate({"service": "ec2", "operation": "RunInstances"})
    with pytest.raises(ParameterError, match='^latency: fisproxy:api:error has no parameter "latency"'):
        ACTIONS["fisproxy:api:error"].validate({"latency": "4"})


def test_service_names_signing_and_botocore() -> None:
    spec = ACTIONS["fisproxy:api:latency"]
    # `monitoring` is CloudWatch's signing name, `cloudwatch` its botocore name: both work.
    for service in ("monitoring", "cloudwatch"):
        spec.validate({"service": service, "operations": "PutMetricData", "latencyMilliseconds": "1"})
    assert "PutMetricData" in catalog.operation_names("monitoring")


def test_documentation_for_list_actions() -> None:
    for spec in ACTIONS.values():
        assert spec.description
        assert all(doc.description for doc in spec.parameters.values())
    types = target_resource_types()
    assert types["aws:iam:role"].startswith("An IAM role")
    assert {t for s in ACTIONS.values() for t in s.targets.values()} == set(types)


# AWS's actions reference, every action id it publishes
# (https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html), plus the former
# name of the ElastiCache action, which AWS still accepts.
AWS_ACTION_IDS = {
    "aws:arc:start-zonal-autoshift", "aws:cloudwatch:assert-alarm-state",
    "aws:directconnect:virtual-interface-disconnect", "aws:dsql:cluster-connection-failure",
    "aws:dynamodb:global-table-pause-replication", "aws:ebs:pause-volume-io", "aws:ebs:volume-io-latency",
    "aws:ec2:api-insufficient-instance-capacity-error", "aws:ec2:asg-insufficient-instance-capacity-error",
    "aws:ec2:reboot-instances", "aws:ec2:send-spot-instance-interruptions", "aws:ec2:stop-instances",
    "aws:ec2:terminate-instances", "aws:ecs:drain-container-instances", "aws:ecs:stop-task",
    "aws:ecs:task-cpu-stress", "aws:ecs:task-io-stress", "aws:ecs:task-kill-process",
    "aws:ecs:task-network-blackhole-port", "aws:ecs:task-network-latency", "aws:ecs:task-network-packet-loss",
    "aws:eks:inject-kubernetes-custom-resource", "aws:eks:pod-cpu-stress", "aws:eks:pod-delete",
    "aws:eks:pod-io-stress", "aws:eks:pod-memory-stress", "aws:eks:pod-network-blackhole-port",
    "aws:eks:pod-network-latency", "aws:eks:pod-network-packet-loss", "aws:eks:terminate-nodegroup-instances",
    "aws:elasticache:replicationgroup-interrupt-az-power", "aws:elasticache:interrupt-cluster-az-power",
    "aws:fis:inject-api-internal-error", "aws:fis:inject-api-throttle-error", "aws:fis:inject-api-unavailable-error",
    "aws:fis:wait", "aws:kinesis:stream-provisioned-throughput-exception", "aws:kinesis:stream-expired-iterator-exception",
    "aws:lambda:invocation-add-delay", "aws:lambda:invocation-error", "aws:lambda:invocation-http-integration-response",
    "aws:memorydb:multi-region-cluster-pause-replication", "aws:network:disrupt-connectivity",
    "aws:network:route-table-disrupt-cross-region-connectivity",
    "aws:network:transit-gateway-disrupt-cross-region-connectivity", "aws:network:disrupt-vpc-endpoint",
    "aws:rds:failover-db-cluster", "aws:rds:reboot-db-instances", "aws:s3:bucket-pause-replication",
    "aws:ssm:send-command", "aws:ssm:start-automation-execution",
}


def test_every_action_aws_publishes_is_known():
    assert {a for a in ACTIONS if a.startswith("aws:")} == AWS_ACTION_IDS


@pytest.mark.parametrize(("action_id", "targets"), [
    # Target keys as AWS's own templates write them.
    ("aws:ec2:send-spot-instance-interruptions", {"SpotInstances": "aws:ec2:spot-instance"}),
    ("aws:elasticache:interrupt-cluster-az-power", {"ReplicationGroups": "aws:elasticache:redis-replicationgroup"}),
    ("aws:elasticache:replicationgroup-interrupt-az-power", {"ReplicationGroups": "aws:elasticache:replicationgroup"}),
    ("aws:kinesis:stream-provisioned-throughput-exception", {"KinesisStreams": "aws:kinesis:stream"}),
    ("aws:directconnect:virtual-interface-disconnect", {"VirtualInterfaces": "aws:directconnect:virtual-interface"}),
    ("aws:network:disrupt-vpc-endpoint", {"VPCEndpoints": "aws:ec2:vpc-endpoint"}),
    ("aws:eks:inject-kubernetes-custom-resource", {"Cluster": "aws:eks:cluster"}),
    ("aws:ssm:start-automation-execution", {}),
    ("aws:cloudwatch:assert-alarm-state", {}),
])
def test_action_targets_are_aws_keys_and_types(action_id, targets):
    assert dict(ACTIONS[action_id].targets) == targets


def test_every_targeted_resource_type_is_documented_and_listable():
    from fisproxy.fis.resources.listers import TYPES

    targeted = {t for s in ACTIONS.values() for t in s.targets.values()}
    assert targeted == set(target_resource_types())
    assert targeted <= set(TYPES)


def test_how_each_action_runs():
    import fisproxy.fis.resources as resources

    kinds = {a: s.kind for a, s in ACTIONS.items()}
    agents = {a for a, k in kinds.items() if k == "agent"}
    assert agents == ({a for a in AWS_ACTION_IDS if a.startswith(("aws:ecs:task-", "aws:eks:pod-"))}
                      | {"aws:eks:inject-kubernetes-custom-resource"})
    # EBS pauses and delays a volume's I/O itself, with no agent: AWS-internal, not "an agent".
    assert {a for a, k in kinds.items() if k == "aws-internal"} == {
        "aws:dsql:cluster-connection-failure", "aws:memorydb:multi-region-cluster-pause-replication",
        "aws:ec2:asg-insufficient-instance-capacity-error", "aws:ebs:pause-volume-io",
        "aws:ebs:volume-io-latency"}
    assert {a for a, k in kinds.items() if k == "resource"} == set(resources.IMPLEMENTATIONS)
    assert {a for a, k in kinds.items() if k == "api-fault"} == {a for a, s in ACTIONS.items() if s.compiler}
    assert {a for a, k in kinds.items() if k == "proxy-fault"} == {
        "aws:ec2:api-insufficient-instance-capacity-error",
        "aws:kinesis:stream-provisioned-throughput-exception", "aws:kinesis:stream-expired-iterator-exception",
        "aws:lambda:invocation-add-delay", "aws:lambda:invocation-error",
        "aws:lambda:invocation-http-integration-response", "aws:network:disrupt-connectivity",
        "aws:network:route-table-disrupt-cross-region-connectivity"}
    for action_id in agents:
        spec = ACTIONS[action_id]
        assert not spec.performable and spec.failure_reason.startswith(f"{action_id} cannot run in fisproxy: it needs ")
        assert spec.skipped_reason.startswith(f"Skipped: {action_id} cannot run in fisproxy: it needs ")
        assert "agent" in spec.reason or "pod" in spec.reason or "Kubernetes" in spec.reason
    for action_id in {a for a, k in kinds.items() if k == "aws-internal"}:
        reason = ACTIONS[action_id].skipped_reason
        assert reason.startswith(f"Skipped: {action_id} cannot run in fisproxy: it is performed by AWS itself")
        assert reason.endswith("The experiment runs on without this action's effect.")
        assert "agent" not in reason.replace("no agent", "")  # AWS does it: nothing to install
    assert ACTIONS["aws:ec2:stop-instances"].performable and ACTIONS["aws:ec2:stop-instances"].failure_reason is None
    assert ACTIONS["aws:ec2:stop-instances"].skipped_reason is None


def test_the_duration_parameter_of_each_action():
    def lasts(action_id, params):
        return ACTIONS[action_id].duration(params)

    assert lasts("aws:ec2:stop-instances", {"startInstancesAfterDuration": "PT2M"}) == timedelta(minutes=2)
    assert lasts("aws:ec2:stop-instances", {}) is None
    assert lasts("aws:ec2:send-spot-instance-interruptions", {"durationBeforeInterruption": "PT3M"}) == timedelta(minutes=3)
    assert lasts("aws:ssm:start-automation-execution", {"maxDuration": "PT1H"}) == timedelta(hours=1)
    assert lasts("aws:ssm:send-command", {"duration": "PT5M"}) == timedelta(minutes=5)
    assert lasts("aws:ec2:reboot-instances", {}) is None


RESOURCE_BAD = [
    ("aws:ec2:send-spot-instance-interruptions", {"durationBeforeInterruption": "PT16M"},
     "durationBeforeInterruption: must be an ISO 8601 duration up to PT15M"),
    ("aws:ec2:stop-instances", {"completeIfInstancesTerminated": "yes"}, 'completeIfInstancesTerminated: must be true or false, got "yes"'),
    ("aws:cloudwatch:assert-alarm-state",
     {"alarmArns": ",".join(f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:a{i}" for i in range(6)), "alarmStates": "OK"},
     "alarmArns: must be 1 to 5 alarm ARNs, comma-separated, got 6"),
    ("aws:cloudwatch:assert-alarm-state",
     {"alarmArns": "arn:aws:cloudwatch:us-east-1:123456789012:alarm:a", "alarmStates": "OK,RED"},
     "alarmStates: must be a comma-separated list of OK, ALARM, INSUFFICIENT_DATA"),
    ("aws:ssm:send-command", {"documentArn": "AWS-RunShellScript", "duration": "PT1M"}, "documentArn: must be an ARN"),
    ("aws:ssm:send-command", {"documentArn": "arn:aws:ssm:us-east-1::document/AWS-RunShellScript",
                              "documentParameters": "[1]", "duration": "PT1M"}, "documentParameters: must be a JSON object"),
    ("aws:ecs:drain-container-instances", {"drainagePercentage": "0", "duration": "PT1M"}, "drainagePercentage: must be an integer 1-100"),
    ("aws:lambda:invocation-http-integration-response",
     {"duration": "PT1M", "contentTypeHeader": "text/plain", "preventExecution": "true", "statusCode": "1000"},
     "statusCode: must be an integer 0-999"),
    ("aws:lambda:invocation-error", {"duration": "PT1M"}, "preventExecution: required by aws:lambda:invocation-error"),
    ("aws:network:disrupt-connectivity", {"duration": "PT1M", "scope": "everything"}, "scope: must be one of all,"),
    ("aws:s3:bucket-pause-replication", {"duration": "PT1M", "region": "mars"}, "region: must be an AWS region"),
]


@pytest.mark.parametrize(("action_id", "params", "message"), RESOURCE_BAD)
def test_resource_action_parameters_are_validated_as_aws_does(action_id, params, message):
    with pytest.raises(ParameterError, match="^" + message):
        ACTIONS[action_id].validate(params)


_README_KINDS = {"resource action": "resource", "proxy fault": "proxy-fault", "needs an agent": "agent",
                 "AWS-internal": "aws-internal"}


def _readme_rows() -> dict[str, str]:
    """actionId -> kind, from the README's action tables (grouped ids like `-io-stress` expanded)."""
    from pathlib import Path

    text = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    section = text[text.index("## Actions\n"):text.index("## Experiments, as in FIS")]
    rows: dict[str, str] = {}
    previous = ""
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| `") or len(cells) < 3:
            continue
        names = [n.strip().strip("`") for n in cells[0].split(",")]
        # `aws:ecs:task-cpu-stress`, `-io-stress`: the later ones share the first's `aws:ecs:task`.
        stem = names[0][: names[0].rindex(":") + 1] + names[0].split(":")[-1].split("-")[0]
        ids = [names[0]] + [stem + n for n in names[1:]]
        what = cells[-1]
        if cells[1].startswith(("service", "duration", "region", "percentage", "same")):
            kind = "wait" if ids[0] == "aws:fis:wait" else "api-fault"
        else:
            kind = next((k for prefix, k in _README_KINDS.items() if what.startswith(prefix)), previous)
        previous = kind
        rows.update(dict.fromkeys(ids, kind))
    return rows


def test_the_readme_lists_every_action_with_how_it_runs():
    assert _readme_rows() == {a: s.kind for a, s in ACTIONS.items()}


def test_the_readme_says_each_action_fisproxy_cannot_perform_is_skipped_and_why():
    from pathlib import Path

    text = Path(__file__).resolve().parents[2].joinpath("README.md").read_text()
    section = text[text.index("## Actions\n"):text.index("## Experiments, as in FIS")]
    rows = [line for line in section.splitlines()
            if line.startswith("| `") and ("| needs an agent" in line or "| AWS-internal" in line)]
    assert len(rows) >= 8
    for row in rows:
        what = row.rstrip(" |").rsplit("|", 1)[-1]
        assert "skipped" in what and "(" in what, row  # skipped, and why
