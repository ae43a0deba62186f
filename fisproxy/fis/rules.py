"""The rules of running actions, indexed by service for the per-request lookup.

The engine puts a rule in when an action starts and takes it out when it ends, from whatever
thread it runs on; the proxy reads `RuleIndex.candidates` on its event loop, per request. The
index is immutable and replaced whole on every change, so readers take no lock and always see
a consistent set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fisproxy.aws.call import AwsCall
from fisproxy.fis.faults import RuleSpec, StopSignal
from fisproxy.fis.identities import Identities, RoleRef


@dataclass(frozen=True, slots=True)
class CallerFilter:
    """The callers an action targets (its `aws:iam:role` targets): access keys named
    explicitly, and roles matched through the keys learned from STS traffic."""

    roles: frozenset[RoleRef]
    keys: frozenset[str]
    identities: Identities

    def admits(self, access_key: str | None) -> bool:
        if access_key is None:
            return False
        if access_key in self.keys:
            return True
        role = self.identities.role_of(access_key)
        return role is not None and role in self.roles


@dataclass(frozen=True, slots=True)
class ActiveRule:
    """A running action's rule. `callers` None: every caller."""

    experiment_id: str
    action_name: str
    rule: RuleSpec
    stopped: StopSignal
    callers: CallerFilter | None = None
    source: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", f"{self.experiment_id}/{self.action_name}")

    def admits(self, access_key: str | None) -> bool:
        return self.callers is None or self.callers.admits(access_key)


@dataclass(frozen=True, slots=True)
class RuleIndex:
    """Rules by the service names they target; rules for any service apart."""

    by_service: Mapping[str, tuple[ActiveRule, ...]] = field(default_factory=dict)
    any_service: tuple[ActiveRule, ...] = ()
    # Rules that also apply to requests that are not AWS calls (network disruption).
    other_traffic: tuple[ActiveRule, ...] = ()

    @classmethod
    def build(cls, rules: Iterable[ActiveRule]) -> RuleIndex:
        by_service: dict[str, list[ActiveRule]] = {}
        any_service: list[ActiveRule] = []
        other: list[ActiveRule] = []
        for r in rules:
            if r.rule.other_traffic:
                other.append(r)
            if r.rule.services is None:
                any_service.append(r)
            else:
                for s in r.rule.services:
                    by_service.setdefault(s, []).append(r)
        return cls({k: tuple(v) for k, v in by_service.items()}, tuple(any_service), tuple(other))

    def __bool__(self) -> bool:
        return bool(self.by_service) or bool(self.any_service)

    def candidates(self, call: AwsCall) -> tuple[ActiveRule, ...]:
        """The rules that could apply to `call` (by service), each once, in a stable order."""
        if len(call.names) == 1:
            return self.by_service.get(call.service, ()) + self.any_service
        seen: dict[int, ActiveRule] = {}
        for name in sorted(call.names):  # sorted: the same order in every run (--seed)
            for r in self.by_service.get(name, ()):
                seen.setdefault(id(r), r)
        return (*seen.values(), *self.any_service)


EMPTY = RuleIndex()
