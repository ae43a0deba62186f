"""AWS's scenario library written as templates (`fisproxy/scenarios/`): every scenario, at its
defaults and with parameters, is a template FIS accepts (the same model checks as
CreateExperimentTemplate), with the parameters where AWS's content puts them."""

from __future__ import annotations

import json

import pytest

from fisproxy.fis.actions import ACTIONS
from fisproxy.fis.inputs import CreateExperimentTemplateRequest
from fisproxy.fis.templaterules import validate_template
from fisproxy.scenarios import SCENARIOS, render


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_every_scenario_is_a_template_fis_accepts(name):
    template = render(name, {})
    request = CreateExperimentTemplateRequest.model_validate({**template, "clientToken": "t"})
    validate_template(request)
    for action in template["actions"].values():
        ACTIONS[action["actionId"]].validate(action.get("parameters") or {})
        for target in (action.get("targets") or {}).values():
            assert target in template["targets"]
    json.dumps(template)  # JSON as is, for --cli-input-json


def test_the_library_has_the_scenarios_the_console_offers():
    assert {"az-power-interruption", "cross-region-connectivity", "az-application-slowdown",
            "cross-az-traffic-slowdown", "ec2-instance-failure", "ec2-cpu", "ec2-memory", "ec2-disk",
            "ec2-network-latency"} <= set(SCENARIOS)


def test_az_power_interruption_puts_the_zone_and_durations_where_aws_does():
    t = render("az-power-interruption", {"zone": "us-east-1b", "duration": "PT10M", "recoveryDuration": "PT5M",
                                         "roles": "arn:aws:iam::123456789012:role/launcher"})
    targets, actions = t["targets"], t["actions"]
    assert {"path": "Placement.AvailabilityZone", "values": ["us-east-1b"]} in targets["EC2-Instances"]["filters"]
    assert targets["EC2-Instances"]["resourceTags"] == {"AzImpairmentPower": "StopInstances"}
    assert targets["Subnet"]["filters"] == [{"path": "AvailabilityZone", "values": ["us-east-1b"]}]
    assert targets["RDS-Cluster"]["parameters"] == {"writerAvailabilityZoneIdentifiers": "us-east-1b"}
    assert targets["ElastiCache-Cluster"]["parameters"] == {"availabilityZoneIdentifier": "us-east-1b"}
    assert targets["IAM-role"]["resourceArns"] == ["arn:aws:iam::123456789012:role/launcher"]
    assert actions["Stop-Instances"]["parameters"]["startInstancesAfterDuration"] == "PT10M"
    assert actions["Pause-Instance-Launches"]["parameters"] == {
        "availabilityZoneIdentifiers": "us-east-1b", "duration": "PT15M", "percentage": "100"}
    assert actions["Pause-EBS-IO"]["parameters"] == {"duration": "PT5M"}
    assert actions["Pause-EBS-IO"]["startAfter"] == ["Stop-Instances", "Stop-ASG-Instances"]
    assert actions["Pause-network-connectivity"]["parameters"] == {"duration": "PT2M", "scope": "all"}
    assert actions["Start-ARC-Zonal-Autoshift"]["parameters"]["duration"] == "PT5M"  # 10 minutes - 5
    assert t["experimentOptions"] == {"accountTargeting": "single-account", "emptyTargetResolutionMode": "skip"}
    assert t["roleArn"] and "logConfiguration" not in t


def test_without_roles_the_launch_pause_of_roles_is_left_out():
    t = render("az-power-interruption", {})
    assert "IAM-role" not in t["targets"] and "Pause-Instance-Launches" not in t["actions"]


def test_tags_replace_every_default_tag():
    t = render("az-power-interruption", {"tags": "team=payments"})
    assert {json.dumps(x["resourceTags"]) for x in t["targets"].values()} == {'{"team": "payments"}'}
    k = render("az-power-interruption", {"tagKey": "Impair"})
    assert k["targets"]["EC2-Instances"]["resourceTags"] == {"Impair": "StopInstances"}


def test_cross_region_is_aws_published_content_for_the_region():
    t = render("cross-region-connectivity", {"region": "us-west-2", "duration": "PT1H"})
    assert {a["actionId"] for a in t["actions"].values()} == {
        "aws:network:transit-gateway-disrupt-cross-region-connectivity",
        "aws:network:route-table-disrupt-cross-region-connectivity", "aws:network:disrupt-vpc-endpoint",
        "aws:s3:bucket-pause-replication", "aws:dynamodb:global-table-pause-replication",
        "aws:memorydb:multi-region-cluster-pause-replication"}
    assert t["actions"]["Disrupt-Subnet-Connectivity"]["parameters"] == {"duration": "PT1H", "region": "us-west-2"}
    assert t["targets"]["S3-Bucket"]["resourceTags"] == {"S3Impact": "Allowed"}
    assert t["tags"] == {"Name": "Cross-Region: Connectivity"}


def test_slowdowns_leave_eks_out_without_a_cluster_and_name_the_other_zones():
    t = render("cross-az-traffic-slowdown", {"zone": "us-east-1c"})
    assert "PacketLossForEKS" not in t["actions"] and "TargetsForEKS" not in t["targets"]
    assert t["actions"]["PacketLossForECS"]["parameters"]["sources"] == "us-east-1a,us-east-1b,us-east-1d,us-east-1e,us-east-1f"
    doc = json.loads(t["actions"]["PacketLossForEC2"]["parameters"]["documentParameters"])
    assert doc["LossPercent"] == "15" and doc["DurationSeconds"] == "1800"
    with_eks = render("az-application-slowdown", {"eksCluster": "shop"})
    assert with_eks["targets"]["TargetsForEKS"]["parameters"]["clusterIdentifier"] == "shop"
    assert with_eks["targets"]["TargetsForEKS"]["parameters"]["selectorValue"] == "AZApplicationSlowdown=LatencyForEKS"


def test_ec2_stress_steps_run_one_after_the_other():
    t = render("ec2-cpu", {"steps": "30,60", "stepDuration": "PT1M", "tags": "app=web"})
    a = t["actions"]
    assert list(a) == ["Stress-1", "Stress-2"] and a["Stress-2"]["startAfter"] == ["Stress-1"]
    assert json.loads(a["Stress-2"]["parameters"]["documentParameters"])["LoadPercent"] == "60"
    assert t["targets"]["Instances"]["resourceTags"] == {"app": "web"}


@pytest.mark.parametrize(("name", "params", "message"), [
    ("az-power", {}, 'unknown scenario "az-power"'),
    ("az-power-interruption", {"zona": "us-east-1a"}, 'has no parameter "zona"'),
    ("az-power-interruption", {"zone": "us-east-1"}, "zone: must be an Availability Zone name"),
    ("az-power-interruption", {"duration": "30m"}, "duration: not an ISO 8601 duration"),
    ("az-power-interruption", {"roles": "launcher"}, "roles: must be ARNs"),
    ("cross-region-connectivity", {"region": "mars"}, "region: must be a Region"),
])
def test_bad_input_is_a_clear_error_naming_it(name, params, message):
    with pytest.raises(ValueError, match=message):
        render(name, params)
