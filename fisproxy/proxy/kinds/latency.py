"""Latency: wait before forwarding the request (phase request) or before the client gets the
answer (phase response). The wait ends early when the action stops."""

from __future__ import annotations

from mitmproxy import http

from fisproxy.fis.faults import Fault, Phase
from fisproxy.proxy import apply
from fisproxy.proxy.kinds.base import Env


class Latency:
    phases: frozenset[Phase] = frozenset({"request", "response"})

    async def apply(self, flow: http.HTTPFlow, fault: Fault, phase: Phase, env: Env) -> None:
        await apply.wait(fault.latency_ms, fault.stopped, flow=flow)
