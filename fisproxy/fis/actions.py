"""The action catalogue: every FIS action id fisproxy knows, keyed by actionId.

The catalogue's one definition is `data/actions.yaml` (AWS's actions reference, LocalStack's and
fisproxy's own actions), loaded once at import. Each `ActionSpec` documents its parameters and
targets (ListActions/GetAction), validates parameter values (`ParameterError` naming the
parameter) and says how fisproxy runs it (`kind`):

- `api-fault`: faults on API calls; `rule(params)` compiles it into the `RuleSpec` the proxy
  applies (its compiler in `apifaults.py`, keyed by action id).
- `resource`: API calls on the upstream made with the experiment role: `implementation`, the
  action's class in `fis/resources/` (how it runs, how it is undone).
- `proxy-fault`: a fault on the calls that name the targeted resources (Lambda invocations,
  Kinesis streams, ...), applied in the proxy: `scoped`, its compiler in `proxyfaults.py`.

Each action id is one `ActionSpec` entry: the catalogue's data plus, by kind, its compiler,
scoped compiler or implementation, attached here when the catalogue loads (one registry; no
other table maps an action id to behaviour). `compile` gives any running action's rule.
- `wait`: nothing happens; sequencing.
- `agent` / `aws-internal`: cannot run here. Such an action ends `skipped` when it would start,
  `skip_reason` saying what fisproxy cannot do and what that means, and the experiment runs on
  (AWS's published scenarios include such actions); with `fisproxy_fail_unperformable` the
  experiment fails at start instead, with `failure_reason`. `skip_reason()` is the one decision
  the engine applies: the action's own kind, or a target the upstream could not list.

Parameter values are strings on the wire, checked by the check each parameter names
(`paramchecks.py`: `percentage`, `duration:PT15M`, ...). Sampling, durations, operation filters
and role targeting are the engine's job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from typing import Any, Literal, cast, get_args

import yaml

from fisproxy.aws import catalog
from fisproxy.fis.apifaults import COMPILERS, Compiler
from fisproxy.fis.faults import RuleSpec
from fisproxy.fis.ids import parse_duration
from fisproxy.fis.paramchecks import ALL, CHECKS, did_you_mean, names, split_names
from fisproxy.fis.proxyfaults import (
    FACT_LOOKUPS,
    SCOPED_COMPILERS,
    START_NOTES,
    FactLookup,
    ScopedCompiler,
    StartNotes,
    Where,
)
from fisproxy.fis.resources import IMPLEMENTATIONS, ResolvedTarget, ResourceAction

ROLE = "aws:iam:role"

ActionKind = Literal["api-fault", "resource", "proxy-fault", "wait", "agent", "aws-internal"]
UnknownParameters = Literal["reject", "ignore"]


class ParameterError(ValueError):
    """A bad action parameter: `str()` is `<parameter>: <problem>`."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"{parameter}: {problem}")
        self.parameter = parameter
        self.problem = problem


@dataclass(frozen=True, slots=True)
class ParameterDoc:
    description: str
    required: bool = False
    # A CHECKS name (`percentage`, `duration:PT15M`, `one-of:tcp,udp`); None: any string.
    check: str | None = None


