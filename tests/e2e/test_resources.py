"""FIS's resource side end to end: a real `fisproxy run` in front of a real moto server, driven
with boto3's fis client; targets resolved on moto with the experiment role, actions performed
on moto, resource-scoped faults on the calls that name the targeted functions and streams."""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.exceptions
import pytest
import requests

from tests.e2e.conftest import Fisproxy, wait_for_state
from tests.fis.resources import conftest as resource_fixtures
from tests.fis.resources.conftest import AuthUpstream
from tests.helpers import wait_until

ROLE = "arn:aws:iam::123456789012:role/fis-experiment"  # the role auth_upstream knows


# A moto server that enforces IAM (the `auth_upstream` fixture of the resource tests).
auth_upstream = resource_fixtures.auth_upstream


@pytest.fixture
def tag() -> dict[str, str]:
    return {"fis-e2e": uuid.uuid4().hex[:10]}


@pytest.fixture(scope="module")
def lambda_without_docker(fisproxy: Fisproxy) -> Iterator[None]:
    requests.post(f"{fisproxy.upstream}/moto-api/config", json={"lambda": {"use_docker": False}},
                  timeout=5, proxies={"http": None, "https": None}).raise_for_status()
    yield


def run_experiment(proxy: Fisproxy, actions: dict[str, Any], targets: dict[str, Any],
                   options: dict[str, str] | None = None) -> str:
    fis = proxy.fis()
    template = fis.create_experiment_template(
        description="e2e resources", roleArn=ROLE, stopConditions=[{"source": "none"}],
        actions=actions, targets=targets, **({"experimentOptions": options} if options else {}),
    )["experimentTemplate"]
    return fis.start_experiment(experimentTemplateId=template["id"])["experiment"]["id"]


def instances(proxy: Fisproxy, count: int, tags: dict[str, str]) -> list[str]:
    ec2 = proxy.client("ec2")
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    answer = ec2.run_instances(
        ImageId=ami, MinCount=count, MaxCount=count, InstanceType="t3.micro",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])
    return [i["InstanceId"] for i in answer["Instances"]]


def states(proxy: Fisproxy, ids: list[str]) -> dict[str, str]:
    answer = proxy.client("ec2").describe_instances(InstanceIds=ids)
    return {i["InstanceId"]: i["State"]["Name"] for r in answer["Reservations"] for i in r["Instances"]}


def by_tags(resource_type: str, tags: dict[str, str], selection: str = "ALL", **extra: Any) -> dict[str, Any]:
    return {"resourceType": resource_type, "resourceTags": tags, "selectionMode": selection, **extra}


def test_stop_instances_by_tags_and_filter_then_started_again(proxy: Fisproxy, tag: dict[str, str]) -> None:
    targeted = instances(proxy, 2, tag)
    bystander = instances(proxy, 1, {"fis-e2e": "bystander"})
    exp_id = run_experiment(
        proxy,
        {"stop": {"actionId": "aws:ec2:stop-instances", "targets": {"Instances": "vms"},
                  "parameters": {"startInstancesAfterDuration": "PT3S"}}},
        {"vms": by_tags("aws:ec2:instance", tag, filters=[{"path": "State.Name", "values": ["running"]}])},
    )
    wait_until(lambda: set(states(proxy, targeted).values()) == {"stopped"}, 20, "instances stopped")
    assert states(proxy, bystander) == {bystander[0]: "running"}  # untargeted: untouched
    fis = proxy.fis()
    listed = fis.list_experiment_resolved_targets(experimentId=exp_id)["resolvedTargets"]
    assert sorted(t["targetInformation"]["arn"].rsplit("/", 1)[1] for t in listed) == sorted(targeted)
    exp = wait_for_state(fis, exp_id, "completed", timeout=30)
    assert exp["actions"]["stop"]["state"]["status"] == "completed"
    assert set(states(proxy, targeted).values()) == {"running"}  # started again


def test_stopping_the_experiment_starts_stopped_instances_again(proxy: Fisproxy, tag: dict[str, str]) -> None:
    targeted = instances(proxy, 1, tag)
    exp_id = run_experiment(
        proxy,
        {"stop": {"actionId": "aws:ec2:stop-instances", "targets": {"Instances": "vms"},
                  "parameters": {"startInstancesAfterDuration": "PT1H"}}},
        {"vms": by_tags("aws:ec2:instance", tag)},
    )
    wait_until(lambda: states(proxy, targeted)[targeted[0]] == "stopped", 20, "instance stopped")
    proxy.fis().stop_experiment(id=exp_id)
    exp = wait_for_state(proxy.fis(), exp_id, "stopped", timeout=30)
    assert exp["actions"]["stop"]["state"]["status"] == "stopped"
    assert states(proxy, targeted)[targeted[0]] == "running"


