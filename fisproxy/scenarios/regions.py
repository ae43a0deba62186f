"""Cross-Region: Connectivity, as AWS publishes it
(https://docs.aws.amazon.com/fis/latest/userguide/cross-region-scenario.html): from the experiment's
Region, traffic to the destination `region` is blocked (transit gateways, subnets' routes, VPC
endpoints) and replication to it paused (S3, DynamoDB global tables, MemoryDB multi-Region
clusters), in parallel, for `duration` (3 hours). Targets by tag: the content's own defaults
(`TgwTag`/`SubnetKey` placeholders, `DisruptPrivateLink`, `S3Impact`, `DisruptDynamoDb`,
`DisruptMemoryDb`); `tags` replaces them all with one Key=Value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fisproxy.scenarios.library import Param, Template, duration, region, scenario, tag, tagged


@scenario(
    "cross-region-connectivity", "Cross-Region: Connectivity",
    "traffic from the experiment's Region to another blocked, cross-Region replication paused",
    "https://docs.aws.amazon.com/fis/latest/userguide/cross-region-scenario.html",
    {
        "region": Param("eu-west-1", "the destination Region to isolate", region),
        "duration": Param("PT3H", "how long (up to 12 hours)", duration),
        "tags": Param(None, "one Key=Value every target is found by, in place of the defaults", tag),
    },
)
def cross_region_connectivity(v: Mapping[str, str]) -> Template:
    dest, dur = v["region"], v["duration"]

    def by_tag(resource_type: str, key: str, value: str, **extra: Any) -> dict[str, Any]:
        return {"resourceType": resource_type, "resourceTags": tagged(v, key, value), "selectionMode": "ALL", **extra}

    return {
        "targets": {
            "Transit-Gateway": by_tag("aws:ec2:transit-gateway", "TgwTag", "TgwValue"),
            "Subnet": by_tag("aws:ec2:subnet", "SubnetKey", "SubnetValue", parameters={}),
            "VPC-Endpoint": by_tag("aws:ec2:vpc-endpoint", "DisruptPrivateLink", "Allowed"),
            "S3-Bucket": by_tag("aws:s3:bucket", "S3Impact", "Allowed"),
            "DynamoDB-Global-Table": by_tag("aws:dynamodb:global-table", "DisruptDynamoDb", "Allowed"),
            "MemoryDB-Multi-Region-Cluster": by_tag("aws:memorydb:multi-region-cluster", "DisruptMemoryDb", "Allowed"),
        },
        "actions": {
            "Disrupt-Transit-Gateway-Connectivity": {
                "actionId": "aws:network:transit-gateway-disrupt-cross-region-connectivity",
                "parameters": {"duration": dur, "region": dest}, "targets": {"TransitGateways": "Transit-Gateway"}},
            "Disrupt-Subnet-Connectivity": {
                "actionId": "aws:network:route-table-disrupt-cross-region-connectivity",
                "parameters": {"duration": dur, "region": dest}, "targets": {"Subnets": "Subnet"}},
            "Disrupt-Vpc-Endpoint": {
                "actionId": "aws:network:disrupt-vpc-endpoint",
                "parameters": {"duration": dur}, "targets": {"VPCEndpoints": "VPC-Endpoint"}},
            "Pause-S3-Replication": {
                "actionId": "aws:s3:bucket-pause-replication",
                "parameters": {"duration": dur, "region": dest}, "targets": {"Buckets": "S3-Bucket"}},
            "Pause-DynamoDB-Replication": {
                "actionId": "aws:dynamodb:global-table-pause-replication",
                "parameters": {"duration": dur}, "targets": {"Tables": "DynamoDB-Global-Table"}},
            "Pause-MemoryDB-Multi-Region-Cluster-Replication": {
                "actionId": "aws:memorydb:multi-region-cluster-pause-replication",
                "parameters": {"duration": dur, "region": dest},
                "targets": {"MultiRegionClusters": "MemoryDB-Multi-Region-Cluster"}},
        },
        "tags": {"Name": "Cross-Region: Connectivity"},
        "description": "Block application network traffic from experiment Region to target Region and "
                       "pause cross-Region replication",
    }
