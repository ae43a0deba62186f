"""Systems Manager actions
(https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html#ssm-actions-reference).

- send-command: SendCommand to the target instances, then wait for the command to finish, up
  to `duration`. A command that fails fails the action (with SSM's status details); one still
  running at the end of the duration, or when the experiment stops, is cancelled.
- start-automation-execution: StartAutomationExecution, then wait for it up to `maxDuration`;
  a failed automation fails the action; one still running at the end is stopped.
"""

from __future__ import annotations

import json
from typing import Any

from fisproxy.fis.failure import Failure
from fisproxy.fis.resources.base import ActionContext, poll, register, upstream_call

_COMMAND_DONE = {"Success", "Failed", "Cancelled", "TimedOut", "Cancelling"}
_AUTOMATION_DONE = {"Success", "Failed", "Cancelled", "TimedOut", "CompletedWithSuccess",
                    "CompletedWithFailure", "Rejected", "Exited"}
_AUTOMATION_OK = {"Success", "CompletedWithSuccess"}


def document_parameters(ctx: ActionContext) -> dict[str, list[str]]:
    """`documentParameters` as SSM takes them: every value a list of strings."""
    raw = ctx.parameters.get("documentParameters")
    if not raw:
        return {}
    parsed = json.loads(raw)
    return {str(k): [str(x) for x in v] if isinstance(v, list) else [str(v)] for k, v in parsed.items()}


def document_name(ctx: ActionContext) -> str:
    """The document to run: its name when it is AWS's or the account's own, else its ARN
    (a document shared by another account is run by ARN)."""
    arn = ctx.parameters["documentArn"]
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[5].startswith("document/"):
        if not parts[4] or parts[4] == ctx.account_id:
            return parts[5].split("/", 1)[1]
    return arn


@register("aws:ssm:send-command")
class SendCommand:
    def start(self, ctx: ActionContext) -> None:
        ids = list(ctx.target("Instances").ids)
        kwargs: dict[str, Any] = {
            "InstanceIds": ids,
            "DocumentName": document_name(ctx),
            "Parameters": document_parameters(ctx),
            "Comment": _marker(ctx),  # how a resumed action finds it (recover)
        }
        if ctx.parameters.get("documentVersion"):
            kwargs["DocumentVersion"] = ctx.parameters["documentVersion"]
        with upstream_call("ssm SendCommand"):
            command = ctx.client("ssm").send_command(**kwargs)["Command"]
        ctx.state["command_id"] = command["CommandId"]
        ctx.log(f"Sent command {command['CommandId']} ({kwargs['DocumentName']}) to {', '.join(ids)}.")

    def recover(self, ctx: ActionContext) -> bool:
        """The command this action sent, if it went out: listed for the first target instance
        with this action's comment. Found: followed, not sent again."""
        ids = list(ctx.target("Instances").ids)
        if not ids:
            return False
        with upstream_call("ssm ListCommands"):
            commands = ctx.client("ssm").list_commands(InstanceId=ids[0]).get("Commands", [])
        mine = [c for c in commands if c.get("Comment") == _marker(ctx)]
        if not mine:
            return False
        ctx.state["command_id"] = mine[-1]["CommandId"]
        ctx.log(f"Command {mine[-1]['CommandId']} was already sent by this action: not sent again.")
        return True

    def _command(self, ctx: ActionContext) -> dict[str, Any]:
        with upstream_call("ssm ListCommands"):
            commands = ctx.client("ssm").list_commands(CommandId=ctx.state["command_id"]).get("Commands", [])
        if not commands:
            raise Failure(f"SSM command {ctx.state['command_id']} is not listed by the upstream.")
        return dict(commands[0])

    def wait(self, ctx: ActionContext) -> None:
        done = poll(ctx, lambda: (c if (c := self._command(ctx))["Status"] in _COMMAND_DONE else None))
        if done is None:
            return  # the duration is over or the experiment stopped: `stop` cancels it
        ctx.state["finished"] = True
        if done["Status"] != "Success":
            raise Failure(
                f"SSM command {done['CommandId']} ended {done['Status']}"
                f"{': ' + done['StatusDetails'] if done.get('StatusDetails') else ''}."
            )
        ctx.log(f"Command {done['CommandId']} finished: {done['Status']}.")

    def stop(self, ctx: ActionContext) -> None:
        command_id = ctx.state.get("command_id")
        if not command_id or ctx.state.get("finished"):
            return
        if self._command(ctx)["Status"] in _COMMAND_DONE:
            return
        with upstream_call("ssm CancelCommand"):
            ctx.client("ssm").cancel_command(CommandId=command_id)
        ctx.state["finished"] = True
        ctx.log(f"Cancelled command {command_id}.")


def _marker(ctx: ActionContext) -> str:
    return ctx.who()[:100]  # SendCommand's Comment takes at most 100 characters


@register("aws:ssm:start-automation-execution")
class StartAutomationExecution:
    def start(self, ctx: ActionContext) -> None:
        kwargs: dict[str, Any] = {"DocumentName": document_name(ctx), "Parameters": document_parameters(ctx)}
        if ctx.parameters.get("documentVersion"):
            kwargs["DocumentVersion"] = ctx.parameters["documentVersion"]
        with upstream_call("ssm StartAutomationExecution"):
            execution_id = ctx.client("ssm").start_automation_execution(**kwargs)["AutomationExecutionId"]
        ctx.state["execution_id"] = execution_id
        ctx.log(f"Started automation {execution_id} ({kwargs['DocumentName']}).")

    def _status(self, ctx: ActionContext) -> dict[str, Any]:
        with upstream_call("ssm GetAutomationExecution"):
            return dict(ctx.client("ssm").get_automation_execution(
                AutomationExecutionId=ctx.state["execution_id"])["AutomationExecution"])

    def wait(self, ctx: ActionContext) -> None:
        done = poll(ctx, lambda: (e if (e := self._status(ctx))["AutomationExecutionStatus"] in _AUTOMATION_DONE else None))
        if done is None:
            return
        ctx.state["finished"] = True
        status = done["AutomationExecutionStatus"]
        if status not in _AUTOMATION_OK:
            raise Failure(
                f"Automation {ctx.state['execution_id']} ended {status}"
                f"{': ' + done['FailureMessage'] if done.get('FailureMessage') else ''}."
            )
        ctx.log(f"Automation {ctx.state['execution_id']} finished: {status}.")

    def stop(self, ctx: ActionContext) -> None:
        execution_id = ctx.state.get("execution_id")
        if not execution_id or ctx.state.get("finished"):
            return
        if self._status(ctx)["AutomationExecutionStatus"] in _AUTOMATION_DONE:
            return
        with upstream_call("ssm StopAutomationExecution"):
            ctx.client("ssm").stop_automation_execution(AutomationExecutionId=execution_id, Type="Cancel")
        ctx.state["finished"] = True
        ctx.log(f"Stopped automation {execution_id}.")
