"""How each resource type is listed on the upstream: the API AWS's targets documentation names
for it (https://docs.aws.amazon.com/fis/latest/userguide/targets.html), paginated.

A lister yields `Found`: the resource's ARN, its id in its service, its description (the item
filters are applied to) and its tags when the listing carries them (else `TypeSpec.tags` fetches
them, only when the target selects by tags). Listers narrow on the server where the API allows
(EC2 tag and id filters, an ECS target's cluster and service); `resolve.py` applies the rest:
ARNs, tags, filters and the selection mode. Type parameters that select resources
(availabilityZoneIdentifier, vpc, writerAvailabilityZoneIdentifiers, ...) are applied here,
where the item's shape is known.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from fisproxy.fis.resources.targets import jsonable


class Unlistable(Exception):
    """A resource type fisproxy cannot list (not an upstream failure): `reason` says why."""

    def __init__(self, reason: str, code: str = "ConfigurationFailure") -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


@dataclass(frozen=True, slots=True)
class Found:
    arn: str
    id: str
    details: Mapping[str, Any]
    tags: Mapping[str, str] | None = None  # None: not in the listing (TypeSpec.tags has them)


@dataclass
class Lookup:
    """One target's listing: the role's clients, the experiment's region, and what the target
    asks for (listers may use `arns`, `tags` and `parameters` to narrow server-side)."""

    clients: Any  # fisproxy.fis.resources.base.Clients
    region: str
    arns: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    parameters: Mapping[str, str] = field(default_factory=dict)

    def client(self, service: str, region: str | None = None) -> Any:
        return self.clients.client(service, region or self.region)

    @property
    def account(self) -> str:
        return str(self.clients.account_id)

    @property
    def partition(self) -> str:
        return str(getattr(self.clients, "partition", "aws"))

    def arn(self, service: str, resource: str, region: str | None = None) -> str:
        return f"arn:{self.partition}:{service}:{self.region if region is None else region}:{self.account}:{resource}"


Lister = Callable[[Lookup], Iterable[Found]]
TagFetcher = Callable[[Lookup, Found], Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class TypeSpec:
    """How one resource type is listed. `api` names the call, for error messages."""

    api: str
    list: Lister
    tags: TagFetcher | None = None


def tag_map(raw: Any) -> dict[str, str]:
    """Tags in any of AWS's shapes: [{Key, Value}], [{key, value}], or a plain mapping."""
    if isinstance(raw, Mapping):
        return {str(k): str(v) for k, v in raw.items()}
    out = {}
    for t in raw or []:
        key = t.get("Key", t.get("key"))
        if key is not None:
            out[str(key)] = str(t.get("Value", t.get("value", "")))
    return out


def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    if client.can_paginate(operation):
        for page in client.get_paginator(operation).paginate(**kwargs):
            yield from page.get(key, [])
    else:
        yield from getattr(client, operation)(**kwargs).get(key, [])


def _ids_from_arns(arns: Sequence[str], marker: str) -> list[str]:
    # `arn:...:instance/i-1` -> `i-1` for the resources of one kind.
    return [a.rsplit(marker, 1)[1] for a in arns if marker in a]


def _azs(value: str | None) -> set[str] | None:
    if not value or value.strip().lower() == "all":
        return None
    return {v.strip() for v in value.split(",") if v.strip()}


# ---- EC2 --------------------------------------------------------------------------------

def _ec2_filters(q: Lookup, id_filter: str, marker: str) -> list[dict[str, Any]]:
    filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in q.tags.items()]
    ids = _ids_from_arns(q.arns, marker)
    if ids:
        filters.append({"Name": id_filter, "Values": ids})
    return filters


def _instances(q: Lookup, spot: bool) -> Iterator[Found]:
    ec2 = q.client("ec2")
    kwargs = {"Filters": _ec2_filters(q, "instance-id", ":instance/")}
    for reservation in _pages(ec2, "describe_instances", "Reservations", **kwargs):
        owner = reservation.get("OwnerId") or q.account
        for inst in reservation.get("Instances", []):
            # Spot instances are told apart here: moto fails on the instance-lifecycle filter.
            if spot and inst.get("InstanceLifecycle") != "spot":
                continue
            arn = f"arn:{q.partition}:ec2:{q.region}:{owner}:instance/{inst['InstanceId']}"
            yield Found(arn, inst["InstanceId"], jsonable(inst), tag_map(inst.get("Tags")))


def _subnets(q: Lookup) -> Iterator[Found]:
    az = q.parameters.get("availabilityZoneIdentifier")
    vpc = q.parameters.get("vpc")
    for s in _pages(q.client("ec2"), "describe_subnets", "Subnets", Filters=_ec2_filters(q, "subnet-id", ":subnet/")):
        if az and az not in (s.get("AvailabilityZone"), s.get("AvailabilityZoneId")):
            continue
        if vpc and s.get("VpcId") != vpc:
            continue
        arn = s.get("SubnetArn") or q.arn("ec2", f"subnet/{s['SubnetId']}")
        yield Found(arn, s["SubnetId"], jsonable(s), tag_map(s.get("Tags")))


