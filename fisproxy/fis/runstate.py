"""The engine's own data about an experiment, persisted beside the experiment model.

The `Experiment` model is what the FIS API shows; `RunState` is what the engine needs to carry
an experiment on after a restart (or, in a fleet, on another proxy): the region it runs in, what
its targets resolved to, when running actions are planned to end, and a stop that was asked for
but not yet carried out. Field names are the JSON keys stored since the first version.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fisproxy.fis.resources.targets import ResolvedTarget


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
    """The terminal state a stop asked for, carried out at the engine's next step."""

    status: str
    reason: str


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
    # Targets not resolved, with why (the upstream cannot list them, or only skipped actions use
    # them): the actions using them are skipped. Facts proxy-fault actions looked up on the
    # upstream at start (a prefix list's CIDRs), by action name.
    unresolved: dict[str, str] = Field(default_factory=dict)
    facts: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Written by versions that kept a heartbeat per experiment; read once at resume.
    heartbeat: float | None = None
