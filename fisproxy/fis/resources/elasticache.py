"""aws:elasticache:replicationgroup-interrupt-az-power (and its former name
interrupt-cluster-az-power): a node group whose primary is in the target Availability Zone fails
over to a replica, with ElastiCache's public TestFailover API. AWS FIS cuts the nodes' power
through an API it does not publish (elasticache:InterruptClusterAzPower) and also blocks
replica replacement in the zone for the duration; TestFailover is the part of that effect an
upstream's public API can give. Nothing to undo: the replica stays primary, as after a real
power loss.
"""

from __future__ import annotations

from typing import Any

from fisproxy.fis.failure import Failure
from fisproxy.fis.resources.base import (
    ActionContext,
    Immediate,
    register,
    upstream_call,
)


def _zone_names(ctx: ActionContext, zone: str) -> set[str]:
    """The zone's name(s): a name as given, a zone ID (use1-az1) mapped to its name."""
    if "-az" not in zone:
        return {zone}
    with upstream_call("ec2 DescribeAvailabilityZones"):
        zones = ctx.client("ec2").describe_availability_zones(ZoneIds=[zone])["AvailabilityZones"]
    return {z["ZoneName"] for z in zones}


@register("aws:elasticache:replicationgroup-interrupt-az-power", "aws:elasticache:interrupt-cluster-az-power")
class InterruptAzPower(Immediate):
    def start(self, ctx: ActionContext) -> None:
        target = ctx.target("ReplicationGroups")
        zone = target.parameters.get("availabilityZoneIdentifier")
        if not zone:
            raise Failure(f'Target "{target.name}" needs the parameter availabilityZoneIdentifier.',
                              "ConfigurationFailure")
        names = _zone_names(ctx, zone)
        ec = ctx.client("elasticache")
        for group in target.resources:
            for ng in self._node_groups(ctx, group.id):
                primary = [m for m in ng.get("NodeGroupMembers", []) if m.get("CurrentRole") == "primary"]
                if not primary or primary[0].get("PreferredAvailabilityZone") not in names:
                    continue
                with upstream_call(f"elasticache TestFailover of {group.id}/{ng['NodeGroupId']}"):
                    ec.test_failover(ReplicationGroupId=group.id, NodeGroupId=ng["NodeGroupId"])
                ctx.log(f"Power interrupted in {zone}: primary of {group.id}/{ng['NodeGroupId']} fails over.")

    @staticmethod
    def _node_groups(ctx: ActionContext, group_id: str) -> list[dict[str, Any]]:
        with upstream_call(f"elasticache DescribeReplicationGroups of {group_id}"):
            groups = ctx.client("elasticache").describe_replication_groups(
                ReplicationGroupId=group_id)["ReplicationGroups"]
        return list(groups[0].get("NodeGroups", [])) if groups else []