def _volumes(q: Lookup) -> Iterator[Found]:
    az = q.parameters.get("availabilityZoneIdentifier")
    for v in _pages(q.client("ec2"), "describe_volumes", "Volumes", Filters=_ec2_filters(q, "volume-id", ":volume/")):
        if az and v.get("AvailabilityZone") != az:
            continue
        yield Found(q.arn("ec2", f"volume/{v['VolumeId']}"), v["VolumeId"], jsonable(v), tag_map(v.get("Tags")))


def _transit_gateways(q: Lookup) -> Iterator[Found]:
    ec2 = q.client("ec2")
    for t in _pages(ec2, "describe_transit_gateways", "TransitGateways",
                    Filters=[{"Name": f"tag:{k}", "Values": [v]} for k, v in q.tags.items()]):
        arn = t.get("TransitGatewayArn") or q.arn("ec2", f"transit-gateway/{t['TransitGatewayId']}")
        yield Found(arn, t["TransitGatewayId"], jsonable(t), tag_map(t.get("Tags")))


def _vpc_endpoints(q: Lookup) -> Iterator[Found]:
    for e in _pages(q.client("ec2"), "describe_vpc_endpoints", "VpcEndpoints",
                    Filters=_ec2_filters(q, "vpc-endpoint-id", ":vpc-endpoint/")):
        eid = e["VpcEndpointId"]
        yield Found(q.arn("ec2", f"vpc-endpoint/{eid}"), eid, jsonable(e), tag_map(e.get("Tags")))


def _autoscaling_groups(q: Lookup) -> Iterator[Found]:
    for g in _pages(q.client("autoscaling"), "describe_auto_scaling_groups", "AutoScalingGroups"):
        yield Found(g["AutoScalingGroupARN"], g["AutoScalingGroupName"], jsonable(g), tag_map(g.get("Tags")))


# ---- containers -------------------------------------------------------------------------

def _ecs_clusters(q: Lookup) -> Iterator[Found]:
    ecs = q.client("ecs")
    arns = list(_pages(ecs, "list_clusters", "clusterArns"))
    for i in range(0, len(arns), 100):
        for c in ecs.describe_clusters(clusters=arns[i:i + 100], include=["TAGS"]).get("clusters", []):
            yield Found(c["clusterArn"], c["clusterName"], jsonable(c), tag_map(c.get("tags")))


def _ecs_tasks(q: Lookup) -> Iterator[Found]:
    ecs = q.client("ecs")
    cluster = q.parameters.get("cluster")
    service = q.parameters.get("service")
    clusters = [cluster] if cluster else list(_pages(ecs, "list_clusters", "clusterArns"))
    for c in clusters:
        kwargs: dict[str, Any] = {"cluster": c}
        if service:
            kwargs["serviceName"] = service
        arns = list(_pages(ecs, "list_tasks", "taskArns", **kwargs))
        for i in range(0, len(arns), 100):
            for t in ecs.describe_tasks(cluster=c, tasks=arns[i:i + 100], include=["TAGS"]).get("tasks", []):
                yield Found(t["taskArn"], t["taskArn"].rsplit("/", 1)[-1], jsonable(t), tag_map(t.get("tags")))


def _eks_clusters(q: Lookup) -> Iterator[Found]:
    eks = q.client("eks")
    for name in _pages(eks, "list_clusters", "clusters"):
        c = eks.describe_cluster(name=name)["cluster"]
        yield Found(c["arn"], c["name"], jsonable(c), tag_map(c.get("tags")))


def _eks_nodegroups(q: Lookup) -> Iterator[Found]:
    eks = q.client("eks")
    for cluster in _pages(eks, "list_clusters", "clusters"):
        for ng in _pages(eks, "list_nodegroups", "nodegroups", clusterName=cluster):
            n = eks.describe_nodegroup(clusterName=cluster, nodegroupName=ng)["nodegroup"]
            yield Found(n["nodegroupArn"], n["nodegroupName"], jsonable(n), tag_map(n.get("tags")))


def _eks_pods(q: Lookup) -> Iterator[Found]:
    raise Unlistable(
        "aws:eks:pod targets are pods found through the cluster's Kubernetes API, which "
        "fisproxy cannot reach (it sees only AWS API traffic)"
    )


# ---- databases and caches ---------------------------------------------------------------

