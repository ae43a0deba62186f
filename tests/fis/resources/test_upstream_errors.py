"""Actions whose API the upstream lacks say so, with the upstream's own answer (its status and an
excerpt of a page that is no AWS error), never as fisproxy's failure ("failed in fisproxy",
"Unable to parse response"): moto implements neither ARC zonal shift, Direct Connect failover
tests nor ElastiCache's TestFailover. Such an error is `skippable`: the engine skips the action."""

from __future__ import annotations

import time

import pytest

from fisproxy.fis.failure import Failure
from fisproxy.fis.resources import implementation, perform
from fisproxy.fis.resources.targets import ResolvedTarget, TargetResource
from tests.fis.resources.conftest import boto


def _target(resource_type: str, arn: str, rid: str, **parameters: str) -> ResolvedTarget:
    return ResolvedTarget("t", resource_type, (TargetResource(arn, rid, {}),), parameters)


NOT_AWS = 'it answered HTTP 500, not an AWS error: "500 Internal Server Error - The server encountered'

CASES = [
    ("aws:directconnect:virtual-interface-disconnect", "VirtualInterfaces",
     _target("aws:directconnect:virtual-interface", "arn:aws:directconnect:us-east-1:123456789012:dxvif/dxvif-1", "dxvif-1"),
     {"duration": "PT10M"},
     f"the upstream does not implement directconnect StartBgpFailoverTest (of dxvif-1): {NOT_AWS}"),
    ("aws:arc:start-zonal-autoshift", "ManagedResources",
     _target("aws:arc:zonal-shift-managed-resource",
             "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/1", "web"),
     {"duration": "PT5M", "availabilityZoneIdentifier": "use1-az1", "zonalAutoshiftStatus": "ANY"},
     "the upstream does not implement arc-zonal-shift StartZonalShift (of "
     f"arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/1): {NOT_AWS}"),
]


@pytest.mark.parametrize(("action_id", "key", "target", "parameters", "reason"), CASES, ids=[c[0] for c in CASES])
def test_an_api_the_upstream_lacks_is_said_so_with_its_answer(context, action_id, key, target, parameters, reason):
    ctx = context(action_id, {key: target}, parameters, deadline=time.monotonic() + 60)
    with pytest.raises(Failure) as err:
        perform(implementation(action_id), ctx)
    assert err.value.reason.startswith(reason)
    assert err.value.skippable and "fisproxy" not in err.value.reason


def test_elasticache_test_failover_moto_cannot_parse_is_the_upstreams_answer(context, moto_url, tag):
    """moto answers TestFailover with an HTML page botocore cannot parse as XML (a
    ResponseParserError, no BotoCoreError): the reason is the upstream's, not a parse failure."""
    group = f"rg-{tag['fis-test']}"
    boto(moto_url, "elasticache").create_replication_group(
        ReplicationGroupId=group, ReplicationGroupDescription="e2e", Engine="redis",
        CacheNodeType="cache.t3.micro", NumCacheClusters=2, PreferredCacheClusterAZs=["us-east-1a", "us-east-1b"])
    target = ResolvedTarget("t", "aws:elasticache:replicationgroup",
                            (TargetResource(f"arn:aws:elasticache:us-east-1:123456789012:replicationgroup:{group}",
                                            group, {}),),
                            {"availabilityZoneIdentifier": "us-east-1a"})
    ctx = context("aws:elasticache:replicationgroup-interrupt-az-power", {"ReplicationGroups": target},
                  {"duration": "PT1M"}, deadline=time.monotonic() + 60)
    with pytest.raises(Failure) as err:
        perform(implementation("aws:elasticache:replicationgroup-interrupt-az-power"), ctx)
    assert err.value.reason.startswith(
        f"the upstream does not implement elasticache TestFailover (of {group}/0001): {NOT_AWS}")
    assert "parse" not in err.value.reason and err.value.skippable
