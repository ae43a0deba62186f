"""The engine's own data about an experiment, persisted beside the experiment model.

The `Experiment` model is what the FIS API shows; `RunState` is what the engine needs to carry
an experiment on after a restart (or, in a fleet, on another proxy): the region it runs in, what
its targets resolved to, when running actions are planned to end (absolute times: a restart or a
takeover keeps them), how far its resource actions got, and how it ends while they are undone.
Field names are the JSON keys stored since the first version.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fisproxy.fis.resources.targets import ResolvedTarget

Phase = Literal["intent", "started"]


class ResolvedResource(BaseModel):
    arn: str
    id: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class ResolvedSet(BaseModel):
    """What one target resolved to (`ResolvedTarget.to_json()`). `by_arn`: named by
    resourceArns (never skipped when empty)."""

    model_config = ConfigDict(extra="ignore")

    name: str = ""
    resource_type: str
    resources: list[ResolvedResource] = Field(default_factory=list)
    parameters: dict[str, str] = Field(default_factory=dict)
    access_keys: list[str] = Field(default_factory=list)
    by_arn: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_arns(cls, data: Any) -> Any:
        # Stored by earlier versions as a plain `arns` list.
        if isinstance(data, dict) and "arns" in data and "resources" not in data:
            data = {**data, "resources": [{"arn": a, "id": a.rsplit("/", 1)[-1]} for a in data["arns"]]}
        return data

    @classmethod
    def of(cls, target: ResolvedTarget) -> ResolvedSet:
        return cls.model_validate(target.to_json())

    def target(self) -> ResolvedTarget:
        return ResolvedTarget.from_json(self.model_dump())

    @property
    def arns(self) -> list[str]:
        return [r.arn for r in self.resources]

    @property
    def empty(self) -> bool:
        return not self.resources and not self.access_keys


class StopRequest(BaseModel):
    """How an experiment ends: the terminal state it gets (`stopped`, `failed`, `cancelled`,
    `completed`), its reason and, for `failed`, FIS's error (`code`, `location`, `accountId`).
    Kept while resource actions are being undone, and handed to the schedule's holder as a
    stop request when asked on another proxy."""

    status: str
    reason: str
    error: dict[str, str] | None = None


class RunState(BaseModel):
    model_config = ConfigDict(extra="ignore")

    region: str = "us-east-1"
    resolved: dict[str, ResolvedSet] = Field(default_factory=dict)
    # Running actions -> planned end (epoch seconds), None for "until the experiment stops".
    ends: dict[str, float | None] = Field(default_factory=dict)
    stop: StopRequest | None = None
    stop_condition: str | None = None  # why a stop condition stopped it, for the log
    # Resource actions under way: what each needs to undo (`ActionContext.state`) and when its
    # time is up (epoch seconds; None: when its own wait ends).
    action_state: dict[str, dict[str, Any]] = Field(default_factory=dict)
    action_deadlines: dict[str, float | None] = Field(default_factory=dict)
    # How far each resource action got: `intent` (saved before its upstream call: a proxy that
    # resumes it checks the upstream before acting again) or `started` (the effect is done and
    # `action_state` says how to undo it). An action in `action_state` without a phase was
    # saved by an earlier version, after its effect: `started`.
    action_phase: dict[str, Phase] = Field(default_factory=dict)
    # Targets not resolved, with why (the upstream cannot list them, or only skipped actions use
    # them): the actions using them are skipped. Facts proxy-fault actions looked up on the
    # upstream at start (a prefix list's CIDRs), by action name.
    unresolved: dict[str, str] = Field(default_factory=dict)
    facts: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Actions fisproxy cannot perform (or whose API the upstream lacks) fail the experiment
    # instead of being skipped (the proxy option fisproxy_fail_unperformable, when it started).
    fail_unperformable: bool = False
    # The save this is, counted by the proxies that ran the schedule (a takeover goes on from
    # the stored count): a proxy that mirrors the experiment never goes back to an older save
    # (a change notice and a resync's read may cross). 0: saved by an earlier version.
    revision: int = 0

    def phase(self, action: str) -> Phase | None:
        if action in self.action_phase:
            return self.action_phase[action]
        return "started" if action in self.action_state else None
