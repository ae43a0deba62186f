"""The FIS API's response bodies: one pydantic model per distinct botocore `fis` output shape
(several operations answer the same: Create, Get, Update and DeleteExperimentTemplate all return
`{"experimentTemplate": ...}`). Handlers return these; `wire()` is what goes on the wire."""

from __future__ import annotations

from pydantic import Field

from fisproxy.fis.models import (
    Action,
    ActionSummary,
    Experiment,
    ExperimentSummary,
    ExperimentTemplate,
    ExperimentTemplateSummary,
    FisModel,
    ResolvedTarget,
    SafetyLever,
    TargetAccountConfiguration,
    TargetResourceType,
    TargetResourceTypeSummary,
)


class Empty(FisModel):
    """TagResource, UntagResource."""


class ExperimentTemplateResponse(FisModel):
    """Create, Get, Update and DeleteExperimentTemplate."""

    experiment_template: ExperimentTemplate


class ListExperimentTemplatesResponse(FisModel):
    experiment_templates: list[ExperimentTemplateSummary]
    next_token: str | None = None


class ExperimentResponse(FisModel):
    """Start, Get and StopExperiment."""

    experiment: Experiment


class ListExperimentsResponse(FisModel):
    experiments: list[ExperimentSummary]
    next_token: str | None = None


class ListExperimentResolvedTargetsResponse(FisModel):
    resolved_targets: list[ResolvedTarget]
    next_token: str | None = None


class GetActionResponse(FisModel):
    action: Action


class ListActionsResponse(FisModel):
    actions: list[ActionSummary]
    next_token: str | None = None


class GetTargetResourceTypeResponse(FisModel):
    target_resource_type: TargetResourceType


class ListTargetResourceTypesResponse(FisModel):
    target_resource_types: list[TargetResourceTypeSummary]
    next_token: str | None = None


class ListTagsForResourceResponse(FisModel):
    tags: dict[str, str] = Field(default_factory=dict)


class TargetAccountConfigurationResponse(FisModel):
    """Create, Get, Update and DeleteTargetAccountConfiguration, and
    GetExperimentTargetAccountConfiguration (the same fields)."""

    target_account_configuration: TargetAccountConfiguration


class ListTargetAccountConfigurationsResponse(FisModel):
    """ListTargetAccountConfigurations and ListExperimentTargetAccountConfigurations."""

    target_account_configurations: list[TargetAccountConfiguration]
    next_token: str | None = None


class SafetyLeverResponse(FisModel):
    """GetSafetyLever and UpdateSafetyLeverState."""

    safety_lever: SafetyLever
