"""Fault kinds: how each kind of fault is applied to a flow, one small file per kind.

Every kind implements `FaultKind`: `apply(flow, fault, phase, env)` for the phase it runs in
(`request`: before the request is forwarded; `response`: after the upstream answered, the write
happened). A kind that cannot act after the upstream answered says so with `phases`. A new kind
(say, Lambda's failed-function answer) is one new file plus its line in `KINDS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from mitmproxy import http

from fisproxy.aws.call import AwsCall
from fisproxy.fis.faults import Fault, Phase
from fisproxy.proxy.kinds.disconnect import Disconnect
from fisproxy.proxy.kinds.error import Error
from fisproxy.proxy.kinds.lambda_error import LambdaError
from fisproxy.proxy.kinds.lambda_http import LambdaHttp
from fisproxy.proxy.kinds.latency import Latency
from fisproxy.proxy.kinds.rate_limit import RateLimited
from fisproxy.proxy.sink import FaultSink


@dataclass(frozen=True, slots=True)
class Env:
    """What a kind may need beyond the flow: the identified call, the upload sink, and the
    mark to put on the flow (mitmweb comment, x-fisproxy-fault header)."""

    call: AwsCall
    sink: FaultSink
    mark: Callable[[http.HTTPFlow], None]


class FaultKind(Protocol):
    phases: frozenset[Phase]

    async def apply(self, flow: http.HTTPFlow, fault: Fault, phase: Phase, env: Env) -> None: ...


KINDS: dict[str, FaultKind] = {
    "latency": Latency(),
    "error": Error(),
    "disconnect": Disconnect(),
    "lambda-error": LambdaError(),
    "lambda-http": LambdaHttp(),
    "rate-limit": RateLimited(),
}

__all__ = ["KINDS", "Env", "FaultKind"]
