"""ECS actions
(https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html#ecs-actions-reference).

- stop-task: StopTask on each target task, done.
- drain-container-instances: UpdateContainerInstancesState DRAINING on `drainagePercentage` of
  each target cluster's ACTIVE container instances (at least one, chosen at random), ACTIVE
  again at the end of `duration` or when the experiment stops.
"""

from __future__ import annotations

from fisproxy.fis.resources.base import (
    ActionContext,
    Immediate,
    chunks,
    register,
    share,
    upstream_call,
)


@register("aws:ecs:stop-task")
class StopTask(Immediate):
    def start(self, ctx: ActionContext) -> None:
        ecs = ctx.client("ecs")
        for task in ctx.target("Tasks").resources:
            cluster = task.details.get("clusterArn") or task.arn.split("/")[-2]
            with upstream_call(f"ecs StopTask of {task.arn}"):
                ecs.stop_task(cluster=cluster, task=task.arn, reason=f"Stopped by {ctx.who()}"[:255])
            ctx.log(f"Stopped task {task.arn}.")


@register("aws:ecs:drain-container-instances")
class DrainContainerInstances:
    def start(self, ctx: ActionContext) -> None:
        ecs = ctx.client("ecs")
        percentage = int(ctx.parameters["drainagePercentage"])
        drained: dict[str, list[str]] = ctx.state.setdefault("drained", {})
        for cluster in ctx.target("Clusters").arns:
            with upstream_call(f"ecs ListContainerInstances of {cluster}"):
                paginator = ecs.get_paginator("list_container_instances")
                active = [a for page in paginator.paginate(cluster=cluster, status="ACTIVE")
                          for a in page.get("containerInstanceArns", [])]
            chosen = share(active, percentage, ctx.rng)
            for part in chunks(chosen, 10):
                with upstream_call(f"ecs UpdateContainerInstancesState of {cluster}"):
                    ecs.update_container_instances_state(cluster=cluster, containerInstances=list(part),
                                                         status="DRAINING")
                drained.setdefault(cluster, []).extend(part)
            ctx.log(f"Draining {len(chosen)} of {len(active)} container instances of {cluster}.")

    def stop(self, ctx: ActionContext) -> None:
        ecs = ctx.client("ecs")
        drained: dict[str, list[str]] = ctx.state.get("drained", {})
        for cluster, arns in list(drained.items()):
            for part in chunks(arns, 10):
                with upstream_call(f"ecs UpdateContainerInstancesState of {cluster}"):
                    ecs.update_container_instances_state(cluster=cluster, containerInstances=list(part),
                                                         status="ACTIVE")
            ctx.log(f"Container instances of {cluster} are ACTIVE again.")
            del drained[cluster]
