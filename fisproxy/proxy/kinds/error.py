"""Error: answer with the service's own error, in its own protocol, instead of forwarding the
request (phase request), or in place of the upstream's answer (phase response: the write
happened, the client saw a failure). Which status, code and message: `aws/errors.py`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mitmproxy import http

from fisproxy.aws.call import AwsCall
from fisproxy.aws.errors import ErrorResponse, render_error, standard_error
from fisproxy.fis.faults import Fault, FaultSpec, Phase
from fisproxy.proxy import apply

if TYPE_CHECKING:
    from fisproxy.proxy.kinds import Env


class Error:
    phases: frozenset[Phase] = frozenset({"request", "response"})

    async def apply(self, flow: http.HTTPFlow, fault: Fault, phase: Phase, env: Env) -> None:
        err = error_response(env.call, fault.spec, flow.request.method)
        if phase == "request":
            apply.respond(flow, err.status, err.headers, err.body, sink=env.sink)
        else:
            apply.respond_after_upstream(flow, err.status, err.headers, err.body)
            env.mark(flow)


def error_response(call: AwsCall, spec: FaultSpec, method: str) -> ErrorResponse:
    status, code, message = standard_error(call, spec.error_kind or "internal")
    if spec.code and spec.code != code:
        # A custom code: take status and message from the service's own error of that
        # code when it is one (Throttling -> 400 "Rate exceeded"), else a plain message.
        known = (standard_error(call, kind) for kind in ("throttle", "unavailable", "internal"))
        status, code, message = next(
            (k for k in known if k[1] == spec.code), (status, spec.code, f"{spec.code} (injected by fisproxy)")
        )
    status = spec.status if spec.status is not None else status
    return render_error(call, status, code, spec.message or message, method=method)
