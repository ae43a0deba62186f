"""Rate limit: a call over its rule's rate (fisproxy:api:rate-limit) gets the service's own
throttling error in its own protocol, before it is forwarded. Which calls are over the rate is
decided with the rule (`fis/decide.py`, `fis/ratelimit.py`); this kind only answers them."""

from __future__ import annotations

from mitmproxy import http

from fisproxy.aws.errors import error_for
from fisproxy.fis.faults import Fault, Phase
from fisproxy.proxy import apply
from fisproxy.proxy.kinds.base import Env


class RateLimited:
    phases: frozenset[Phase] = frozenset({"request"})

    async def apply(self, flow: http.HTTPFlow, fault: Fault, phase: Phase, env: Env) -> None:
        err = error_for(env.call, "throttle", method=flow.request.method)
        apply.respond(flow, err.status, err.headers, err.body, sink=env.sink)
