"""The engine's own data about an experiment, persisted beside the experiment model.

The `Experiment` model is what the FIS API shows; `RunState` is what the engine needs to carry
an experiment on after a restart (or, in a fleet, on another proxy): the region it runs in, what
its targets resolved to, when running actions are planned to end, and a stop that was asked for
but not yet carried out. Field names are the JSON keys stored since the first version.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ResolvedSet(BaseModel):
    """What one target resolved to. `by_arn`: named by resourceArns (never skipped when empty)."""

    model_config = ConfigDict(extra="ignore")

    resource_type: str
    arns: list[str] = Field(default_factory=list)
    access_keys: list[str] = Field(default_factory=list)
    by_arn: bool = False

    @property
    def empty(self) -> bool:
        return not self.arns and not self.access_keys


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
    # Written by versions that kept a heartbeat per experiment; read once at resume.
    heartbeat: float | None = None
