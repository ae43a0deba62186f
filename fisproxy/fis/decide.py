"""Which faults apply to one AWS call: the one place that decides.

The engine (FIS experiments) and the Chaos API each hand over the rules that could apply, in
order; `decide` keeps every latency of the rules that match the call and win their sampling
roll, then at most one terminal fault (error or disconnect): one request can fail only one way.
FIS actions come before Chaos rules, so an experiment's error wins over a Chaos rule's.

Pure and cheap: no I/O, no locks, no pydantic. It runs on the proxy's event loop per request.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from fisproxy.aws.call import AwsCall, RequestParts
from fisproxy.fis.faults import Fault, RateLimit, RuleSpec, StopSignal


class CandidateRule(Protocol):
    """A rule that is in force now: what it matches, where it came from, when it ends."""

    @property
    def rule(self) -> RuleSpec: ...

    @property
    def source(self) -> str: ...

    @property
    def stopped(self) -> StopSignal | None: ...

    def admits(self, access_key: str | None) -> bool:
        """Whether the caller (by its access key id) is one this rule targets."""
        ...


class Limiter(Protocol):
    """The rates of rate-limited rules (`fis/ratelimit.py`): whether one more call from the
    rule `source` is within `limit` now. Memory only: it runs per request."""

    def admit(self, source: str, limit: RateLimit) -> bool: ...


@dataclass(frozen=True, slots=True)
class Decision:
    """What was decided for one call: every delay, then at most one error or disconnect."""

    call: AwsCall
    latencies: tuple[Fault, ...] = ()
    terminal: Fault | None = None

    @property
    def faults(self) -> tuple[Fault, ...]:
        return (*self.latencies, self.terminal) if self.terminal else self.latencies

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(f.label for f in self.faults)

    def __bool__(self) -> bool:
        return bool(self.latencies) or self.terminal is not None


def decide(call: AwsCall, candidates: Iterable[CandidateRule], rng: random.Random,
           request: RequestParts | None = None, limits: Limiter | None = None) -> Decision:
    """The faults for `call` from `candidates` (in priority order).

    A rule applies when it matches the call's service, operation and region, admits its caller,
    names a resource in its scope (if it has one; `request` tells which resource the call
    names), and wins its percentage roll (sampled per request; a rule that cannot add anything
    because the call already has its terminal fault is not sampled). A rate-limited rule
    applies to the calls over its rate (`limits` counts them; without it, none is over).
    """
    latencies: list[Fault] = []
    terminal: Fault | None = None
    names, operation, region = call.names, call.operation, call.region
    for candidate in candidates:
        spec = candidate.rule
        if terminal is not None and spec.terminal_only:
            continue
        if not spec.matches(names, operation, region) or not candidate.admits(call.access_key):
            continue
        if spec.scope is not None and not spec.scope.admits(call, request):
            continue
        if spec.limit is not None and (limits is None or limits.admit(candidate.source, spec.limit)):
            continue  # within the rate: this call passes
        if spec.percentage < 100 and rng.random() * 100 >= spec.percentage:
            continue
        for fs in spec.faults:
            if fs.kind == "latency":
                ms = fs.latency_ms + (rng.uniform(0, fs.jitter_ms) if fs.jitter_ms else 0.0)
                latencies.append(Fault(candidate.source, fs, ms, candidate.stopped))
            elif terminal is None:
                terminal = Fault(candidate.source, fs, fs.latency_ms, candidate.stopped)
    return Decision(call, tuple(latencies), terminal)


def needs_body(candidates: Iterable[CandidateRule]) -> bool:
    """Whether some candidate can only tell from the request body whether it applies."""
    return any(c.rule.scope is not None and c.rule.scope.needs_body for c in candidates)


def needs_address(candidates: Iterable[CandidateRule]) -> bool:
    """Whether some candidate matches requests by the IP address they go to (network
    disruption): the proxy resolves a host name first."""
    return any(getattr(c.rule.scope, "needs_address", False) for c in candidates)


# What `decide` is given for a request that is not an AWS call: only rules that also apply to
# other traffic (network disruption) are asked, and they match it by their scope alone.
OTHER_TRAFFIC = AwsCall(service="")
