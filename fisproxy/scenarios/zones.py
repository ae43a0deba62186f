"""The scenarios of one Availability Zone: AZ Availability: Power Interruption, AZ: Application
Slowdown, Cross-AZ: Traffic Slowdown.

Power Interruption follows AWS's page
(https://docs.aws.amazon.com/fis/latest/userguide/az-availability-scenario.html) and the content
its console publishes: targets by the tag `AzImpairmentPower` (one value per kind of resource),
the zone in the targets' filters and parameters; the power is out for `duration` (30 minutes),
then `recoveryDuration` (30 more) brings what may happen during recovery. Its actions:

- Stop-Instances, Stop-ASG-Instances: the zone's instances stop, and start again after `duration`.
- Pause-Instance-Launches (only with `roles`: the IAM roles whose launches to fault; AWS's
  content leaves it empty, which FIS refuses) and Pause-ASG-Scaling: launches in the zone get
  InsufficientInstanceCapacity through outage and recovery.
- Pause-network-connectivity: the zone's subnets lose all connectivity for the first
  `networkDuration` (2 minutes: timeouts, DNS refreshes).
- Failover-RDS, Pause-ElastiCache: Aurora clusters whose writer, ElastiCache groups whose primary
  is in the zone fail over.
- Pause-EBS-IO: one volume of the zone stops serving I/O once the instances are back (recovery).
- Disrupt-S3-Express-One-Zone: the zone's subnets lose S3 Express One Zone while the power is out.
- Start-ARC-Zonal-Autoshift: after `autoshiftDelay` (5 minutes, what AWS's page describes: an
  `aws:fis:wait` here), traffic of autoshift-enabled resources shifts away for the rest of the
  outage.

The two slowdown scenarios are AWS's published content as is
(az-application-slowdown-scenario.html, cross-az-traffic-slowdown-scenario.html), for a zone;
their EKS action needs a cluster (`eksCluster`), else it is left out, as AWS's page says to do.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fisproxy.scenarios.library import (
    Param,
    Template,
    arns,
    duration,
    iso,
    percent,
    scenario,
    seconds,
    tag,
    tagged,
    whole,
    zone,
    zone_id,
    zones,
)

DOCS = "https://docs.aws.amazon.com/fis/latest/userguide/"
POWER_TAG = "AzImpairmentPower"


@scenario(
    "az-power-interruption", "AZ Availability: Power Interruption",
    "the expected symptoms of a complete power interruption in one Availability Zone",
    DOCS + "az-availability-scenario.html",
    {
        "zone": Param("us-east-1a", "the Availability Zone whose power goes out", zone),
        "zoneId": Param(None, "its zone ID (use1-az1), for the launch faults; default: the zone's name", zone_id),
        "duration": Param("PT30M", "how long the power is out", duration),
        "recoveryDuration": Param("PT30M", "how long recovery symptoms last after it", duration),
        "networkDuration": Param("PT2M", "how long the zone's subnets lose all connectivity", duration),
        "autoshiftDelay": Param("PT5M", "when, in the outage, ARC zonal autoshift starts", duration),
        "roles": Param(None, "IAM role ARNs whose instance launches to fault, comma-separated", arns),
        "tagKey": Param(None, f"the tag key of every target, in place of {POWER_TAG}"),
        "tags": Param(None, "one Key=Value every target is found by, in place of the defaults", tag),
    },
)
def az_power_interruption(v: Mapping[str, str]) -> Template:
    az = v["zone"]
    ice_zone = v.get("zoneId", az)
    outage, recovery = v["duration"], v["recoveryDuration"]
    launches = iso(seconds(outage) + seconds(recovery))
    in_zone = {"path": "Placement.AvailabilityZone", "values": [az]}
    running = {"path": "State.Name", "values": ["running"]}

    def by_tag(resource_type: str, value: str, **extra: Any) -> dict[str, Any]:
        return {"resourceType": resource_type, "resourceTags": tagged(v, POWER_TAG, value),
                "selectionMode": extra.pop("selectionMode", "ALL"), **extra}

    targets: dict[str, Any] = {
        "EBS-Volumes": by_tag("aws:ec2:ebs-volume", "ApiPauseVolume", selectionMode="COUNT(1)",
                              parameters={"availabilityZoneIdentifier": az},
                              filters=[{"path": "Attachments.DeleteOnTermination", "values": ["false"]}]),
        "EC2-Instances": by_tag("aws:ec2:instance", "StopInstances", filters=[running, in_zone]),
        "ASG": by_tag("aws:ec2:autoscaling-group", "IceAsg"),
        "ASG-EC2-Instances": by_tag("aws:ec2:instance", "IceAsg", filters=[running, in_zone]),
        "Subnet": by_tag("aws:ec2:subnet", "DisruptSubnet",
                         filters=[{"path": "AvailabilityZone", "values": [az]}], parameters={}),
        "RDS-Cluster": by_tag("aws:rds:cluster", "DisruptRds",
                              parameters={"writerAvailabilityZoneIdentifiers": az}),
        "ElastiCache-Cluster": by_tag("aws:elasticache:replicationgroup", "ElasticacheImpact",
                                      parameters={"availabilityZoneIdentifier": az}),
        "ZonalShift-Managed-Resources": by_tag("aws:arc:zonal-shift-managed-resource",
                                               "RecoverAutoshiftResources"),
    }
    stop = {"completeIfInstancesTerminated": "true", "startInstancesAfterDuration": outage}
    actions: dict[str, Any] = {
        "Pause-EBS-IO": {"actionId": "aws:ebs:pause-volume-io", "parameters": {"duration": recovery},
                         "targets": {"Volumes": "EBS-Volumes"},
                         "startAfter": ["Stop-Instances", "Stop-ASG-Instances"]},
        "Stop-Instances": {"actionId": "aws:ec2:stop-instances", "parameters": dict(stop),
                           "targets": {"Instances": "EC2-Instances"}},
        "Pause-ASG-Scaling": {"actionId": "aws:ec2:asg-insufficient-instance-capacity-error",
                              "parameters": {"availabilityZoneIdentifiers": ice_zone, "duration": launches,
                                             "percentage": "100"},
                              "targets": {"AutoScalingGroups": "ASG"}},
        "Stop-ASG-Instances": {"actionId": "aws:ec2:stop-instances", "parameters": dict(stop),
                               "targets": {"Instances": "ASG-EC2-Instances"}},
        "Pause-network-connectivity": {"actionId": "aws:network:disrupt-connectivity",
                                       "parameters": {"duration": v["networkDuration"], "scope": "all"},
                                       "targets": {"Subnets": "Subnet"}},
        "Failover-RDS": {"actionId": "aws:rds:failover-db-cluster", "parameters": {},
                         "targets": {"Clusters": "RDS-Cluster"}},
        "Pause-ElastiCache": {"actionId": "aws:elasticache:replicationgroup-interrupt-az-power",
                              "parameters": {"duration": outage},
                              "targets": {"ReplicationGroups": "ElastiCache-Cluster"}},
        "Disrupt-S3-Express-One-Zone": {"actionId": "aws:network:disrupt-connectivity",
                                        "parameters": {"duration": outage, "scope": "s3express"},
                                        "targets": {"Subnets": "Subnet"}},
        "Wait-Before-Autoshift": {"actionId": "aws:fis:wait", "parameters": {"duration": v["autoshiftDelay"]}},
        "Start-ARC-Zonal-Autoshift": {
            "actionId": "aws:arc:start-zonal-autoshift",
            "parameters": {"availabilityZoneIdentifier": az,
                           "duration": iso(max(1.0, seconds(outage) - seconds(v["autoshiftDelay"]))),
                           "zonalAutoshiftStatus": "ENABLED"},
            "targets": {"ManagedResources": "ZonalShift-Managed-Resources"},
            "startAfter": ["Wait-Before-Autoshift"]},
    }
    if "roles" in v:
        targets["IAM-role"] = {"resourceType": "aws:iam:role", "resourceArns": v["roles"].split(","),
                               "selectionMode": "ALL"}
        actions["Pause-Instance-Launches"] = {
            "actionId": "aws:ec2:api-insufficient-instance-capacity-error",
            "parameters": {"availabilityZoneIdentifiers": ice_zone, "duration": launches, "percentage": "100"},
            "targets": {"Roles": "IAM-role"}}
    return {
        "tags": {"Name": "AZ Impairment: Power Interruption"},
        "description": "Affect multiple resource types in a single AZ, targeting by tags and explicit "
                       "ARNs, to approximate power interruption in one zone.",
        "targets": targets, "actions": actions,
    }


def _other_zones(v: Mapping[str, str]) -> str:
    """The Region's zones but the impaired one: `zones`, or those AWS's content names for
    us-east-1 (a to f), or a to c elsewhere."""
    az = v["zone"]
    region = az[:-1]
    listed = v.get("zones") or ",".join(region + c for c in ("abcdef" if region == "us-east-1" else "abc"))
    return ",".join(z for z in listed.split(",") if z != az)


def _network(v: Mapping[str, str], *, action: str, kind: str, tag_key: str, sources: str,
             ssm_doc: str, ssm_params: dict[str, str], task_params: dict[str, str],
             pod_params: dict[str, str], title: str, description: str) -> Template:
    """The three parallel actions both slowdown scenarios share: EC2 through SSM, ECS tasks,
    EKS pods (the last only with `eksCluster`)."""
    az = v["zone"]
    region = az[:-1]
    dur = v["duration"]
    flows = v["flowsPercent"]
    document = {**ssm_params, "Sources": sources, "Interface": "DEFAULT", "TrafficType": "egress",
                "DurationSeconds": str(int(seconds(dur))), "FlowsPercent": flows, "InstallDependencies": "True"}
    actions: dict[str, Any] = {
        f"{action}ForEC2": {"actionId": "aws:ssm:send-command",
                            "parameters": {"duration": dur,
                                           "documentArn": f"arn:aws:ssm:{region}::document/{ssm_doc}",
                                           "documentParameters": json.dumps(document, separators=(",", ":"))},
                            "targets": {"Instances": "TargetsForEC2"}},
        f"{action}ForECS": {"actionId": f"aws:ecs:task-network-{kind}",
                            "parameters": {**task_params, "sources": sources, "duration": dur,
                                           "flowsPercent": flows, "installDependencies": "true",
                                           "useEcsFaultInjectionEndpoints": "true"},
                            "targets": {"Tasks": "TargetsForECS"}},
    }
    targets: dict[str, Any] = {
        "TargetsForEC2": {"filters": [{"path": "Placement.AvailabilityZone", "values": [az]}],
                          "resourceTags": tagged(v, tag_key, f"{action}ForEC2"),
                          "resourceType": "aws:ec2:instance", "selectionMode": "ALL"},
        "TargetsForECS": {"filters": [{"path": "AvailabilityZone", "values": [az]}],
                          "resourceTags": tagged(v, tag_key, f"{action}ForECS"),
                          "resourceType": "aws:ecs:task", "selectionMode": "ALL"},
    }
    if "eksCluster" in v:
        actions[f"{action}ForEKS"] = {
            "actionId": f"aws:eks:pod-network-{kind}",
            "parameters": {**pod_params, "sources": sources, "duration": dur, "flowsPercent": flows,
                           "interface": "DEFAULT", "kubernetesServiceAccount": v["eksServiceAccount"]},
            "targets": {"Pods": "TargetsForEKS"}}
        targets["TargetsForEKS"] = {
            "parameters": {"availabilityZoneIdentifier": az, "clusterIdentifier": v["eksCluster"],
                           "namespace": v["eksNamespace"], "selectorType": "labelSelector",
                           "selectorValue": f"{tag_key}={action}ForEKS"},
            "resourceType": "aws:eks:pod", "selectionMode": "ALL"}
    return {"tags": {"Name": title}, "description": description, "actions": actions, "targets": targets}


_EKS = {
    "eksCluster": Param(None, "the EKS cluster of the pods to target (absent: no EKS action, as AWS advises)"),
    "eksNamespace": Param("default", "the pods' Kubernetes namespace"),
    "eksServiceAccount": Param("fis-service-account", "the Kubernetes service account of the fault pods"),
}


@scenario(
    "az-application-slowdown", "AZ: Application Slowdown",
    "latency between resources within one Availability Zone",
    DOCS + "az-application-slowdown-scenario.html",
    {
        "zone": Param("us-east-1a", "the Availability Zone to slow down", zone),
        "duration": Param("PT30M", "how long", duration),
        "delayMilliseconds": Param("200", "the latency added, in milliseconds", whole),
        "flowsPercent": Param("100", "the share of network flows affected", percent),
        "tags": Param(None, "one Key=Value the targets are found by, in place of the defaults", tag),
        **_EKS,
    },
)
def az_application_slowdown(v: Mapping[str, str]) -> Template:
    ms = v["delayMilliseconds"]
    return _network(v, action="Latency", kind="latency", tag_key="AZApplicationSlowdown", sources=v["zone"],
                    ssm_doc="AWSFIS-Run-Network-Latency-Sources", ssm_params={"DelayMilliseconds": ms},
                    task_params={"delayMilliseconds": ms}, pod_params={"delayMilliseconds": ms},
                    title="AZ: Application Slowdown",
                    description="Add latency between resources within a single AZ.")


@scenario(
    "cross-az-traffic-slowdown", "Cross-AZ: Traffic Slowdown",
    "packet loss on traffic from one Availability Zone to the others",
    DOCS + "cross-az-traffic-slowdown-scenario.html",
    {
        "zone": Param("us-east-1a", "the Availability Zone whose outbound traffic to the others is impaired", zone),
        "zones": Param(None, "the Region's zones, comma-separated (default: us-east-1a-f, else a-c)", zones),
        "duration": Param("PT30M", "how long", duration),
        "lossPercent": Param("15", "the packet loss, in percent", percent),
        "flowsPercent": Param("100", "the share of network flows affected", percent),
        "tags": Param(None, "one Key=Value the targets are found by, in place of the defaults", tag),
        **_EKS,
    },
)
def cross_az_traffic_slowdown(v: Mapping[str, str]) -> Template:
    loss = v["lossPercent"]
    return _network(v, action="PacketLoss", kind="packet-loss", tag_key="CrossAZTrafficSlowdown",
                    sources=_other_zones(v), ssm_doc="AWSFIS-Run-Network-Packet-Loss-Sources",
                    ssm_params={"LossPercent": loss}, task_params={"lossPercent": loss},
                    pod_params={"lossPercent": loss}, title="Cross-AZ: Traffic Slowdown",
                    description="Inject packet loss to disrupt and slow down traffic between AZs.")
