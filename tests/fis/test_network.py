"""Network disruption scopes (`fis/network.py`): what each drops on a proxy placed in a targeted
subnet, the facts it reads on the upstream (a real moto), and what its log says at start."""

from __future__ import annotations

import random

import pytest

from fisproxy.aws.call import AwsCall, RequestParts
from fisproxy.fis import network
from fisproxy.fis.decide import OTHER_TRAFFIC, decide
from fisproxy.fis.failure import Failure
from fisproxy.fis.resources.targets import ResolvedTarget, TargetResource
from fisproxy.fis.rules import ActiveRule
from fisproxy.fis.upstream import RoleSession, RoleSessions
from tests.fis.resources.conftest import ROLE_ARN, boto

SUBNET = TargetResource("arn:aws:ec2:us-east-1:123456789012:subnet/subnet-a", "subnet-a", {
    "SubnetId": "subnet-a", "VpcId": "vpc-1", "CidrBlock": "10.0.1.0/24", "AvailabilityZone": "us-east-1a"})
FACTS = {
    "vpcCidrs": {"vpc-1": ["10.0.0.0/16"]},
    "subnets": [{"id": "subnet-a", "vpc": "vpc-1", "az": "us-east-1a", "cidr": "10.0.1.0/24"},
                {"id": "subnet-b", "vpc": "vpc-1", "az": "us-east-1b", "cidr": "10.0.2.0/24"},
                {"id": "subnet-x", "vpc": "vpc-2", "az": "us-east-1b", "cidr": "10.9.0.0/24"}],
    "cidrs": ["192.0.2.0/24"],
}
DDB = AwsCall("dynamodb", "us-east-1", "ListTables", "dynamodb", "json")


def dropped(scope: str, call: AwsCall, address: str | None, host: str = "example.test") -> bool:
    spec = network.compile_disrupt({"scope": scope}, SUBNET, region="us-east-1", facts=FACTS)
    rule = ActiveRule("EXP1", "cut", spec, stopped=None)  # type: ignore[arg-type]
    parts = RequestParts("GET", "/", {}, None, host=host, address=address)
    decision = decide(call, [rule] if call is OTHER_TRAFFIC or spec.matches(call.names, call.operation, call.region)
                      else [], random.Random(0), parts)
    return decision.terminal is not None


@pytest.mark.parametrize(("scope", "call", "address", "expected"), [
    # all: everything leaving the subnet, AWS calls or not; inside the subnet is allowed
    ("all", DDB, "127.0.0.1", True),
    ("all", OTHER_TRAFFIC, "203.0.113.9", True),
    ("all", OTHER_TRAFFIC, "10.0.1.20", False),
    ("all", OTHER_TRAFFIC, None, True),  # not resolvable: outside
    # availability-zone: to the VPC's subnets in other zones only
    ("availability-zone", OTHER_TRAFFIC, "10.0.2.7", True),
    ("availability-zone", OTHER_TRAFFIC, "10.0.1.7", False),   # its own zone
    ("availability-zone", OTHER_TRAFFIC, "10.9.0.7", False),   # another VPC
    ("availability-zone", DDB, "52.94.0.10", False),           # a Regional endpoint
    # prefix-list: to the list's CIDRs
    ("prefix-list", OTHER_TRAFFIC, "192.0.2.44", True),
    ("prefix-list", DDB, "192.0.2.44", True),
    ("prefix-list", OTHER_TRAFFIC, "198.51.100.1", False),
    ("prefix-list", OTHER_TRAFFIC, None, False),
    # vpc: leaving the VPC (public endpoints included), not within it
    ("vpc", DDB, "52.94.0.10", True),
    ("vpc", OTHER_TRAFFIC, "10.0.200.1", False),
    ("vpc", OTHER_TRAFFIC, None, True),
])
def test_what_each_address_scope_drops(scope, call, address, expected):
    assert dropped(scope, call, address) is expected


def test_service_scopes_drop_that_service_in_the_region_and_no_other_traffic():
    spec = network.compile_disrupt({"scope": "dynamodb"}, SUBNET, region="us-east-1", facts={})
    assert spec.services == frozenset({"dynamodb"}) and spec.region == "us-east-1" and not spec.other_traffic
    assert spec.matches(DDB.names, "PutItem", "us-east-1")
    assert not spec.matches(DDB.names, "PutItem", "eu-west-1")  # another Region's endpoint
    assert not spec.matches(frozenset({"sqs"}), "SendMessage", "us-east-1")
    s3 = network.compile_disrupt({"scope": "s3"}, SUBNET, region="us-east-1", facts={})
    assert s3.services == frozenset({"s3"}) and not s3.other_traffic


