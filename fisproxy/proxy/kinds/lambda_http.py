"""A function "returning" an HTTP response (aws:lambda:invocation-http-integration-response):
a successful invocation whose payload carries `statusCode` and the Content-Type that ALB, API
Gateway and VPC Lattice integrations read; instead of running the function (phase request) or
in place of what it returned (phase response)."""

from __future__ import annotations

from mitmproxy import http

from fisproxy.fis.faults import Fault, Phase
from fisproxy.fis.resources.scoped import http_integration_response, invocation_type
from fisproxy.proxy import apply
from fisproxy.proxy.kinds.base import Env


class LambdaHttp:
    phases: frozenset[Phase] = frozenset({"request", "response"})

    async def apply(self, flow: http.HTTPFlow, fault: Fault, phase: Phase, env: Env) -> None:
        spec = fault.spec
        answer = http_integration_response(
            spec.status or 200, spec.content_type or "text/plain",
            request_invocation_type=invocation_type(flow.request.headers))
        if answer is None:
            return
        if phase == "request":
            apply.respond(flow, answer.status, answer.headers, answer.body, sink=env.sink)
        else:
            apply.respond_after_upstream(flow, answer.status, answer.headers, answer.body)
            env.mark(flow)
