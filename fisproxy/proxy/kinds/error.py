"""Error: answer with the service's own error, in its own protocol, instead of forwarding the
request (phase request), or in place of the upstream's answer (phase response: the write
happened, the client saw a failure). Which status, code and message: `aws/errors.py`."""

from __future__ import annotations

from mitmproxy import http

from fisproxy.aws.errors import error_for
from fisproxy.fis.faults import Fault, Phase
from fisproxy.proxy import apply
from fisproxy.proxy.kinds.base import Env


class Error:
    phases: frozenset[Phase] = frozenset({"request", "response"})

    async def apply(self, flow: http.HTTPFlow, fault: Fault, phase: Phase, env: Env) -> None:
        spec = fault.spec
        err = error_for(env.call, spec.error_kind, status=spec.status, code=spec.code,
                        message=spec.message, method=flow.request.method)
        if phase == "request":
            apply.respond(flow, err.status, err.headers, err.body, sink=env.sink)
        else:
            apply.respond_after_upstream(flow, err.status, err.headers, err.body)
            env.mark(flow)
