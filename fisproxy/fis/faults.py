"""What an action does to matching requests, as plain data the proxy applies.

The engine compiles each running action into a `RuleSpec` (which requests) with `FaultSpec`s
(what happens to them); per request it hands the proxy `Fault`s. Sampling, durations, operation
filters and role targeting live in the engine, never in the proxy or the fault kinds.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Literal, Protocol

from fisproxy.aws.call import AwsCall, RequestParts

FaultKindName = Literal["latency", "error", "disconnect", "lambda-error", "lambda-http", "rate-limit"]
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
    - lambda-error: what Lambda answers for a failed function (200, `X-Amz-Function-Error`).
    - lambda-http: a function "returning" an HTTP response with `status` and `content_type`.
    - rate-limit: the service's own throttling error, for a call over its rule's rate.
    Phase `response` forwards the request first (the write happens), then replaces the answer.
    """

    kind: FaultKindName
    phase: Phase = "request"
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_kind: ErrorKind | None = None
    status: int | None = None
    code: str | None = None
    message: str | None = None
    mode: DisconnectMode = "close"
    content_type: str | None = None


class StopSignal:
    """Set once when an action's faults end. Set from any thread (the engine's, a control-API
    worker's); awaited by the proxy on its event loop, where waits and hangs end early on it.

    `is_set` is a plain attribute read (the proxy checks it per fault). The asyncio event is
    bound to `loop` (the proxy's), so `set` from another thread goes through
    `call_soon_threadsafe`; without a loop (unit tests, one thread) it is set directly.
    """

    __slots__ = ("_event", "_flag", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        self._flag = threading.Event()
        self._event = asyncio.Event()

    def is_set(self) -> bool:
        return self._flag.is_set()

    def set(self) -> None:
        if self._flag.is_set():
            return
        self._flag.set()
        loop = self._loop
        if loop is None:
            self._event.set()
        elif not loop.is_closed():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if running is loop:
                self._event.set()
            else:
                loop.call_soon_threadsafe(self._event.set)

    async def wait(self) -> None:
        if not self._flag.is_set():
            await self._event.wait()


class Scope(Protocol):
    """The resources a rule is limited to (targeted Lambda functions, Kinesis streams, launches
    in some Availability Zones): whether one call names one of them. `needs_body`: the call's
    body must be read to tell (a small JSON or form body)."""

    @property
    def needs_body(self) -> bool: ...  # read-only: scopes are frozen

    def admits(self, call: AwsCall, request: RequestParts | None) -> bool: ...


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A rate a rule lets calls through at: `per_second` on average, `burst` at once after a
    quiet spell (a token bucket). `fleet`: the rate holds across every proxy on the store
    (`fis/ratelimit.py`); otherwise each proxy applies it on its own."""

    per_second: float
    burst: int
    fleet: bool = False


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
    scope: Scope | None = None
    # Only the proxies placed in one of these Availability Zones (names or ids) apply the rule.
    zones: frozenset[str] | None = None
    # Also applies to requests that are not AWS calls (network disruption of a subnet); such a
    # request is matched by its scope alone.
    other_traffic: bool = False
    # Calls over this rate get the fault; the others pass (fisproxy:api:rate-limit).
    limit: RateLimit | None = None
    # An AWS or LocalStack action's rule naming no region acts in its experiment's Region;
    # False: in every Region (network disruption, whose scope says which Regions it covers).
    regional: bool = True

    def matches(self, names: frozenset[str], operation: str | None, region: str | None) -> bool:
        """Whether a call (its service names, operation, region) is one this rule targets.
        The one matcher: the engine, the Chaos API and the report all ask it."""
        return (
            (self.services is None or not self.services.isdisjoint(names))
            and (self.operations is None or operation in self.operations)
            and (self.region is None or region == self.region)
        )

    @property
    def terminal_only(self) -> bool:
        """Every fault ends the request (no latency): once a request has its error, rules like
        this one are not even sampled."""
        return all(f.kind != "latency" for f in self.faults)


@dataclass(frozen=True, slots=True)
class Fault:
    """A FaultSpec chosen for one request, with where it came from.

    `source` is `<experiment id>/<action name>` for FIS actions, `chaos/<n>` for Chaos API
    rules. `stopped` is set when the action stops: the proxy cuts waits short on it.
    """

    source: str
    spec: FaultSpec
    latency_ms: float = 0.0
    stopped: StopSignal | None = None
    # The `x-fisproxy-fault` header value, `<experiment id>/<action name>/<kind>`: made once,
    # read by the header, the log line, the metrics and the request record.
    label: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", f"{self.source}/{self.spec.kind}")
