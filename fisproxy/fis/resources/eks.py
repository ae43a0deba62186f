"""EKS actions
(https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html#eks-actions-reference).

terminate-nodegroup-instances: TerminateInstances on `instanceTerminationPercentage` of each
target managed node group's pending or running instances (at least one, chosen at random).
EKS tags the instances of a managed node group with `eks:cluster-name` and
`eks:nodegroup-name`; that is how they are found.
"""

from __future__ import annotations

from fisproxy.fis.resources.base import ActionContext, Immediate, register, share, upstream_call


@register("aws:eks:terminate-nodegroup-instances")
class TerminateNodegroupInstances(Immediate):
    def start(self, ctx: ActionContext) -> None:
        ec2 = ctx.client("ec2")
        percentage = int(ctx.parameters["instanceTerminationPercentage"])
        for ng in ctx.target("Nodegroups").resources:
            cluster = ng.details.get("clusterName") or ng.arn.split("/")[-3]
            filters = [
                {"Name": "tag:eks:cluster-name", "Values": [cluster]},
                {"Name": "tag:eks:nodegroup-name", "Values": [ng.id]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
            with upstream_call(f"ec2 DescribeInstances of node group {ng.id}"):
                pages = ec2.get_paginator("describe_instances").paginate(Filters=filters)
                ids = sorted(i["InstanceId"] for p in pages for r in p["Reservations"] for i in r["Instances"])
            chosen = share(ids, percentage, ctx.rng)
            if not chosen:
                ctx.log(f"Node group {ng.id} of {cluster} has no running instances.")
                continue
            with upstream_call(f"ec2 TerminateInstances in node group {ng.id}"):
                ec2.terminate_instances(InstanceIds=chosen)
            ctx.log(f"Terminated {', '.join(chosen)} of node group {ng.id} ({len(chosen)} of {len(ids)}).")