@dataclass(frozen=True)
class ActionSpec:
    """One action id: its documentation, validation, and how fisproxy runs it.

    `targets` maps an action target key to the resource type it needs (`Roles` ->
    `aws:iam:role`). `duration_parameter` names the parameter that says how long the action
    lasts (`duration`, `startInstancesAfterDuration`, `maxDuration`, ...). `operation_params`
    name the parameters holding operation names of `service` (checked against botocore's
    models). `compiler` turns an `api-fault` action's parameters into its `RuleSpec`.
    """

    action_id: str
    description: str
    parameters: Mapping[str, ParameterDoc] = field(default_factory=dict)
    targets: Mapping[str, str] = field(default_factory=dict)
    kind: ActionKind = "api-fault"
    reason: str | None = None
    duration_parameter: str | None = "duration"
    unknown_parameters: UnknownParameters = "reject"
    operation_params: tuple[str, ...] = ()
    compiler: Compiler | None = None
    scoped: ScopedCompiler | None = None
    implementation: type[ResourceAction] | None = None
    lookup: FactLookup | None = None  # what a proxy fault reads on the upstream at start
    notes: StartNotes | None = None  # what the action's log says when it starts

    @property
    def runnable(self) -> bool:
        """The engine applies it as a rule or a wait (what fisproxy ran before resource
        actions); resource and proxy-fault actions run through `fis/resources`."""
        return self.kind in ("api-fault", "wait")

    @property
    def performable(self) -> bool:
        """fisproxy can perform it, one way or another (False: `failure_reason` says why)."""
        return self.kind not in ("agent", "aws-internal")

    @property
    def failure_reason(self) -> str | None:
        """Why the action cannot run here (agent / aws-internal), when the proxy is told to
        fail such experiments (fisproxy_fail_unperformable)."""
        if self.performable:
            return None
        return f"{self.action_id} cannot run in fisproxy: it {self.reason}."

    @property
    def skipped_reason(self) -> str | None:
        """The state reason of this action when skipped (agent / aws-internal): what fisproxy
        cannot do, and that the experiment runs on without it."""
        if self.performable:
            return None
        return (f"Skipped: {self.action_id} cannot run in fisproxy: it {self.reason}. "
                "The experiment runs on without this action's effect.")

    def validate(self, parameters: Mapping[str, str]) -> None:
        """Raise ParameterError for the first bad parameter: a missing required one, an unknown
        one (unless this action ignores unknown parameters), a value its check refuses."""
        for name, param in self.parameters.items():
            if param.required and name not in parameters:
                raise ParameterError(name, f"required by {self.action_id}")
        for name, value in parameters.items():
            doc = self.parameters.get(name)
            if doc is None:
                if self.unknown_parameters == "ignore":
                    continue
                raise ParameterError(
                    name, f'{self.action_id} has no parameter "{name}" (valid: {names(self.parameters)})'
                )
            if doc.check is None:
                continue
            try:
                CHECKS.get(doc.check)(value)
            except ValueError as e:
                raise ParameterError(name, str(e)) from None
        self._check_operations(parameters)

    def ignored_parameters(self, parameters: Mapping[str, str]) -> tuple[str, ...]:
        """Parameters this action does not know and ignores (for the experiment log)."""
        return tuple(sorted(n for n in parameters if n not in self.parameters))

    def _check_operations(self, parameters: Mapping[str, str]) -> None:
        service = parameters.get("service")
        for name in self.operation_params:
            ops = split_names(parameters.get(name))
            if ops is None:
                continue
            if service is None or service == ALL:
                raise ParameterError(name, "operation names need a service parameter")
            known = catalog.operation_names(service)
            for op in ops:
                if op not in known:
                    raise ParameterError(
                        name, f'{service} has no operation "{op}"{did_you_mean(op, known)}'
                    )

    def duration(self, parameters: Mapping[str, str]) -> timedelta | None:
        """How long the action lasts: its duration parameter, or None when absent (an
        api-fault then lasts until the experiment stops; a resource action until its effect
        is done)."""
        if self.duration_parameter is None:
            return None
        value = parameters.get(self.duration_parameter)
        return parse_duration(value) if value is not None else None

    def rule(self, parameters: Mapping[str, str]) -> RuleSpec | None:
        """Which requests an api-fault action affects and how; None for every other kind."""
        if self.kind != "api-fault" or self.compiler is None:
            return None
        return self.compiler(parameters)

    def facts(self, parameters: Mapping[str, str], targets: Mapping[str, ResolvedTarget], clients: Any,
              region: str) -> dict[str, Any]:
        """What the running action's rule needs from the upstream, read once at experiment
        start (blocking): empty for most actions. Failure if it cannot be read."""
        return self.lookup(parameters, targets, clients, region) if self.lookup is not None else {}

    def start_notes(self, parameters: Mapping[str, str]) -> list[str]:
        """What the action's log says when it starts (network disruption: what fisproxy drops,
        what never passes through a proxy)."""
        return self.notes(parameters) if self.notes is not None else []

    def compile(self, parameters: Mapping[str, str], targets: Mapping[str, ResolvedTarget],
                where: Where) -> RuleSpec | None:
        """The rule of a running api-fault or proxy-fault action (`targets` by the action's
        target keys), or None: another kind, or a rule for other proxies (another subnet)."""
        if self.kind == "proxy-fault" and self.scoped is not None:
            return self.scoped(parameters, targets, where)
        return self.rule(parameters)


