"""EC2 instance actions, performed with EC2's own API
(https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html#ec2-actions-reference).

- stop-instances: StopInstances, and once the instances are stopped the action waits
  `startInstancesAfterDuration`; then (or when the experiment stops early) StartInstances. An
  instance terminated meanwhile fails the action unless `completeIfInstancesTerminated`.
  Without `startInstancesAfterDuration` the instances stay stopped.
- reboot-instances, terminate-instances: one call, done.
- send-spot-instance-interruptions: after `durationBeforeInterruption` the Spot Instances are
  interrupted as their request's interruption behavior says (terminate, stop or hibernate).
  The two-minute notice and rebalance recommendation live in the instance metadata service,
  which fisproxy cannot reach; stopping the experiment before then interrupts nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fisproxy.fis.failure import Failure
from fisproxy.fis.resources.base import (
    ActionContext,
    Immediate,
    chunks,
    poll,
    register,
    upstream_call,
)

# How long a state change may take before the action gives up waiting for it.
STATE_TIMEOUT_SECONDS = 600.0


def _states(ctx: ActionContext, ids: Sequence[str]) -> dict[str, str]:
    ec2 = ctx.client("ec2")
    states: dict[str, str] = {}
    for part in chunks(list(ids), 200):
        with upstream_call("ec2 DescribeInstances"):
            answer = ec2.describe_instances(Filters=[{"Name": "instance-id", "Values": list(part)}])
        for reservation in answer.get("Reservations", []):
            for inst in reservation.get("Instances", []):
                states[inst["InstanceId"]] = inst["State"]["Name"]
    return states


def _wait_for(ctx: ActionContext, ids: Sequence[str], done: set[str], *, undoing: bool) -> dict[str, str]:
    """Poll until every instance is in a `done` state (or gone); the last states seen."""
    last: dict[str, str] = {}

    def check() -> dict[str, str] | None:
        nonlocal last
        last = _states(ctx, ids)
        return last if all(last.get(i, "terminated") in done for i in ids) else None

    poll(ctx, check, timeout=STATE_TIMEOUT_SECONDS, undoing=undoing)
    return last


@register("aws:ec2:stop-instances")
class StopInstances:
    def start(self, ctx: ActionContext) -> None:
        self._stop(ctx, list(ctx.target("Instances").ids))

    def recover(self, ctx: ActionContext) -> bool:
        """The instances' state tells: those stopping or stopped were stopped (and are started
        again at the end); those still running were not, and are stopped now, once."""
        ids = list(ctx.target("Instances").ids)
        states = _states(ctx, ids)
        done = [i for i in ids if states.get(i) in ("stopping", "stopped")]
        ctx.state["stopped"] = done
        if done:
            ctx.log(f"Instances {', '.join(done)} were already stopped by this action: not stopped again.")
        self._stop(ctx, [i for i in ids if states.get(i) in ("pending", "running")])
        return True

    def _stop(self, ctx: ActionContext, ids: list[str]) -> None:
        ec2 = ctx.client("ec2")
        for part in chunks(ids, 1000):
            with upstream_call("ec2 StopInstances"):
                ec2.stop_instances(InstanceIds=list(part))
            ctx.state.setdefault("stopped", []).extend(part)
        if ids:
            ctx.log(f"Stopped instances {', '.join(ids)}.")
        stopped: list[str] = ctx.state.get("stopped", [])
        states = _wait_for(ctx, stopped, {"stopped", "terminated"}, undoing=False)
        pending = [i for i in stopped if states.get(i) not in ("stopped", "terminated")]
        if pending and not ctx.cancelled.is_set():
            ctx.log(f"Instances not stopped yet: {', '.join(pending)}.")

    def stop(self, ctx: ActionContext) -> None:
        stopped: list[str] = ctx.state.get("stopped", [])
        if not stopped or "startInstancesAfterDuration" not in ctx.parameters or ctx.state.get("restarted"):
            return
        states = _wait_for(ctx, stopped, {"stopped", "terminated", "shutting-down"}, undoing=True)
        gone = [i for i in stopped if states.get(i, "terminated") in ("terminated", "shutting-down")]
        startable = [i for i in stopped if i not in gone]
        ec2 = ctx.client("ec2")
        for part in chunks(startable, 1000):
            with upstream_call("ec2 StartInstances"):
                ec2.start_instances(InstanceIds=list(part))
        ctx.state["restarted"] = True
        if startable:
            ctx.log(f"Started instances {', '.join(startable)} again.")
        if gone:
            if ctx.flag("completeIfInstancesTerminated"):
                ctx.log(f"Instances {', '.join(gone)} were terminated meanwhile; not started again.")
            else:
                raise Failure(
                    f"Instances {', '.join(gone)} were terminated while stopped and cannot be started "
                    "again (set completeIfInstancesTerminated to true to accept this).",
                    "InvalidTarget",
                )


@register("aws:ec2:reboot-instances")
class RebootInstances(Immediate):
    def start(self, ctx: ActionContext) -> None:
        ids = list(ctx.target("Instances").ids)
        ec2 = ctx.client("ec2")
        for part in chunks(ids, 1000):
            with upstream_call("ec2 RebootInstances"):
                ec2.reboot_instances(InstanceIds=list(part))
        ctx.log(f"Rebooted instances {', '.join(ids)}.")


@register("aws:ec2:terminate-instances")
class TerminateInstances(Immediate):
    def start(self, ctx: ActionContext) -> None:
        self._terminate(ctx, list(ctx.target("Instances").ids))

    def recover(self, ctx: ActionContext) -> bool:
        """Instances shutting down or terminated were terminated; the others are, now."""
        ids = list(ctx.target("Instances").ids)
        states = _states(ctx, ids)
        left = [i for i in ids if states.get(i, "terminated") not in ("shutting-down", "terminated")]
        if left:
            self._terminate(ctx, left)
        return True

    def _terminate(self, ctx: ActionContext, ids: list[str]) -> None:
        ec2 = ctx.client("ec2")
        for part in chunks(ids, 1000):
            with upstream_call("ec2 TerminateInstances"):
                ec2.terminate_instances(InstanceIds=list(part))
        ctx.log(f"Terminated instances {', '.join(ids)}.")


@register("aws:ec2:send-spot-instance-interruptions")
class SendSpotInstanceInterruptions:
    def start(self, ctx: ActionContext) -> None:
        target = ctx.target("SpotInstances")
        ctx.log(f"Spot Instances {', '.join(target.ids)} will be interrupted after "
                f"{ctx.parameters.get('durationBeforeInterruption')}.")

    def wait(self, ctx: ActionContext) -> None:
        while not ctx.cancelled.is_set() and (ctx.remaining() or 0) > 0:
            ctx.sleep(ctx.remaining() or 0)
        if ctx.cancelled.is_set():
            ctx.log("The experiment stopped before the interruption: no instance was interrupted.")
            return
        target = ctx.target("SpotInstances")
        by_behavior: dict[str, list[str]] = {}
        for r in target.resources:
            by_behavior.setdefault(self._behavior(ctx, r.details), []).append(r.id)
        ec2 = ctx.client("ec2")
        for behavior, ids in sorted(by_behavior.items()):
            if behavior in ("stop", "hibernate"):
                with upstream_call("ec2 StopInstances"):
                    ec2.stop_instances(InstanceIds=ids, Hibernate=behavior == "hibernate")
            else:
                with upstream_call("ec2 TerminateInstances"):
                    ec2.terminate_instances(InstanceIds=ids)
            ctx.log(f"Interrupted Spot Instances {', '.join(ids)} ({behavior}).")

    @staticmethod
    def _behavior(ctx: ActionContext, details: Any) -> str:
        """The interruption behavior of the instance's Spot request (terminate by default)."""
        request_id = details.get("SpotInstanceRequestId")
        kwargs: dict[str, Any] = (
            {"SpotInstanceRequestIds": [request_id]} if request_id
            else {"Filters": [{"Name": "instance-id", "Values": [details["InstanceId"]]}]}
        )
        with upstream_call("ec2 DescribeSpotInstanceRequests"):
            requests = ctx.client("ec2").describe_spot_instance_requests(**kwargs).get("SpotInstanceRequests", [])
        return str(requests[0].get("InstanceInterruptionBehavior", "terminate")) if requests else "terminate"

    def stop(self, ctx: ActionContext) -> None:
        return None
