"""The FIS API's request bodies: one pydantic model per botocore `fis` input shape that has a
body, named after the operation (`CreateExperimentTemplateRequest`). URI labels and query
parameters are not here: the API reads them from the model (`api/wire.py`).

CreateExperimentTemplateRequest is also one entry of a templates file.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from fisproxy.fis.fielderror import parse
from fisproxy.fis.models import (
    ActionsMode,
    Arn,
    Description,
    EmptyTargetResolutionMode,
    ExperimentTemplate,
    ExperimentTemplateAction,
    ExperimentTemplateCloudWatchLogsLogConfiguration,
    ExperimentTemplateExperimentOptions,
    ExperimentTemplateLogConfiguration,
    ExperimentTemplateReportConfiguration,
    ExperimentTemplateS3LogConfiguration,
    ExperimentTemplateStopCondition,
    ExperimentTemplateTarget,
    FisModel,
    ParameterMap,
    TagMap,
)
from fisproxy.fis.templaterules import validate_template

ClientToken = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=r"\S")]


class CreateExperimentTemplateRequest(FisModel):
    """CreateExperimentTemplate's body; also one entry of a templates file. `clientToken` is
    required by the model but boto3 always fills it, so it is optional here (files have none)."""

    client_token: ClientToken | None = None
    description: Description
    stop_conditions: list[ExperimentTemplateStopCondition]
    targets: dict[str, ExperimentTemplateTarget] = Field(default_factory=dict)
    actions: dict[str, ExperimentTemplateAction]
    role_arn: Arn
    tags: TagMap = Field(default_factory=dict)
    log_configuration: ExperimentTemplateLogConfiguration | None = None
    experiment_options: ExperimentTemplateExperimentOptions | None = None
    experiment_report_configuration: ExperimentTemplateReportConfiguration | None = None

    @model_validator(mode="after")
    def _rules(self) -> Self:
        validate_template(self)
        return self


class UpdateExperimentTemplateActionInputItem(FisModel):
    """An action in an update: fields left out keep the value of the action of the same name."""

    action_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    description: Description | None = None
    parameters: ParameterMap | None = None
    targets: dict[str, str] | None = None
    start_after: list[str] | None = None


class UpdateExperimentTemplateLogConfigurationInput(FisModel):
    cloud_watch_logs_configuration: ExperimentTemplateCloudWatchLogsLogConfiguration | None = None
    s3_configuration: ExperimentTemplateS3LogConfiguration | None = None
    log_schema_version: int | None = None


class UpdateExperimentTemplateExperimentOptionsInput(FisModel):
    empty_target_resolution_mode: EmptyTargetResolutionMode | None = None


class UpdateExperimentTemplateRequest(FisModel):
    """Partial update: only the fields the request names change (`exclude_unset`). A given
    `targets`, `actions` or `stopConditions` replaces the whole collection; an action named
    again keeps the fields its update item leaves out."""

    description: Description | None = None
    stop_conditions: list[ExperimentTemplateStopCondition] | None = None
    targets: dict[str, ExperimentTemplateTarget] | None = None
    actions: dict[str, UpdateExperimentTemplateActionInputItem] | None = None
    role_arn: Arn | None = None
    log_configuration: UpdateExperimentTemplateLogConfigurationInput | None = None
    experiment_options: UpdateExperimentTemplateExperimentOptionsInput | None = None
    experiment_report_configuration: ExperimentTemplateReportConfiguration | None = None

    def apply_to(self, template: ExperimentTemplate) -> ExperimentTemplate:
        """`template` with this update applied (not validated: see validate_template)."""
        changes = self.model_dump(exclude_unset=True, exclude={"actions", "log_configuration",
                                                               "experiment_options"})
        given_fields = {k: getattr(self, k) for k in changes if getattr(self, k) is not None}
        out = template.model_copy(update=given_fields, deep=True)
        if self.actions is not None:
            merged: dict[str, ExperimentTemplateAction] = {}
            for name, item in self.actions.items():
                old = template.actions.get(name)
                given = item.model_dump(exclude_unset=True, exclude_none=True)
                base = old.model_dump() if old else {}
                merged[name] = parse(ExperimentTemplateAction, {**base, **given}, f"actions.{name}")
            out.actions = merged
        if self.log_configuration is not None:
            # Given fields merge into the current configuration; an empty object turns logging off.
            given = self.log_configuration.model_dump(exclude_unset=True)
            base = template.log_configuration.model_dump() if template.log_configuration else {}
            combined = {**base, **given}
            has_destination = combined.get("cloud_watch_logs_configuration") or combined.get("s3_configuration")
            out.log_configuration = (
                parse(ExperimentTemplateLogConfiguration, combined, "logConfiguration")
                if given and has_destination else None
            )
        if self.experiment_options is not None:
            base_options = template.experiment_options or ExperimentTemplateExperimentOptions()
            out.experiment_options = base_options.model_copy(
                update=self.experiment_options.model_dump(exclude_unset=True, exclude_none=True)
            )
        return out


class StartExperimentExperimentOptionsInput(FisModel):
    actions_mode: ActionsMode | None = None


class StartExperimentRequest(FisModel):
    experiment_template_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    client_token: ClientToken | None = None
    tags: TagMap = Field(default_factory=dict)
    experiment_options: StartExperimentExperimentOptionsInput | None = None


class TagResourceRequest(FisModel):
    tags: TagMap


class CreateTargetAccountConfigurationRequest(FisModel):
    client_token: ClientToken | None = None
    role_arn: Arn
    description: Annotated[str, StringConstraints(max_length=512)] | None = None


class UpdateTargetAccountConfigurationRequest(FisModel):
    role_arn: Arn | None = None
    description: Annotated[str, StringConstraints(max_length=512)] | None = None


class UpdateSafetyLeverStateInput(FisModel):
    status: Literal["engaged", "disengaged"]
    reason: str


class UpdateSafetyLeverStateRequest(FisModel):
    state: UpdateSafetyLeverStateInput
