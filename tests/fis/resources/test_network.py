"""Network actions done with EC2's API, on a real moto server."""

from __future__ import annotations

import time

from fisproxy.fis.resources import implementation
from tests.fis.resources.conftest import Target, boto


def test_vpc_endpoint_gets_an_empty_security_group_until_the_end(moto_url, tag, resolve, context):
    ec2 = boto(moto_url, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    own = ec2.create_security_group(GroupName=f"own-{tag['fis-test']}", Description="own", VpcId=vpc)["GroupId"]
    endpoint = ec2.create_vpc_endpoint(
        VpcId=vpc, ServiceName="com.amazonaws.us-east-1.s3", VpcEndpointType="Interface", SecurityGroupIds=[own],
        TagSpecifications=[{"ResourceType": "vpc-endpoint", "Tags": [{"Key": k, "Value": v} for k, v in tag.items()]}],
    )["VpcEndpoint"]["VpcEndpointId"]
    target = resolve(Target("aws:ec2:vpc-endpoint", resource_tags=tag))
    assert target.ids == (endpoint,)
    action = implementation("aws:network:disrupt-vpc-endpoint")
    ctx = context("aws:network:disrupt-vpc-endpoint", {"VPCEndpoints": target}, {"duration": "PT5M"},
                  deadline=time.monotonic() + 300)

    def groups() -> list[str]:
        described = ec2.describe_vpc_endpoints(VpcEndpointIds=[endpoint])["VpcEndpoints"][0]
        return [g["GroupId"] for g in described.get("Groups", [])]

    action.start(ctx)
    (blocking,) = groups()
    assert blocking != own
    sg = ec2.describe_security_groups(GroupIds=[blocking])["SecurityGroups"][0]
    assert sg["IpPermissions"] == [] and sg["IpPermissionsEgress"] == []
    assert {"Key": "managedByFIS", "Value": "true"} in sg["Tags"]
    action.stop(ctx)
    assert groups() == [own]
    assert not ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [blocking]}])["SecurityGroups"]