def test_terminate_instances_by_arn_count(proxy: Fisproxy, tag: dict[str, str]) -> None:
    targeted = instances(proxy, 3, tag)
    arns = [f"arn:aws:ec2:us-east-1:123456789012:instance/{i}" for i in targeted]
    exp_id = run_experiment(
        proxy, {"kill": {"actionId": "aws:ec2:terminate-instances", "targets": {"Instances": "vms"}}},
        {"vms": {"resourceType": "aws:ec2:instance", "resourceArns": arns, "selectionMode": "COUNT(2)"}},
    )
    wait_for_state(proxy.fis(), exp_id, "completed", timeout=30)
    assert sorted(states(proxy, targeted).values()) == ["running", "terminated", "terminated"]


def test_ssm_send_command_is_listed_on_the_upstream(proxy: Fisproxy, tag: dict[str, str]) -> None:
    targeted = instances(proxy, 1, tag)
    doc = "arn:aws:ssm:us-east-1::document/AWS-RunShellScript"
    exp_id = run_experiment(
        proxy,
        {"cmd": {"actionId": "aws:ssm:send-command", "targets": {"Instances": "vms"},
                 "parameters": {"documentArn": doc, "documentParameters": json.dumps({"commands": ["uptime"]}),
                                "duration": "PT1M"}}},
        {"vms": by_tags("aws:ec2:instance", tag)},
    )
    exp = wait_for_state(proxy.fis(), exp_id, "completed", "failed", timeout=60)
    assert exp["state"]["status"] == "completed", exp["state"]
    commands = proxy.client("ssm").list_commands()["Commands"]
    mine = [c for c in commands if targeted[0] in c.get("InstanceIds", [])]
    assert mine and mine[-1]["DocumentName"] == "AWS-RunShellScript"
    assert mine[-1]["Parameters"] == {"commands": ["uptime"]}


def test_a_target_resolving_to_nothing_fails_or_is_skipped(proxy: Fisproxy, tag: dict[str, str]) -> None:
    action = {"actionId": "aws:ec2:reboot-instances", "targets": {"Instances": "vms"}}
    targets = {"vms": by_tags("aws:ec2:instance", tag)}  # no instance carries the tag
    failed = run_experiment(proxy, {"reboot": action}, targets)
    exp = wait_for_state(proxy.fis(), failed, "failed", timeout=30)
    assert exp["state"]["reason"] == 'Target "vms" resolved to no resources.'
    skipped = run_experiment(proxy, {"reboot": action}, targets, {"emptyTargetResolutionMode": "skip"})
    exp = wait_for_state(proxy.fis(), skipped, "completed", timeout=30)
    assert exp["actions"]["reboot"]["state"]["status"] == "skipped"


def test_an_api_the_upstream_lacks_skips_the_action_saying_so(proxy: Fisproxy, tmp_path: Any) -> None:
    """moto lacks StartAutomationExecution: the action ends skipped, its reason the upstream's
    own answer; with fisproxy_fail_unperformable the experiment fails with that reason."""
    action = {"auto": {"actionId": "aws:ssm:start-automation-execution",
                       "parameters": {"documentArn": "arn:aws:ssm:us-east-1::document/AWS-RestartEC2Instance",
                                      "maxDuration": "PT1M"}}}
    exp = wait_for_state(proxy.fis(), run_experiment(proxy, action, {}), "completed", "failed", timeout=30)
    assert exp["state"]["status"] == "completed", exp["state"]
    state = exp["actions"]["auto"]["state"]
    assert state["status"] == "skipped"
    assert state["reason"].startswith("Skipped: the upstream does not implement ssm StartAutomationExecution")
    assert "not supported by fisproxy" not in state["reason"] and "in fisproxy" not in state["reason"]
    strict = Fisproxy(tmp_path, proxy.upstream, extra_args=("--set", "fisproxy_fail_unperformable=true"))
    with strict.running():
        exp = wait_for_state(strict.fis(), run_experiment(strict, action, {}), "failed", timeout=30)
    assert exp["actions"]["auto"]["state"]["reason"].startswith("the upstream does not implement ssm StartAutomationExecution")
    assert exp["state"]["error"]["location"] == "auto"


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("index.py", "def handler(event, context):\n    return {'ok': True}\n")
    return buf.getvalue()


