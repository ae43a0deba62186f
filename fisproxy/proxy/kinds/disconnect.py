"""Disconnect: close (FIN), reset (RST) or hang (send nothing until the client gives up or the
action stops), before the request is forwarded or after the upstream answered."""

from __future__ import annotations

from mitmproxy import http

from fisproxy.fis.faults import Fault, Phase
from fisproxy.proxy import apply
from fisproxy.proxy.kinds.base import Env


class Disconnect:
    phases: frozenset[Phase] = frozenset({"request", "response"})

    async def apply(self, flow: http.HTTPFlow, fault: Fault, phase: Phase, env: Env) -> None:
        if fault.spec.mode == "hang":
            await apply.hang(flow, fault.stopped)
        else:
            apply.drop(flow, fault.spec.mode)
