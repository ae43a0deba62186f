"""Lambda's answer for a failed function (aws:lambda:invocation-error): 200 with
`X-Amz-Function-Error: Unhandled` and the runtime's error document, without running the
function (phase request, preventExecution true) or after it ran (phase response)."""

from __future__ import annotations

from mitmproxy import http

from fisproxy.fis.faults import Fault, Phase
from fisproxy.fis.resources.scoped import function_error_response, invocation_type
from fisproxy.proxy import apply
from fisproxy.proxy.kinds.base import Env


class LambdaError:
    phases: frozenset[Phase] = frozenset({"request", "response"})

    async def apply(self, flow: http.HTTPFlow, fault: Fault, phase: Phase, env: Env) -> None:
        answer = function_error_response(request_invocation_type=invocation_type(flow.request.headers))
        if answer is None:
            return  # DryRun: nothing runs, nothing to fail
        if phase == "request":
            apply.respond(flow, answer.status, answer.headers, answer.body, sink=env.sink)
        else:
            apply.respond_after_upstream(flow, answer.status, answer.headers, answer.body)
            env.mark(flow)