def test_s3express_drops_directory_bucket_calls_only():
    spec = network.compile_disrupt({"scope": "s3express"}, SUBNET, region="us-east-1", facts={})
    s3 = AwsCall("s3", "us-east-1", "GetObject", "s3", "rest-xml")
    assert spec.scope is not None
    assert spec.scope.admits(s3, RequestParts("GET", "/k", {}, host="b--use1-az4--x-s3.s3express-use1-az4.us-east-1.amazonaws.com"))
    assert not spec.scope.admits(s3, RequestParts("GET", "/k", {}, host="bucket.s3.us-east-1.amazonaws.com"))
    assert spec.scope.admits(AwsCall("s3express", "us-east-1", "CreateSession"), RequestParts("GET", "/", {}))


def test_every_scope_says_at_start_what_it_drops_and_what_never_passes_a_proxy():
    for scope in ("all", "availability-zone", "dynamodb", "prefix-list", "s3", "s3express", "vpc"):
        [note] = network.start_notes(network.DISRUPT, {"scope": scope, "prefixListIdentifier": "pl-1"})
        assert note.startswith("Drops ") and "hangs until the client's timeout" in note
        assert "does not pass through a proxy" in note, scope
    [az] = network.start_notes(network.DISRUPT, {"scope": "availability-zone"})
    assert "AWS API calls go to Regional endpoints outside the VPC: they are not in this scope" in az
    [cross] = network.start_notes(network.CROSS_REGION, {"region": "eu-west-1"})
    assert "Drops AWS API calls to eu-west-1" in cross and "never reaches a proxy" in cross
    [tgw] = network.start_notes(network.TRANSIT_GATEWAY, {"region": "eu-west-1"})
    assert tgw.startswith("Traffic between transit gateways never passes through a proxy")
    assert network.start_notes("aws:ec2:stop-instances", {}) == []


# ---- facts read on the upstream (a real moto) --------------------------------------------------

@pytest.fixture
def session(moto_url: str) -> RoleSession:
    return RoleSessions(moto_url).session(ROLE_ARN, "us-east-1", "EXPnetwork")


def subnet_target(ec2, cidr: str = "10.42.1.0/24") -> tuple[ResolvedTarget, str]:
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    mine = ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone="us-east-1a")["Subnet"]
    ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.2.0/24", AvailabilityZone="us-east-1b")
    return ResolvedTarget("net", "aws:ec2:subnet", (TargetResource(mine["SubnetArn"], mine["SubnetId"], mine),)), vpc


def test_facts_are_read_on_the_upstream(moto_url, session):
    ec2 = boto(moto_url, "ec2")
    target, vpc = subnet_target(ec2)
    vpc_facts = network.lookup({"scope": "vpc"}, target, session, "us-east-1")
    assert vpc_facts == {"vpcCidrs": {vpc: ["10.42.0.0/16"]}}
    zones = network.lookup({"scope": "availability-zone"}, target, session, "us-east-1")
    assert {(s["az"], s["cidr"]) for s in zones["subnets"]} == {("us-east-1a", "10.42.1.0/24"),
                                                               ("us-east-1b", "10.42.2.0/24")}
    pl = ec2.create_managed_prefix_list(PrefixListName=f"pl-test-{vpc}", MaxEntries=5, AddressFamily="IPv4",
                                        Entries=[{"Cidr": "127.0.0.1/32"}, {"Cidr": "192.0.2.0/24"}])["PrefixList"]
    for identifier in (pl["PrefixListId"], pl["PrefixListArn"], pl["PrefixListName"]):
        facts = network.lookup({"scope": "prefix-list", "prefixListIdentifier": identifier}, target, session, "us-east-1")
        assert facts == {"prefixList": pl["PrefixListId"], "cidrs": ["127.0.0.1/32", "192.0.2.0/24"]}
    assert network.lookup({"scope": "dynamodb"}, target, session, "us-east-1") == {}


def test_a_prefix_list_that_does_not_exist_or_is_not_named_fails_saying_so(moto_url, session):
    target, _ = subnet_target(boto(moto_url, "ec2"), "10.42.1.0/24")
    with pytest.raises(Failure, match="prefix list no-such-list not found on the upstream"):
        network.lookup({"scope": "prefix-list", "prefixListIdentifier": "no-such-list"}, target, session, "us-east-1")
    with pytest.raises(Failure, match="needs the parameter prefixListIdentifier"):
        network.lookup({"scope": "prefix-list"}, target, session, "us-east-1")


def test_network_rules_are_not_narrowed_to_the_experiments_region():
    """The engine narrows AWS actions' rules to the experiment's Region; a subnet cut in the
    scope `all` (or a cross-Region cut) covers calls to every Region, and other traffic."""
    for scope in ("all", "vpc", "prefix-list", "availability-zone"):
        assert not network.compile_disrupt({"scope": scope}, SUBNET, region="us-east-1", facts=FACTS).regional
    assert not network.compile_cross_region({"region": "eu-west-1"}, region="us-east-1").regional
