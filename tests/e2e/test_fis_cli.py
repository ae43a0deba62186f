"""The FIS API as people drive it: the AWS CLI (`aws fis ...`) through HTTPS_PROXY and with
--endpoint-url, against the real proxy; the experiment lifecycle with second-long durations."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Fisproxy
from tests.helpers import VENV_BIN


def aws(proxy: Fisproxy, *args: str, endpoint: bool = False) -> Any:
    cmd = [str(VENV_BIN / "aws"), *args, "--output", "json", "--region", "us-east-1"]
    if endpoint:
        cmd += ["--endpoint-url", proxy.control_url]
    env = proxy.env() if not endpoint else proxy.env(HTTPS_PROXY="", HTTP_PROXY="")
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def template_21(role_arn: str, alarm_arn: str) -> dict[str, Any]:
    """The example template of FIS's user guide
    (https://docs.aws.amazon.com/fis/latest/userguide/experiment-template-example.html), with
    second-long durations."""
    return {
        "description": "Throttle EC2 Describe* for the app role",
        "targets": {"myRole": {"resourceType": "aws:iam:role", "resourceArns": [role_arn], "selectionMode": "ALL"}},
        "actions": {
            "wait": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT2S"}},
            "ThrottleAPI": {
                "actionId": "aws:fis:inject-api-throttle-error",
                "description": "Throttle APIs",
                "parameters": {"service": "ec2", "operations": "DescribeInstances,DescribeVolumes",
                               "percentage": "100", "duration": "PT3S"},
                "targets": {"Roles": "myRole"},
                "startAfter": ["wait"],
            },
        },
        "stopConditions": [{"source": "aws:cloudwatch:alarm", "value": alarm_arn}],
        "roleArn": "arn:aws:iam::123456789012:role/fis-role",
        "tags": {"Name": f"ThrottleEC2APIActions-{uuid.uuid4().hex[:6]}"},
        "experimentOptions": {"accountTargeting": "single-account", "emptyTargetResolutionMode": "fail"},
    }


def test_cli_lifecycle_through_https_proxy(proxy: Fisproxy, tmp_path: Path) -> None:
    cw = proxy.client("cloudwatch")
    cw.put_metric_alarm(AlarmName="never", MetricName="m", Namespace="n", Statistic="Sum", Period=60,
                        EvaluationPeriods=1, Threshold=1, ComparisonOperator="GreaterThanThreshold")
    alarm_arn = cw.describe_alarms(AlarmNames=["never"])["MetricAlarms"][0]["AlarmArn"]
    spec = tmp_path / "template.json"
    spec.write_text(json.dumps(template_21("arn:aws:iam::123456789012:role/app-role", alarm_arn)))

    created = aws(proxy, "fis", "create-experiment-template", "--cli-input-json", f"file://{spec}")
    template_id = created["experimentTemplate"]["id"]
    assert template_id.startswith("EXT")
    started = aws(proxy, "fis", "start-experiment", "--experiment-template-id", template_id)
    exp_id = started["experiment"]["id"]
    assert started["experiment"]["state"]["status"] in ("initiating", "running")

    # The states as they pass, from the start answer on. Polled with boto3: an AWS CLI process
    # per poll can take longer than the 2 s the action is pending on a busy machine.
    seen = [(started["experiment"]["state"]["status"], started["experiment"]["actions"]["ThrottleAPI"]["state"]["status"])]
    fis = proxy.fis()
    deadline = time.monotonic() + 30
    while seen[-1][0] not in ("completed", "failed", "stopped") and time.monotonic() < deadline:
        time.sleep(0.1)
        exp = fis.get_experiment(id=exp_id)["experiment"]
        pair = (exp["state"]["status"], exp["actions"]["ThrottleAPI"]["state"]["status"])
        if seen[-1] != pair:
            seen.append(pair)
    action_states = [a for _, a in seen]
    assert action_states.index("pending") < action_states.index("running") < action_states.index("completed")
    assert seen[-1] == ("completed", "completed"), seen
    exp = aws(proxy, "fis", "get-experiment", "--id", exp_id, endpoint=True)["experiment"]
    assert (exp["state"]["status"], exp["actions"]["ThrottleAPI"]["state"]["status"]) == ("completed", "completed")
    assert exp["actions"]["wait"]["state"]["status"] == "completed"

    listed = aws(proxy, "fis", "list-experiments", endpoint=True)["experiments"]
    assert exp_id in {e["id"] for e in listed}


def test_cli_stop_midway(proxy: Fisproxy) -> None:
    created = aws(proxy, "fis", "create-experiment-template", "--description", "long wait",
                  "--role-arn", "arn:aws:iam::123456789012:role/fis",
                  "--stop-conditions", "source=none",
                  "--actions", json.dumps({
                      "wait": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT10M"}},
                      "later": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1M"}, "startAfter": ["wait"]},
                  }), endpoint=True)
    exp_id = aws(proxy, "fis", "start-experiment", "--experiment-template-id",
                 created["experimentTemplate"]["id"], endpoint=True)["experiment"]["id"]
    deadline = time.monotonic() + 10
    while aws(proxy, "fis", "get-experiment", "--id", exp_id, endpoint=True)["experiment"]["state"]["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    stopping = aws(proxy, "fis", "stop-experiment", "--id", exp_id)["experiment"]
    assert stopping["state"]["status"] in ("stopping", "stopped")
    deadline = time.monotonic() + 10
    while True:
        exp = aws(proxy, "fis", "get-experiment", "--id", exp_id, endpoint=True)["experiment"]
        if exp["state"]["status"] == "stopped":
            break
        assert time.monotonic() < deadline, exp["state"]
        time.sleep(0.2)
    assert exp["actions"]["wait"]["state"]["status"] == "stopped"
    assert exp["actions"]["later"]["state"]["status"] == "cancelled"
    assert "endTime" in exp


def test_cli_validation_error_names_the_field(proxy: Fisproxy) -> None:
    cmd = [str(VENV_BIN / "aws"), "fis", "create-experiment-template", "--region", "us-east-1",
           "--endpoint-url", proxy.control_url, "--description", "bad",
           "--role-arn", "arn:aws:iam::123456789012:role/fis", "--stop-conditions", "source=none",
           "--actions", json.dumps({"a": {"actionId": "aws:fis:inject-api-throttle-error",
                                          "parameters": {"service": "dynamodb", "percentage": "150"}}})]
    result = subprocess.run(cmd, capture_output=True, text=True, env=proxy.env(HTTPS_PROXY=""), timeout=60)
    assert result.returncode != 0
    assert "ValidationException" in result.stderr and "percentage" in result.stderr


def test_region_comes_from_the_request(proxy: Fisproxy) -> None:
    """ARNs carry the region the FIS request was signed for, on the control port and through
    the proxy alike."""
    fis = proxy.fis("eu-west-1")
    template = fis.create_experiment_template(
        description="regional", roleArn="arn:aws:iam::123456789012:role/fis",
        stopConditions=[{"source": "none"}],
        actions={"w": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1S"}}},
    )["experimentTemplate"]
    assert template["arn"].startswith("arn:aws:fis:eu-west-1:123456789012:experiment-template/")
    via_proxy = proxy.client("fis", "ap-south-1")
    exp = via_proxy.start_experiment(experimentTemplateId=template["id"])["experiment"]
    assert exp["arn"].startswith("arn:aws:fis:ap-south-1:")


def test_safety_lever_is_a_kill_switch(proxy: Fisproxy) -> None:
    """Engaging the safety lever cancels running experiments (their faults end at once) and
    refuses new ones until it is disengaged."""
    import botocore.exceptions
    import pytest

    from tests.e2e.conftest import start_action, wait_for_state

    fis = proxy.fis()
    exp_id = start_action(proxy, "aws:fis:inject-api-throttle-error", {"service": "sns", "percentage": "100"})
    with pytest.raises(botocore.exceptions.ClientError):
        proxy.client("sns", retries={"total_max_attempts": 1}).list_topics()
    lever = fis.get_safety_lever(id="default")["safetyLever"]
    fis.update_safety_lever_state(id=lever["id"], state={"status": "engaged", "reason": "game day over"})
    try:
        cancelled = wait_for_state(fis, exp_id, "cancelled")
        assert cancelled["state"]["reason"] == "game day over"  # the lever's reason
        proxy.client("sns", retries={"total_max_attempts": 1}).list_topics()  # fault gone
        template_id = cancelled["experimentTemplateId"]
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            fis.start_experiment(experimentTemplateId=template_id)
        assert refused.value.response["Error"]["Code"] == "ConflictException"
    finally:
        fis.update_safety_lever_state(id=lever["id"], state={"status": "disengaged", "reason": "back to work"})
    again = fis.start_experiment(experimentTemplateId=template_id)["experiment"]
    wait_for_state(fis, again["id"], "running")