def function(proxy: Fisproxy, name: str, tags: dict[str, str]) -> str:
    role = proxy.client("iam").create_role(RoleName=f"fn-{name}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    return proxy.client("lambda").create_function(
        FunctionName=name, Runtime="python3.12", Role=role, Handler="index.handler",
        Code={"ZipFile": _zip()}, Tags=tags)["FunctionArn"]


def test_lambda_invocation_error_hits_only_the_targeted_function(
    proxy: Fisproxy, tag: dict[str, str], lambda_without_docker: None
) -> None:
    name = f"orders-{tag['fis-e2e']}"
    function(proxy, name, tag)
    other = f"billing-{tag['fis-e2e']}"
    function(proxy, other, {"fis-e2e": "other"})
    exp_id = run_experiment(
        proxy,
        {"fail": {"actionId": "aws:lambda:invocation-error", "targets": {"Functions": "fns"},
                  "parameters": {"duration": "PT10M", "preventExecution": "true"}}},
        {"fns": by_tags("aws:lambda:function", tag)},
    )
    wait_for_state(proxy.fis(), exp_id, "running")
    lam = proxy.client("lambda", retries={"mode": "standard", "total_max_attempts": 1})
    faulted = lam.invoke(FunctionName=name, Payload=b"{}")
    assert faulted["StatusCode"] == 200 and faulted["FunctionError"] == "Unhandled"
    assert json.loads(faulted["Payload"].read())["errorType"] == "invocation-error"
    arn_call = lam.invoke(FunctionName=f"arn:aws:lambda:us-east-1:123456789012:function:{name}", Payload=b"{}")
    assert arn_call.get("FunctionError") == "Unhandled"  # named by ARN: the same function
    untouched = lam.invoke(FunctionName=other, Payload=b"{}")
    assert "FunctionError" not in untouched
    proxy.fis().stop_experiment(id=exp_id)
    wait_for_state(proxy.fis(), exp_id, "stopped")
    assert "FunctionError" not in lam.invoke(FunctionName=name, Payload=b"{}")  # fault ended


def test_kinesis_throughput_exception_hits_only_the_targeted_stream(proxy: Fisproxy, tag: dict[str, str]) -> None:
    kinesis = proxy.client("kinesis", retries={"mode": "standard", "total_max_attempts": 1})
    target, other = f"clicks-{tag['fis-e2e']}", f"views-{tag['fis-e2e']}"
    for stream in (target, other):
        kinesis.create_stream(StreamName=stream, ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName=target)["StreamDescriptionSummary"]["StreamARN"]
    exp_id = run_experiment(
        proxy,
        {"throttle": {"actionId": "aws:kinesis:stream-provisioned-throughput-exception",
                      "targets": {"KinesisStreams": "streams"},
                      "parameters": {"duration": "PT10M", "percentage": "100"}}},
        {"streams": {"resourceType": "aws:kinesis:stream", "resourceArns": [arn], "selectionMode": "ALL"}},
    )
    wait_for_state(proxy.fis(), exp_id, "running")
    with pytest.raises(botocore.exceptions.ClientError) as err:
        kinesis.put_record(StreamName=target, Data=b"x", PartitionKey="k")
    assert err.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    with pytest.raises(botocore.exceptions.ClientError):
        kinesis.put_record(StreamARN=arn, Data=b"x", PartitionKey="k")  # named by ARN
    kinesis.put_record(StreamName=other, Data=b"x", PartitionKey="k")  # untargeted: fine
    proxy.fis().stop_experiment(id=exp_id)
    wait_for_state(proxy.fis(), exp_id, "stopped")
    kinesis.put_record(StreamName=target, Data=b"x", PartitionKey="k")  # fault ended


