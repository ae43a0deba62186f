"""Systems Manager actions on a real moto server."""

from __future__ import annotations

import json
import time

import pytest

from fisproxy.fis.resources import ActionError, implementation, perform
from tests.fis.resources.conftest import Target, boto, run_instances

DOC = "arn:aws:ssm:us-east-1::document/AWS-RunShellScript"


def test_send_command_runs_the_document_on_the_targets_and_waits_for_it(moto_url, tag, session, resolve, context):
    targeted = run_instances(moto_url, 2, tag)
    run_instances(moto_url, 1, {"fis-test": "bystander"})
    sent: list[dict] = []
    # What fisproxy asks for (moto's command lists every instance of the region when it runs
    # one without Targets, so its InstanceIds cannot tell).
    session.client("ssm").meta.events.register("provide-client-params.ssm.SendCommand",
                                               lambda params, **_: sent.append(dict(params)))
    log: list[str] = []
    ctx = context("aws:ssm:send-command", {"Instances": resolve(Target("aws:ec2:instance", resource_tags=tag))},
                  {"documentArn": DOC, "documentParameters": json.dumps({"commands": "echo chaos"}), "duration": "PT1M"},
                  deadline=time.monotonic() + 60, log=log)
    perform(implementation("aws:ssm:send-command"), ctx)
    assert [sorted(p["InstanceIds"]) for p in sent] == [sorted(targeted)]
    command = boto(moto_url, "ssm").list_commands(CommandId=ctx.state["command_id"])["Commands"][0]
    assert command["DocumentName"] == "AWS-RunShellScript"
    assert command["Parameters"] == {"commands": ["echo chaos"]}
    assert command["Comment"] == "fisproxy experiment EXPresources, action a"
    assert log[-1] == f"Command {ctx.state['command_id']} finished: Success."


def test_start_automation_the_upstream_lacks_fails_with_its_answer(context):
    ctx = context("aws:ssm:start-automation-execution", {},
                  {"documentArn": "arn:aws:ssm:us-east-1::document/AWS-RestartEC2Instance", "maxDuration": "PT1M"},
                  deadline=time.monotonic() + 60)
    with pytest.raises(ActionError) as err:
        perform(implementation("aws:ssm:start-automation-execution"), ctx)
    assert err.value.reason.startswith("ssm StartAutomationExecution failed on the upstream: HTTP 500: ")
    assert "Internal Server Error" in err.value.reason
