"""The api-fault actions' compilers: an action's parameters -> the `RuleSpec` the proxy applies.

One compiler per action id (`COMPILERS`), attached to the action's `ActionSpec` when the
catalogue loads (`actions.py`); the proxy-fault actions' compilers are in `proxyfaults.py`.
Parameters are checked before they get here (`ActionSpec.validate`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

from fisproxy.fis.faults import ErrorKind, FaultSpec, RateLimit, RuleSpec
from fisproxy.fis.paramchecks import ALL, split_names

LOCALSTACK_MESSAGE = "Failing as per Fault Injection Service configuration"

Compiler = Callable[[Mapping[str, str]], RuleSpec | None]


def _services(value: str | None) -> frozenset[str] | None:
    return None if value is None or value == ALL else frozenset({value})


def _pct(params: Mapping[str, str], default: int = 100) -> float:
    return float(int(params.get("percentage", default)))


def _inject_api(error_kind: ErrorKind) -> Compiler:
    def compile_rule(params: Mapping[str, str]) -> RuleSpec:
        return RuleSpec(
            services=_services(params["service"]),
            operations=split_names(params.get("operations")),
            region=None,
            percentage=_pct(params),
            faults=(FaultSpec(kind="error", error_kind=error_kind),),
        )

    return compile_rule


_LS_OPS = ("operation", "api", "apiCall")


def _ls_operations(params: Mapping[str, str]) -> frozenset[str] | None:
    for name in _LS_OPS:
        if name in params:
            return split_names(params[name])
    return None


def _ls_api_error(params: Mapping[str, str]) -> RuleSpec:
    return RuleSpec(
        services=_services(params.get("service")),
        operations=_ls_operations(params),
        region=params.get("region"),
        percentage=_pct(params),
        faults=(FaultSpec(
            kind="error",
            error_kind="internal",
            status=int(params.get("errorCode", "500")),
            code=params.get("exception", "InternalError"),
            message=LOCALSTACK_MESSAGE,
        ),),
    )


def _ls_latency(params: Mapping[str, str]) -> RuleSpec:
    return RuleSpec(
        services=_services(params.get("service")),
        operations=_ls_operations(params),
        region=params.get("region"),
        percentage=100.0,
        faults=(FaultSpec(kind="latency", latency_ms=float(params["latencyMilliseconds"])),),
    )


def _ls_kms(params: Mapping[str, str]) -> RuleSpec:
    return RuleSpec(
        services=frozenset({"kms"}),
        operations=None,
        region=None,
        percentage=_pct(params),
        faults=(FaultSpec(kind="error", error_kind="internal", status=500, code="InternalError",
                          message=LOCALSTACK_MESSAGE),),
    )


def _fp_rule(params: Mapping[str, str], fault: FaultSpec) -> RuleSpec:
    return RuleSpec(
        services=_services(params.get("service")),
        operations=split_names(params.get("operations")),
        region=params.get("region"),
        percentage=_pct(params),
        faults=(fault,),
        zones=split_names(params.get("availabilityZones")),
    )


def _fp_latency(p: Mapping[str, str]) -> RuleSpec:
    return _fp_rule(p, FaultSpec(
        kind="latency",
        phase=p.get("phase", "request"),  # type: ignore[arg-type]  # checked by one-of
        latency_ms=float(p["latencyMilliseconds"]),
        jitter_ms=float(p.get("jitterMilliseconds", "0")),
    ))


def _fp_error(p: Mapping[str, str]) -> RuleSpec:
    return _fp_rule(p, FaultSpec(
        kind="error",
        phase=p.get("phase", "request"),  # type: ignore[arg-type]
        error_kind="internal",
        status=int(p["statusCode"]) if "statusCode" in p else None,
        code=p.get("errorCode"),
        message=p.get("message"),
    ))


def _fp_disconnect(p: Mapping[str, str]) -> RuleSpec:
    return _fp_rule(p, FaultSpec(
        kind="disconnect",
        phase=p.get("phase", "request"),  # type: ignore[arg-type]
        mode=p.get("mode", "close"),  # type: ignore[arg-type]
    ))


def _fp_rate_limit(p: Mapping[str, str]) -> RuleSpec:
    rate = float(p["requestsPerSecond"])
    burst = int(p.get("burst") or max(1, math.ceil(rate)))
    rule = _fp_rule(p, FaultSpec(kind="rate-limit", error_kind="throttle"))
    return dataclasses.replace(rule, percentage=100.0,
                               limit=RateLimit(rate, burst, fleet=p.get("scope") == "fleet"))


COMPILERS: Mapping[str, Compiler] = {
    "aws:fis:inject-api-internal-error": _inject_api("internal"),
    "aws:fis:inject-api-throttle-error": _inject_api("throttle"),
    "aws:fis:inject-api-unavailable-error": _inject_api("unavailable"),
    "localstack:generic:api-error": _ls_api_error,
    "localstack:generic:latency": _ls_latency,
    "localstack:kms:inject-api-internal-error": _ls_kms,
    "fisproxy:api:latency": _fp_latency,
    "fisproxy:api:error": _fp_error,
    "fisproxy:api:disconnect": _fp_disconnect,
    "fisproxy:api:rate-limit": _fp_rate_limit,
}