def test_actions_run_as_the_experiment_role_and_a_refusal_is_the_actions_reason(
    auth_upstream: AuthUpstream, tmp_path: Any
) -> None:
    """On a moto that enforces IAM, the proxy's own user may only assume roles; the role may
    describe instances but not stop them. The targets resolve (as the role), and the action
    fails with the upstream's AccessDenied, naming the role's session."""
    ec2 = boto3.client("ec2", endpoint_url=auth_upstream.url, region_name="us-east-1",
                       **auth_upstream.proxy_keys)
    with pytest.raises(botocore.exceptions.ClientError):
        ec2.describe_instances()  # the proxy's own credentials may not
    proxy = Fisproxy(tmp_path, auth_upstream.url, env_extra={
        "AWS_ACCESS_KEY_ID": auth_upstream.proxy_keys["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": auth_upstream.proxy_keys["aws_secret_access_key"]})
    proxy.start()
    try:
        exp_id = run_experiment(
            proxy, {"stop": {"actionId": "aws:ec2:stop-instances", "targets": {"Instances": "vms"}}},
            {"vms": by_tags("aws:ec2:instance", {"app": "auth"})})
        exp = wait_for_state(proxy.fis(), exp_id, "failed", timeout=30)
        targets = proxy.fis().list_experiment_resolved_targets(experimentId=exp_id)["resolvedTargets"]
        assert len(targets) == 1  # resolved with the role's DescribeInstances
        reason = exp["actions"]["stop"]["state"]["reason"]
        assert "AccessDenied" in reason or "not authorized" in reason
        assert "assumed-role/fis-experiment/" in reason
    finally:
        proxy.stop()


def test_subnet_disruption_drops_the_scope_on_a_proxy_placed_there(
    fisproxy: Fisproxy, tmp_path: Any, tag: dict[str, str]
) -> None:
    ec2 = fisproxy.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24", TagSpecifications=[
        {"ResourceType": "subnet", "Tags": [{"Key": k, "Value": v} for k, v in tag.items()]}])["Subnet"]["SubnetId"]
    placed = Fisproxy(tmp_path, fisproxy.upstream, extra_args=("--placement", f"subnet={subnet}"))
    placed.start()
    try:
        exp_id = run_experiment(
            placed,
            {"cut": {"actionId": "aws:network:disrupt-connectivity", "targets": {"Subnets": "net"},
                     "parameters": {"duration": "PT10M", "scope": "dynamodb"}}},
            {"net": by_tags("aws:ec2:subnet", tag)})
        wait_for_state(placed.fis(), exp_id, "running")
        ddb = placed.client("dynamodb", retries={"mode": "standard", "total_max_attempts": 1}, read_timeout=2)
        with pytest.raises(botocore.exceptions.ReadTimeoutError):
            ddb.list_tables()  # the scope: dropped, hanging until the client's timeout
        placed.client("sqs").list_queues()  # not in the scope: through
        # The shared proxy, placed nowhere, is not in the subnet: same template, no effect.
        elsewhere = run_experiment(
            fisproxy,
            {"cut": {"actionId": "aws:network:disrupt-connectivity", "targets": {"Subnets": "net"},
                     "parameters": {"duration": "PT10M", "scope": "dynamodb"}}},
            {"net": by_tags("aws:ec2:subnet", tag)})
        wait_for_state(fisproxy.fis(), elsewhere, "running")
        fisproxy.client("dynamodb").list_tables()
        fisproxy.fis().stop_experiment(id=elsewhere)
    finally:
        placed.stop()


def test_a_failed_experiment_starts_its_stopped_instances_again_at_once(proxy: Fisproxy, tag: dict[str, str]) -> None:
    """Issue 20, point 4: when another action fails, the experiment undoes what its resource
    actions did before it ends `failed`, not when `startInstancesAfterDuration` runs out."""
    targeted = instances(proxy, 1, tag)
    missing = f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:missing-{tag['fis-e2e']}"
    exp_id = run_experiment(
        proxy,
        {"stop": {"actionId": "aws:ec2:stop-instances", "targets": {"Instances": "vms"},
                  "parameters": {"startInstancesAfterDuration": "PT1H"}},
         "pause": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT3S"}},
         "check": {"actionId": "aws:cloudwatch:assert-alarm-state", "startAfter": ["pause"],
                   "parameters": {"alarmArns": missing, "alarmStates": "OK"}}},
        {"vms": by_tags("aws:ec2:instance", tag)},
    )
    wait_until(lambda: states(proxy, targeted)[targeted[0]] == "stopped", 20, "instance stopped")
    exp = wait_for_state(proxy.fis(), exp_id, "failed", timeout=30)
    assert exp["actions"]["check"]["state"]["status"] == "failed"
    assert exp["actions"]["stop"]["state"]["status"] == "stopped"
    assert exp["state"]["error"]["location"] == "check"
    assert states(proxy, targeted)[targeted[0]] == "running"  # started again before it ended