def _rds_instances(q: Lookup) -> Iterator[Found]:
    azs = _azs(q.parameters.get("availabilityZoneIdentifiers"))
    for d in _pages(q.client("rds"), "describe_db_instances", "DBInstances"):
        if azs is not None and d.get("AvailabilityZone") not in azs:
            continue
        yield Found(d["DBInstanceArn"], d["DBInstanceIdentifier"], jsonable(d), tag_map(d.get("TagList")))


def _rds_clusters(q: Lookup) -> Iterator[Found]:
    rds = q.client("rds")
    azs = _azs(q.parameters.get("writerAvailabilityZoneIdentifiers"))
    writer_az: dict[str, str] = {}
    if azs is not None:
        writer_az = {d["DBInstanceIdentifier"]: d.get("AvailabilityZone", "")
                     for d in _pages(rds, "describe_db_instances", "DBInstances")}
    for c in _pages(rds, "describe_db_clusters", "DBClusters"):
        if azs is not None:
            writers = [m["DBInstanceIdentifier"] for m in c.get("DBClusterMembers", []) if m.get("IsClusterWriter")]
            if not any(writer_az.get(w) in azs for w in writers):
                continue
        yield Found(c["DBClusterArn"], c["DBClusterIdentifier"], jsonable(c), tag_map(c.get("TagList")))


def _dynamodb_tables(q: Lookup) -> Iterator[Found]:
    ddb = q.client("dynamodb")
    for name in _pages(ddb, "list_tables", "TableNames"):
        t = ddb.describe_table(TableName=name)["Table"]
        yield Found(t["TableArn"], t["TableName"], jsonable(t))


def _dynamodb_tags(q: Lookup, f: Found) -> Mapping[str, str]:
    return tag_map(q.client("dynamodb").list_tags_of_resource(ResourceArn=f.arn).get("Tags"))


def _replication_groups(q: Lookup) -> Iterator[Found]:
    az = q.parameters.get("availabilityZoneIdentifier")
    for g in _pages(q.client("elasticache"), "describe_replication_groups", "ReplicationGroups"):
        members = [m for ng in g.get("NodeGroups", []) for m in ng.get("NodeGroupMembers", [])]
        zones = {m.get("PreferredAvailabilityZone") for m in members} - {None}
        # Groups with no node in the zone have nothing to interrupt (when the upstream says
        # where the nodes are; a zone ID such as use1-az1 is compared by the action).
        if az and zones and "-az" not in az and az not in zones:
            continue
        arn = g.get("ARN") or q.arn("elasticache", f"replicationgroup:{g['ReplicationGroupId']}")
        yield Found(arn, g["ReplicationGroupId"], jsonable(g))


def _elasticache_tags(q: Lookup, f: Found) -> Mapping[str, str]:
    return tag_map(q.client("elasticache").list_tags_for_resource(ResourceName=f.arn).get("TagList"))


def _memorydb_clusters(q: Lookup) -> Iterator[Found]:
    for c in _pages(q.client("memorydb"), "describe_multi_region_clusters", "MultiRegionClusters"):
        yield Found(c["ARN"], c["MultiRegionClusterName"], jsonable(c))


def _memorydb_tags(q: Lookup, f: Found) -> Mapping[str, str]:
    return tag_map(q.client("memorydb").list_tags(ResourceArn=f.arn).get("TagList"))


def _dsql_clusters(q: Lookup) -> Iterator[Found]:
    dsql = q.client("dsql")
    for c in _pages(dsql, "list_clusters", "clusters"):
        detail = dsql.get_cluster(identifier=c["identifier"])
        yield Found(detail["arn"], detail["identifier"], jsonable(detail), tag_map(detail.get("tags")))


# ---- streams, functions, buckets, roles -------------------------------------------------

def _lambda_functions(q: Lookup) -> Iterator[Found]:
    for fn in _pages(q.client("lambda"), "list_functions", "Functions"):
        yield Found(fn["FunctionArn"], fn["FunctionName"], jsonable(fn))


def _lambda_tags(q: Lookup, f: Found) -> Mapping[str, str]:
    return tag_map(q.client("lambda").list_tags(Resource=f.arn).get("Tags"))


def _kinesis_streams(q: Lookup) -> Iterator[Found]:
    kinesis = q.client("kinesis")
    for s in _pages(kinesis, "list_streams", "StreamSummaries"):
        summary = kinesis.describe_stream_summary(StreamARN=s["StreamARN"])["StreamDescriptionSummary"]
        yield Found(s["StreamARN"], s["StreamName"], jsonable(summary))


def _kinesis_tags(q: Lookup, f: Found) -> Mapping[str, str]:
    return tag_map(q.client("kinesis").list_tags_for_stream(StreamName=f.id).get("Tags"))


def _buckets(q: Lookup) -> Iterator[Found]:
    for b in _pages(q.client("s3"), "list_buckets", "Buckets"):
        yield Found(f"arn:{q.partition}:s3:::{b['Name']}", b["Name"], jsonable(b))


