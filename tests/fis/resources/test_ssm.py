"""Systems Manager actions on a real moto server."""

from __future__ import annotations

import json
import time

import pytest

from fisproxy.fis.failure import Failure
from fisproxy.fis.resources import implementation, perform
from fisproxy.fis.resources.base import ActionContext
from fisproxy.fis.resources.ssm import document_name
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


def test_start_automation_the_upstream_lacks_is_said_so_with_its_answer(context):
    ctx = context("aws:ssm:start-automation-execution", {},
                  {"documentArn": "arn:aws:ssm:us-east-1::document/AWS-RestartEC2Instance", "maxDuration": "PT1M"},
                  deadline=time.monotonic() + 60)
    with pytest.raises(Failure) as err:
        perform(implementation("aws:ssm:start-automation-execution"), ctx)
    assert err.value.reason.startswith(
        'the upstream does not implement ssm StartAutomationExecution: it answered HTTP 500, not an '
        'AWS error: "500 Internal Server Error')
    assert err.value.skippable and "fisproxy" not in err.value.reason


class FakeSsm:
    """An SSM whose command (or automation) stays in one status: what moto cannot show,
    since its commands succeed at once."""

    def __init__(self, status: str, details: str = "") -> None:
        self.status, self.details = status, details
        self.cancelled: list[str] = []

    def client(self, service: str, region: str | None = None) -> FakeSsm:
        return self

    account_id = "123456789012"

    def send_command(self, **kwargs):
        return {"Command": {"CommandId": "c-1"}}

    def list_commands(self, CommandId):
        return {"Commands": [{"CommandId": CommandId, "Status": self.status, "StatusDetails": self.details}]}

    def cancel_command(self, CommandId):
        self.cancelled.append(CommandId)
        self.status = "Cancelled"

    def start_automation_execution(self, **kwargs):
        return {"AutomationExecutionId": "a-1"}

    def get_automation_execution(self, AutomationExecutionId):
        return {"AutomationExecution": {"AutomationExecutionStatus": self.status, "FailureMessage": self.details}}

    def stop_automation_execution(self, AutomationExecutionId, Type):
        self.cancelled.append(AutomationExecutionId)
        self.status = "Cancelled"


def _ctx(context, fake, action_id, deadline_in):
    from fisproxy.fis.resources.targets import ResolvedTarget, TargetResource

    ctx = context(action_id, {"Instances": ResolvedTarget("i", "aws:ec2:instance", (TargetResource("arn:i", "i-1"),))},
                  {"documentArn": DOC, "duration": "PT1S", "maxDuration": "PT1S"}, deadline=time.monotonic() + deadline_in)
    ctx.clients = fake
    return ctx


@pytest.mark.parametrize("action_id", ["aws:ssm:send-command", "aws:ssm:start-automation-execution"])
def test_still_running_at_the_end_of_its_duration_it_is_cancelled(context, action_id):
    fake = FakeSsm("InProgress")
    began = time.monotonic()
    perform(implementation(action_id), _ctx(context, fake, action_id, 1.0))
    assert 1.0 <= time.monotonic() - began < 5 and len(fake.cancelled) == 1


@pytest.mark.parametrize(("action_id", "reason"), [
    ("aws:ssm:send-command", "SSM command c-1 ended Failed: Failed."),
    ("aws:ssm:start-automation-execution", "Automation a-1 ended Failed: Failed."),
])
def test_a_failed_command_fails_the_action(context, action_id, reason):
    fake = FakeSsm("Failed", "Failed")
    with pytest.raises(Failure) as err:
        perform(implementation(action_id), _ctx(context, fake, action_id, 30.0))
    assert err.value.reason == reason and fake.cancelled == []


def test_document_name_without_a_role_session_is_a_configuration_failure():
    """Whose document it is depends on the role's account: without a session, the action
    fails as it does on its first call (not with an AttributeError)."""
    ctx = ActionContext(
        experiment_id="EXP", action_name="a", action_id="aws:ssm:send-command", clients=None, targets={},
        parameters={"documentArn": "arn:aws:ssm:us-east-1:111122223333:document/Shared"}, region="us-east-1",
        log=lambda _: None,
    )
    with pytest.raises(Failure) as err:
        document_name(ctx)
    assert (err.value.code, err.value.reason) == ("ConfigurationFailure", "aws:ssm:send-command: no experiment role session")
