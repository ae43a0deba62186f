"""aws:directconnect:virtual-interface-disconnect: a BGP failover test on each target virtual
interface (StartBgpFailoverTest puts its BGP sessions down), stopped at the end with
StopBgpFailoverTest. The test's own duration is the action's, so it also ends by itself."""

from __future__ import annotations

import math

from fisproxy.fis.resources.base import ActionContext, register, upstream_call


@register("aws:directconnect:virtual-interface-disconnect")
class VirtualInterfaceDisconnect:
    def start(self, ctx: ActionContext) -> None:
        dx = ctx.client("directconnect")
        minutes = max(1, math.ceil((ctx.remaining() or 60.0) / 60))
        tested: list[str] = ctx.state.setdefault("interfaces", [])
        for vif in ctx.target("VirtualInterfaces").ids:
            with upstream_call(f"directconnect StartBgpFailoverTest of {vif}"):
                dx.start_bgp_failover_test(virtualInterfaceId=vif, testDurationInMinutes=minutes)
            tested.append(vif)
            ctx.log(f"BGP sessions of {vif} are down (failover test of {minutes} min).")

    def stop(self, ctx: ActionContext) -> None:
        dx = ctx.client("directconnect")
        tested: list[str] = ctx.state.get("interfaces", [])
        while tested:
            with upstream_call(f"directconnect StopBgpFailoverTest of {tested[0]}"):
                dx.stop_bgp_failover_test(virtualInterfaceId=tested[0])
            ctx.log(f"BGP sessions of {tested.pop(0)} are up again.")
