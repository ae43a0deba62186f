"""Actions whose API the upstream lacks fail with the upstream's own answer in the reason,
never "not supported by fisproxy" (moto implements neither ARC zonal shift, Direct Connect
failover tests nor ElastiCache's TestFailover)."""

from __future__ import annotations

import time

import pytest

from fisproxy.fis.failure import Failure
from fisproxy.fis.resources import implementation, perform
from fisproxy.fis.resources.targets import ResolvedTarget, TargetResource


def _target(resource_type: str, arn: str, rid: str, **parameters: str) -> ResolvedTarget:
    return ResolvedTarget("t", resource_type, (TargetResource(arn, rid, {}),), parameters)


CASES = [
    ("aws:directconnect:virtual-interface-disconnect", "VirtualInterfaces",
     _target("aws:directconnect:virtual-interface", "arn:aws:directconnect:us-east-1:123456789012:dxvif/dxvif-1", "dxvif-1"),
     {"duration": "PT10M"}, "directconnect StartBgpFailoverTest of dxvif-1 failed on the upstream: HTTP 500: "),
    ("aws:arc:start-zonal-autoshift", "ManagedResources",
     _target("aws:arc:zonal-shift-managed-resource",
             "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/1", "web"),
     {"duration": "PT5M", "availabilityZoneIdentifier": "use1-az1", "zonalAutoshiftStatus": "ANY"},
     "arc-zonal-shift StartZonalShift of arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/1 "
     "failed on the upstream: HTTP 500: "),
]


@pytest.mark.parametrize(("action_id", "key", "target", "parameters", "reason"), CASES, ids=[c[0] for c in CASES])
def test_an_api_the_upstream_lacks_fails_the_action_with_its_answer(context, action_id, key, target, parameters, reason):
    ctx = context(action_id, {key: target}, parameters, deadline=time.monotonic() + 60)
    with pytest.raises(Failure) as err:
        perform(implementation(action_id), ctx)
    assert err.value.reason.startswith(reason)
    assert "Internal Server Error" in err.value.reason
