"""aws:arc:start-zonal-autoshift: a zonal shift away from `availabilityZoneIdentifier` for each
target managed resource (of `managedResourceTypes`, in `zonalAutoshiftStatus`), with ARC's
StartZonalShift; CancelZonalShift at the end. The shift also expires on its own a minute after
the action's duration, so a proxy that dies cannot leave traffic shifted for long.
"""

from __future__ import annotations

import math
from typing import Any

from fisproxy.fis.resources.base import ActionContext, register, upstream_call

_TYPE_MARKERS = {"ASG": ":autoscaling:", "ALB": ":loadbalancer/app/", "NLB": ":loadbalancer/net/", "EKS": ":eks:"}


def _zone_id(ctx: ActionContext, zone: str) -> str:
    if "-az" in zone:
        return zone
    with upstream_call("ec2 DescribeAvailabilityZones"):
        zones = ctx.client("ec2").describe_availability_zones(ZoneNames=[zone])["AvailabilityZones"]
    return str(zones[0]["ZoneId"]) if zones else zone


def _wanted(ctx: ActionContext, details: Any, arn: str) -> bool:
    types = [t.strip() for t in ctx.parameters.get("managedResourceTypes", "").split(",") if t.strip()]
    if types and not any(_TYPE_MARKERS[t] in arn for t in types):
        return False
    status = ctx.parameters.get("zonalAutoshiftStatus", "ENABLED")
    return status == "ANY" or details.get("zonalAutoshiftStatus", status) == status


@register("aws:arc:start-zonal-autoshift")
class StartZonalAutoshift:
    def start(self, ctx: ActionContext) -> None:
        arc = ctx.client("arc-zonal-shift")
        away = _zone_id(ctx, ctx.parameters["availabilityZoneIdentifier"])
        minutes = math.ceil((ctx.remaining() or 60.0) / 60) + 1
        shifts: list[str] = ctx.state.setdefault("shifts", [])
        for r in ctx.target("ManagedResources").resources:
            if not _wanted(ctx, r.details, r.arn):
                continue
            with upstream_call(f"arc-zonal-shift StartZonalShift of {r.arn}"):
                shift = arc.start_zonal_shift(resourceIdentifier=r.arn, awayFrom=away,
                                              expiresIn=f"{minutes}m", comment=ctx.who()[:128])
            shifts.append(shift["zonalShiftId"])
            ctx.log(f"Traffic of {r.arn} shifted away from {away} (zonal shift {shift['zonalShiftId']}).")

    def stop(self, ctx: ActionContext) -> None:
        arc = ctx.client("arc-zonal-shift")
        shifts: list[str] = ctx.state.get("shifts", [])
        while shifts:
            with upstream_call(f"arc-zonal-shift CancelZonalShift {shifts[0]}"):
                arc.cancel_zonal_shift(zonalShiftId=shifts[0])
            ctx.log(f"Zonal shift {shifts.pop(0)} cancelled.")
