"""Activation: running actions made into the rules the proxy applies, and the index of them.

`rule_for` compiles one running action through its entry in the action registry
(`ActionSpec.compile`: an api-fault's compiler, a proxy-fault's scoped compiler), limits it to
the experiment's region (AWS and LocalStack actions that name no region act in the experiment's
region; fisproxy's own act everywhere) and to the callers of its `aws:iam:role` targets.

`Rules` holds the rules in force on this proxy and the immutable `RuleIndex` built from them.
The engine changes it under its lock (any of its threads); the proxy reads `index` on its event
loop, per request, with no lock: `publish()` replaces the index whole. Taking a rule out sets its
`StopSignal` at once, so delays and hangs in flight end too.
"""

from __future__ import annotations

import asyncio
import dataclasses

from fisproxy.aws.call import AwsCall
from fisproxy.fis import targets
from fisproxy.fis.actions import ACTIONS
from fisproxy.fis.faults import StopSignal
from fisproxy.fis.identities import Identities, RoleRef, role_ref
from fisproxy.fis.models import ExperimentAction
from fisproxy.fis.proxyfaults import Where
from fisproxy.fis.rules import EMPTY, ActiveRule, CallerFilter, RuleIndex
from fisproxy.fis.runstate import RunState

# FIS experiments are regional: AWS and LocalStack actions that name no region act in the
# experiment's region (LocalStack's documented default). fisproxy's own actions that name no
# region act in every region.
REGIONAL_ACTION_PREFIXES = ("aws:", "localstack:")


def rule_for(experiment_id: str, name: str, action: ExperimentAction, state: RunState, where: Where,
             identities: Identities, signal: StopSignal) -> ActiveRule | None:
    """The rule of running action `name`, or None if it has none on this proxy (a resource
    action or a wait; a fault for another Availability Zone's or subnet's proxies)."""
    spec = ACTIONS.get(action.action_id)
    if spec is None:
        return None
    resolved = {key: state.resolved[t].target() for key, t in (action.targets or {}).items()
                if t in state.resolved}
    rule = spec.compile(action.parameters or {}, resolved, where)
    if rule is None or not where.placement.in_zones(rule.zones):
        return None
    if rule.region is None and rule.regional and action.action_id.startswith(REGIONAL_ACTION_PREFIXES):
        rule = dataclasses.replace(rule, region=state.region)
    roles: set[RoleRef] = set()
    keys: set[str] = set()
    role_targeted = False
    for target_name in (action.targets or {}).values():
        res = state.resolved.get(target_name)
        if res is None or res.resource_type != targets.ROLE:
            continue
        role_targeted = True
        keys.update(res.access_keys)
        roles.update(r for r in map(role_ref, res.arns) if r is not None)
    callers = CallerFilter(frozenset(roles), frozenset(keys), identities) if role_targeted else None
    return ActiveRule(experiment_id, name, rule, signal, callers)


class Rules:
    """The rules in force on this proxy, by (experiment, action). Not thread-safe: the engine
    calls it under its lock; `index` is safe to read from anywhere."""

    def __init__(self, where: Where, identities: Identities, loop: asyncio.AbstractEventLoop | None) -> None:
        self.where = where
        self.identities = identities
        self.loop = loop  # the proxy's event loop, where stop signals are awaited
        self.index: RuleIndex = EMPTY
        self._rules: dict[tuple[str, str], ActiveRule | None] = {}
        self._dirty = False

    def activate(self, experiment_id: str, name: str, action: ExperimentAction, state: RunState) -> None:
        """Put action `name` in force (nothing if it already is)."""
        if (experiment_id, name) in self._rules:
            return
        where = dataclasses.replace(self.where, region=state.region, facts=state.facts.get(name, {}))
        self._rules[(experiment_id, name)] = rule_for(
            experiment_id, name, action, state, where, self.identities, StopSignal(self.loop))
        self._dirty = True

    def deactivate(self, experiment_id: str, name: str) -> None:
        """End the faults of action `name` now (its signal set; the index at the next publish)."""
        if (experiment_id, name) not in self._rules:
            return
        rule = self._rules.pop((experiment_id, name))
        if rule is not None:
            rule.stopped.set()
        self._dirty = True

    def active(self, experiment_id: str) -> set[str]:
        """The actions of `experiment_id` in force here (with a rule or none on this proxy)."""
        return {name for (exp, name) in self._rules if exp == experiment_id}

    def deactivate_all(self, experiment_id: str) -> None:
        for name in self.active(experiment_id):
            self.deactivate(experiment_id, name)

    def candidates(self, call: AwsCall) -> tuple[ActiveRule, ...]:
        """The running actions' rules that could apply to `call` (the proxy's event loop, per
        request). Lock-free: one read of the index."""
        index = self.index
        return index.candidates(call) if index else ()

    def other_candidates(self) -> tuple[ActiveRule, ...]:
        """The running actions' rules that also apply to requests that are not AWS calls
        (network disruption of a subnet). Lock-free."""
        return self.index.other_traffic

    def publish(self) -> None:
        """Replace the index the proxy reads, if anything changed."""
        if self._dirty:
            self.index = RuleIndex.build(r for r in self._rules.values() if r is not None)
            self._dirty = False
