"""What an action does to matching requests, as plain data the proxy applies.

The engine compiles each running action into a `RuleSpec` (which requests) with `FaultSpec`s
(what happens to them); per request it hands the proxy `Fault`s. Sampling, durations, operation
filters and role targeting live in the engine, never in the proxy or the fault kinds.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal["latency", "error", "disconnect"]
Phase = Literal["request", "response"]
ErrorKind = Literal["throttle", "internal", "unavailable"]
DisconnectMode = Literal["close", "reset", "hang"]


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One effect on a matching request.

    - latency: wait `latency_ms` (+ uniform 0..`jitter_ms`) before forwarding (phase request) or
      before answering the client (phase response). 0 means no delay.
    - error: answer with an AWS error in the service's own protocol. `error_kind` asks for the
      service's own throttle / internal / unavailable payload; `status`, `code`, `message`, when
      set, override it (LocalStack's `exception`/`errorCode`, fisproxy:api:error).
    - disconnect: `close` (FIN, no response), `reset` (TCP RST), `hang` (send nothing until the
      client gives up or the action stops).
    Phase `response` forwards the request first (the write happens), then replaces the answer.
    """

    kind: FaultKind
    phase: Phase = "request"
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_kind: ErrorKind | None = None
    status: int | None = None
    code: str | None = None
    message: str | None = None
    mode: DisconnectMode = "close"


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """Which requests an action applies to, compiled once from its parameters.

    `services`/`operations`/`region` None means any. `services` holds user-written names and is
    matched against `AwsCall.names` (signing name or botocore name). `percentage` is 0-100,
    sampled per HTTP request.
    """

    services: frozenset[str] | None
    operations: frozenset[str] | None
    region: str | None
    percentage: float
    faults: tuple[FaultSpec, ...]


@dataclass(frozen=True, slots=True)
class Fault:
    """A FaultSpec chosen for one request, with where it came from.

    `source` is `<experiment id>/<action name>` for FIS actions, `chaos/<n>` for Chaos API
    rules. `stopped` is set when the action stops: the proxy cuts waits short on it.
    """

    source: str
    spec: FaultSpec
    latency_ms: float = 0.0
    stopped: asyncio.Event | None = None
    # The `x-fisproxy-fault` header value, `<experiment id>/<action name>/<kind>`: made once,
    # read by the header, the log line, the metrics and the request record.
    label: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", f"{self.source}/{self.spec.kind}")
