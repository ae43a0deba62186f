"""Fault kinds: how each kind of fault is applied to a flow, one small file per kind.

Every kind implements `FaultKind`: `apply(flow, fault, phase, env)` for the phase it runs in
(`request`: before the request is forwarded; `response`: after the upstream answered, the write
happened). A kind that cannot act after the upstream answered says so with `phases`. A new kind
(say, Lambda's failed-function answer) is one new file plus its line in `KINDS`. The interface
and `Env` live in `base.py`, which the kinds import (never this package: it imports them).
"""

from __future__ import annotations

from fisproxy.proxy.kinds.base import Env, FaultKind
from fisproxy.proxy.kinds.disconnect import Disconnect
from fisproxy.proxy.kinds.error import Error
from fisproxy.proxy.kinds.lambda_error import LambdaError
from fisproxy.proxy.kinds.lambda_http import LambdaHttp
from fisproxy.proxy.kinds.latency import Latency
from fisproxy.proxy.kinds.rate_limit import RateLimited

KINDS: dict[str, FaultKind] = {
    "latency": Latency(),
    "error": Error(),
    "disconnect": Disconnect(),
    "lambda-error": LambdaError(),
    "lambda-http": LambdaHttp(),
    "rate-limit": RateLimited(),
}

__all__ = ["KINDS", "Env", "FaultKind"]