def _bucket_tags(q: Lookup, f: Found) -> Mapping[str, str]:
    try:
        return tag_map(q.client("s3").get_bucket_tagging(Bucket=f.id).get("TagSet"))
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "NoSuchTagSet":
            return {}
        raise


def _iam_roles(q: Lookup) -> Iterator[Found]:
    for r in _pages(q.client("iam", "us-east-1"), "list_roles", "Roles"):
        yield Found(r["Arn"], r["RoleName"], jsonable(r))


def _iam_role_tags(q: Lookup, f: Found) -> Mapping[str, str]:
    return tag_map(q.client("iam", "us-east-1").list_role_tags(RoleName=f.id).get("Tags"))


def _managed_resources(q: Lookup) -> Iterator[Found]:
    for r in _pages(q.client("arc-zonal-shift"), "list_managed_resources", "items"):
        yield Found(r["arn"], r.get("name") or r["arn"], jsonable(r))


def _tagging_api_tags(q: Lookup, f: Found) -> Mapping[str, str]:
    mappings = q.client("resourcegroupstaggingapi").get_resources(ResourceARNList=[f.arn])
    for m in mappings.get("ResourceTagMappingList", []):
        return tag_map(m.get("Tags"))
    return {}


def _virtual_interfaces(q: Lookup) -> Iterator[Found]:
    for v in q.client("directconnect").describe_virtual_interfaces().get("virtualInterfaces", []):
        vid = v["virtualInterfaceId"]
        yield Found(q.arn("directconnect", f"dxvif/{vid}"), vid, jsonable(v), tag_map(v.get("tags")))


TYPES: Mapping[str, TypeSpec] = {
    "aws:ec2:instance": TypeSpec("ec2 DescribeInstances", lambda q: _instances(q, spot=False)),
    "aws:ec2:spot-instance": TypeSpec("ec2 DescribeInstances", lambda q: _instances(q, spot=True)),
    "aws:ec2:subnet": TypeSpec("ec2 DescribeSubnets", _subnets),
    "aws:ec2:ebs-volume": TypeSpec("ec2 DescribeVolumes", _volumes),
    "aws:ec2:transit-gateway": TypeSpec("ec2 DescribeTransitGateways", _transit_gateways),
    "aws:ec2:vpc-endpoint": TypeSpec("ec2 DescribeVpcEndpoints", _vpc_endpoints),
    "aws:ec2:autoscaling-group": TypeSpec("autoscaling DescribeAutoScalingGroups", _autoscaling_groups),
    "aws:ecs:cluster": TypeSpec("ecs ListClusters/DescribeClusters", _ecs_clusters),
    "aws:ecs:task": TypeSpec("ecs ListTasks/DescribeTasks", _ecs_tasks),
    "aws:eks:cluster": TypeSpec("eks ListClusters/DescribeCluster", _eks_clusters),
    "aws:eks:nodegroup": TypeSpec("eks ListNodegroups/DescribeNodegroup", _eks_nodegroups),
    "aws:eks:pod": TypeSpec("the Kubernetes API", _eks_pods),
    "aws:rds:db": TypeSpec("rds DescribeDBInstances", _rds_instances),
    "aws:rds:cluster": TypeSpec("rds DescribeDBClusters", _rds_clusters),
    "aws:dynamodb:global-table": TypeSpec("dynamodb ListTables/DescribeTable", _dynamodb_tables, _dynamodb_tags),
    "aws:elasticache:replicationgroup": TypeSpec(
        "elasticache DescribeReplicationGroups", _replication_groups, _elasticache_tags),
    "aws:elasticache:redis-replicationgroup": TypeSpec(
        "elasticache DescribeReplicationGroups", _replication_groups, _elasticache_tags),
    "aws:memorydb:multi-region-cluster": TypeSpec(
        "memorydb DescribeMultiRegionClusters", _memorydb_clusters, _memorydb_tags),
    "aws:dsql:cluster": TypeSpec("dsql ListClusters/GetCluster", _dsql_clusters),
    "aws:lambda:function": TypeSpec("lambda ListFunctions", _lambda_functions, _lambda_tags),
    "aws:kinesis:stream": TypeSpec("kinesis ListStreams/DescribeStreamSummary", _kinesis_streams, _kinesis_tags),
    "aws:s3:bucket": TypeSpec("s3 ListBuckets", _buckets, _bucket_tags),
    "aws:iam:role": TypeSpec("iam ListRoles", _iam_roles, _iam_role_tags),
    "aws:arc:zonal-shift-managed-resource": TypeSpec(
        "arc-zonal-shift ListManagedResources", _managed_resources, _tagging_api_tags),
    "aws:directconnect:virtual-interface": TypeSpec(
        "directconnect DescribeVirtualInterfaces", _virtual_interfaces),
}
