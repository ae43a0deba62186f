"""RDS actions: one RDS API call per target, done when it returns
(https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html#rds-actions-reference)."""

from __future__ import annotations

from fisproxy.fis.resources.base import ActionContext, Immediate, register, upstream_call


@register("aws:rds:reboot-db-instances")
class RebootDbInstances(Immediate):
    """RebootDBInstance on each target; `forceFailover` true fails Multi-AZ instances over."""

    def start(self, ctx: ActionContext) -> None:
        rds = ctx.client("rds")
        force = ctx.flag("forceFailover")
        for name in ctx.target("DBInstances").ids:
            with upstream_call(f"rds RebootDBInstance of {name}"):
                rds.reboot_db_instance(DBInstanceIdentifier=name, ForceFailover=force)
            ctx.log(f"Rebooted DB instance {name}{' with failover' if force else ''}.")


@register("aws:rds:failover-db-cluster")
class FailoverDbCluster(Immediate):
    """FailoverDBCluster on each target cluster."""

    def start(self, ctx: ActionContext) -> None:
        rds = ctx.client("rds")
        for name in ctx.target("Clusters").ids:
            with upstream_call(f"rds FailoverDBCluster of {name}"):
                rds.failover_db_cluster(DBClusterIdentifier=name)
            ctx.log(f"Failed over DB cluster {name}.")