@dataclass(frozen=True, slots=True)
class ResourceTypeSpec:
    """A target resource type (ListTargetResourceTypes/GetTargetResourceType)."""

    resource_type: str
    description: str
    parameters: Mapping[str, ParameterDoc] = field(default_factory=dict)


ACTIONS: dict[str, ActionSpec] = {}
RESOURCE_TYPES: dict[str, ResourceTypeSpec] = {}


def get(action_id: str) -> ActionSpec:
    """The spec for `action_id`; ValueError naming close matches if it is unknown."""
    try:
        return ACTIONS[action_id]
    except KeyError:
        raise ValueError(
            f'unknown action "{action_id}"{did_you_mean(action_id, ACTIONS)}; see ListActions'
        ) from None


def skip_reason(action_id: str, action_targets: Mapping[str, str] | None,
                unresolved: Mapping[str, str]) -> str | None:
    """Why an action ends `skipped` instead of starting, or None: it is one fisproxy cannot
    perform (agent, AWS-internal), or a target it uses could not be resolved because the
    upstream does not implement the API that lists it (`unresolved`: target -> reason)."""
    spec = ACTIONS.get(action_id)
    if spec is not None and spec.skipped_reason is not None:
        return spec.skipped_reason
    for target in (action_targets or {}).values():
        if target in unresolved:
            return f"Skipped: {unresolved[target]}"
    return None


def targets_of_skipped_only(actions: Mapping[str, Any]) -> frozenset[str]:
    """Targets that only actions fisproxy skips use (an `aws:eks:pod` target of a pod fault):
    not resolved at all, so a target fisproxy cannot list does not fail the experiment.
    `actions`: action name -> an action with `action_id` and `targets`."""
    runnable: set[str] = set()
    skipped: set[str] = set()
    for action in actions.values():
        spec = ACTIONS.get(action.action_id)
        used = set((action.targets or {}).values())
        (skipped if spec is not None and not spec.performable else runnable).update(used)
    return frozenset(skipped - runnable)


def target_resource_types() -> dict[str, str]:
    """Every resource type an action can target, with its description."""
    return {name: spec.description for name, spec in sorted(RESOURCE_TYPES.items())}


# ---- loading the catalogue ------------------------------------------------------------------

def _parameter_docs(raw: Mapping[str, Any] | None) -> dict[str, ParameterDoc]:
    docs = {}
    for name, p in (raw or {}).items():
        doc = ParameterDoc(str(p["description"]), bool(p.get("required", False)), p.get("check"))
        if doc.check is not None:
            CHECKS.get(doc.check)  # an unknown check name fails the import, not a template
        docs[name] = doc
    return docs


def _load(text: str) -> tuple[dict[str, ActionSpec], dict[str, ResourceTypeSpec]]:
    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # C loader: 5x faster
    kinds = get_args(ActionKind)
    actions: dict[str, ActionSpec] = {}
    for action_id, raw in data["actions"].items():
        kind = raw["runs"]
        if kind not in kinds:
            raise ValueError(f"{action_id}: runs must be one of {kinds}, got {kind!r}")
        parameters = _parameter_docs(raw.get("parameters"))
        default_duration = "duration" if "duration" in parameters else None
        strict = action_id.startswith(("aws:fis:", "fisproxy:"))
        actions[action_id] = ActionSpec(
            action_id=action_id,
            description=raw["description"],
            parameters=parameters,
            targets=dict(raw.get("targets") or {}),
            kind=cast(ActionKind, kind),
            reason=raw.get("reason"),
            duration_parameter=raw.get("duration", default_duration),
            unknown_parameters=raw.get("unknown_parameters", "reject" if strict else "ignore"),
            operation_params=tuple(raw.get("operation_parameters") or ()),
            compiler=COMPILERS.get(action_id),
            scoped=SCOPED_COMPILERS.get(action_id),
            implementation=IMPLEMENTATIONS.get(action_id),
            lookup=FACT_LOOKUPS.get(action_id),
            notes=START_NOTES.get(action_id),
        )
    types = {
        name: ResourceTypeSpec(name, raw["description"], _parameter_docs(raw.get("parameters")))
        for name, raw in data["resource_types"].items()
    }
    return actions, types


def _load_packaged() -> None:
    text = resources.files("fisproxy.fis").joinpath("data/actions.yaml").read_text(encoding="utf-8")
    actions, types = _load(text)
    ACTIONS.update(actions)
    RESOURCE_TYPES.update(types)


_load_packaged()
