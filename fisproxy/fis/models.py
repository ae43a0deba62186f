"""The FIS shapes: one pydantic model per botocore `fis` shape of a template, an experiment
and the other resources, the one definition of each (requests and responses of the API are
`inputs.py` and `outputs.py`, built from these).

Attributes are snake_case, the wire is camelCase (`alias_generator=to_camel`; both spellings are
accepted on input). Timestamps are UTC datetimes, truncated to milliseconds, and travel as epoch
seconds (rest-json's default). `wire()` gives the JSON-ready dict boto3 parses.

The same models validate API bodies and templates files, shape responses and are what the store
writes. Structural checks (types, lengths, enums, the selection-mode grammar) come from the
field types; the rules that span fields are `templaterules.py`. Either way a bad input becomes a
`FieldError` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
)
from pydantic.alias_generators import to_camel

from fisproxy.fis.fielderror import FieldError
from fisproxy.fis.targets import SelectionModeError, parse_selection_mode

# ---- field types ----------------------------------------------------------------------------

def _utc_ms(t: datetime) -> datetime:
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


# Epoch seconds on the wire (`1616432680.927`), an aware UTC datetime in Python.
Timestamp = Annotated[
    datetime,
    AfterValidator(_utc_ms),
    PlainSerializer(lambda t: round(t.timestamp(), 3), return_type=float, when_used="json"),
]


def _stringify(value: Any) -> Any:
    # Parameter values are strings in the model; LocalStack docs and YAML files send numbers.
    if isinstance(value, Mapping):
        return {k: (str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, int | float) else v)
                for k, v in value.items()}
    return value


ParameterMap = Annotated[dict[str, str], BeforeValidator(_stringify)]
TagKey = Annotated[str, StringConstraints(min_length=1, max_length=128)]
TagValue = Annotated[str, StringConstraints(max_length=256)]
TagMap = Annotated[dict[TagKey, TagValue], Field(max_length=50)]
Description = Annotated[str, StringConstraints(min_length=1, max_length=512)]
Arn = Annotated[str, StringConstraints(min_length=20, max_length=2048)]

ExperimentStatus = Literal[
    "pending", "initiating", "running", "completed", "stopping", "stopped", "failed", "cancelled"
]
ExperimentActionStatus = Literal[
    "pending", "initiating", "running", "completed", "cancelled", "stopping", "stopped", "failed", "skipped"
]
AccountTargeting = Literal["single-account", "multi-account"]
EmptyTargetResolutionMode = Literal["fail", "skip"]
ActionsMode = Literal["skip-all", "run-all"]
TERMINAL_STATUSES = frozenset({"completed", "stopped", "failed", "cancelled"})
ACTIVE_STATUSES = frozenset({"pending", "initiating", "running", "stopping"})  # not ended yet


class FisModel(BaseModel):
    """Base: camelCase on the wire, snake_case in Python, unknown fields refused (typos in a
    templates file must not be silently ignored)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict for responses and storage."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

# ---- experiment templates -------------------------------------------------------------------

class ExperimentTemplateAction(FisModel):
    action_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    description: Description | None = None
    parameters: ParameterMap = Field(default_factory=dict)
    targets: dict[str, str] = Field(default_factory=dict)
    start_after: list[str] = Field(default_factory=list)


class ExperimentTemplateTargetFilter(FisModel):
    path: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    values: list[Annotated[str, StringConstraints(max_length=128)]]


def _selection_mode(mode: str) -> str:
    try:
        parse_selection_mode(mode)
    except SelectionModeError as e:
        raise FieldError("", e.problem) from None
    return mode


# `ALL`, `COUNT(n)` or `PERCENT(n)`: the grammar of `targets.py`.
SelectionMode = Annotated[str, StringConstraints(min_length=1, max_length=64), AfterValidator(_selection_mode)]


class ExperimentTemplateTarget(FisModel):
    resource_type: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    resource_arns: Annotated[list[Arn], Field(max_length=5)] = Field(default_factory=list)
    resource_tags: TagMap = Field(default_factory=dict)
    filters: list[ExperimentTemplateTargetFilter] = Field(default_factory=list)
    selection_mode: SelectionMode
    parameters: ParameterMap = Field(default_factory=dict)


class ExperimentTemplateStopCondition(FisModel):
    source: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    value: Arn | None = None


class ExperimentTemplateCloudWatchLogsLogConfiguration(FisModel):
    log_group_arn: Arn


class ExperimentTemplateS3LogConfiguration(FisModel):
    bucket_name: Annotated[str, StringConstraints(min_length=3, max_length=63)]
    prefix: Annotated[str, StringConstraints(min_length=1, max_length=700)] | None = None


class ExperimentTemplateLogConfiguration(FisModel):
    cloud_watch_logs_configuration: ExperimentTemplateCloudWatchLogsLogConfiguration | None = None
    s3_configuration: ExperimentTemplateS3LogConfiguration | None = None
    log_schema_version: int


class ExperimentTemplateExperimentOptions(FisModel):
    account_targeting: AccountTargeting | None = None
    empty_target_resolution_mode: EmptyTargetResolutionMode | None = None


class ReportConfigurationS3Output(FisModel):
    bucket_name: Annotated[str, StringConstraints(min_length=3, max_length=63)] | None = None
    prefix: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None


class ExperimentTemplateReportConfigurationOutputs(FisModel):
    s3_configuration: ReportConfigurationS3Output | None = None


class ReportConfigurationCloudWatchDashboard(FisModel):
    dashboard_identifier: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None


class ExperimentTemplateReportConfigurationDataSources(FisModel):
    cloud_watch_dashboards: list[ReportConfigurationCloudWatchDashboard] | None = None


class ExperimentTemplateReportConfiguration(FisModel):
    outputs: ExperimentTemplateReportConfigurationOutputs | None = None
    data_sources: ExperimentTemplateReportConfigurationDataSources | None = None
    pre_experiment_duration: Annotated[str, StringConstraints(max_length=32)] | None = None
    post_experiment_duration: Annotated[str, StringConstraints(max_length=32)] | None = None


class ExperimentTemplate(FisModel):
    """A stored template, as GetExperimentTemplate returns it."""

    id: str
    arn: str | None = None
    description: str | None = None
    targets: dict[str, ExperimentTemplateTarget] = Field(default_factory=dict)
    actions: dict[str, ExperimentTemplateAction] = Field(default_factory=dict)
    stop_conditions: list[ExperimentTemplateStopCondition] = Field(default_factory=list)
    creation_time: Timestamp | None = None
    last_update_time: Timestamp | None = None
    role_arn: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    log_configuration: ExperimentTemplateLogConfiguration | None = None
    experiment_options: ExperimentTemplateExperimentOptions | None = None
    target_account_configurations_count: int = 0
    experiment_report_configuration: ExperimentTemplateReportConfiguration | None = None


class ExperimentTemplateSummary(FisModel):
    id: str
    arn: str | None = None
    description: str | None = None
    creation_time: Timestamp | None = None
    last_update_time: Timestamp | None = None
    tags: dict[str, str] = Field(default_factory=dict)

    @classmethod
    def of(cls, t: ExperimentTemplate) -> Self:
        return cls(id=t.id, arn=t.arn, description=t.description, creation_time=t.creation_time,
                   last_update_time=t.last_update_time, tags=t.tags)

# ---- experiments ----------------------------------------------------------------------------

class ExperimentError(FisModel):
    account_id: str | None = None
    code: str | None = None
    location: str | None = None


class ExperimentState(FisModel):
    status: ExperimentStatus
    reason: str | None = None
    error: ExperimentError | None = None


class ExperimentActionState(FisModel):
    status: ExperimentActionStatus
    reason: str | None = None


class ExperimentAction(FisModel):
    action_id: str
    description: str | None = None
    parameters: ParameterMap = Field(default_factory=dict)
    targets: dict[str, str] = Field(default_factory=dict)
    start_after: list[str] = Field(default_factory=list)
    state: ExperimentActionState = Field(
        default_factory=lambda: ExperimentActionState(status="pending", reason="Initial state")
    )
    start_time: Timestamp | None = None
    end_time: Timestamp | None = None


class ExperimentTarget(ExperimentTemplateTarget):
    pass


class ExperimentStopCondition(ExperimentTemplateStopCondition):
    pass


class ExperimentLogConfiguration(ExperimentTemplateLogConfiguration):
    pass


class ExperimentReportConfiguration(ExperimentTemplateReportConfiguration):
    pass


class ExperimentOptions(FisModel):
    account_targeting: AccountTargeting | None = None
    empty_target_resolution_mode: EmptyTargetResolutionMode | None = None
    actions_mode: ActionsMode | None = None


class ExperimentReportS3Report(FisModel):
    arn: str | None = None
    report_type: str | None = None


class ExperimentReportError(FisModel):
    code: str | None = None


class ExperimentReportState(FisModel):
    status: Literal["pending", "running", "completed", "cancelled", "failed"] | None = None
    reason: str | None = None
    error: ExperimentReportError | None = None


class ExperimentReport(FisModel):
    state: ExperimentReportState | None = None
    s3_reports: list[ExperimentReportS3Report] | None = None


class Experiment(FisModel):
    id: str
    arn: str | None = None
    experiment_template_id: str | None = None
    role_arn: str | None = None
    state: ExperimentState = Field(
        default_factory=lambda: ExperimentState(status="initiating", reason="Experiment is initiating.")
    )
    targets: dict[str, ExperimentTarget] = Field(default_factory=dict)
    actions: dict[str, ExperimentAction] = Field(default_factory=dict)
    stop_conditions: list[ExperimentStopCondition] = Field(default_factory=list)
    creation_time: Timestamp | None = None
    start_time: Timestamp | None = None
    end_time: Timestamp | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    log_configuration: ExperimentLogConfiguration | None = None
    experiment_options: ExperimentOptions | None = None
    target_account_configurations_count: int = 0
    experiment_report_configuration: ExperimentReportConfiguration | None = None
    experiment_report: ExperimentReport | None = None

    @property
    def terminal(self) -> bool:
        return self.state.status in TERMINAL_STATUSES

    @classmethod
    def from_template(
        cls,
        template: ExperimentTemplate,
        *,
        experiment_id: str,
        arn: str,
        created: datetime,
        tags: Mapping[str, str] | None = None,
        actions_mode: ActionsMode = "run-all",
    ) -> Self:
        """A new `initiating` experiment copying `template`, actions `pending`."""
        t = template.model_dump()
        options = template.experiment_options
        return cls(
            id=experiment_id,
            arn=arn,
            experiment_template_id=template.id,
            role_arn=template.role_arn,
            targets=t["targets"],
            actions=t["actions"],
            stop_conditions=t["stop_conditions"],
            creation_time=created,
            start_time=created,
            tags=dict(tags or {}),
            log_configuration=t["log_configuration"],
            experiment_options=ExperimentOptions(
                account_targeting=options.account_targeting if options else "single-account",
                empty_target_resolution_mode=options.empty_target_resolution_mode if options else "fail",
                actions_mode=actions_mode,
            ),
            target_account_configurations_count=template.target_account_configurations_count,
            experiment_report_configuration=t["experiment_report_configuration"],
        )


class ExperimentSummary(FisModel):
    id: str
    arn: str | None = None
    experiment_template_id: str | None = None
    state: ExperimentState | None = None
    creation_time: Timestamp | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    experiment_options: ExperimentOptions | None = None

    @classmethod
    def of(cls, e: Experiment) -> Self:
        return cls(id=e.id, arn=e.arn, experiment_template_id=e.experiment_template_id, state=e.state,
                   creation_time=e.creation_time, tags=e.tags, experiment_options=e.experiment_options)


class ResolvedTarget(FisModel):
    resource_type: str | None = None
    target_name: str | None = None
    target_information: dict[str, str] = Field(default_factory=dict)


# ---- accounts, safety levers, actions, resource types ---------------------------------------

class TargetAccountConfiguration(FisModel):
    role_arn: str | None = None
    account_id: str
    description: str | None = None


class SafetyLeverState(FisModel):
    status: Literal["disengaged", "engaged", "engaging"]
    reason: str | None = None


class SafetyLever(FisModel):
    id: str
    arn: str | None = None
    state: SafetyLeverState


class ActionParameter(FisModel):
    description: str | None = None
    required: bool | None = None


class ActionTarget(FisModel):
    resource_type: str | None = None


class ActionSummary(FisModel):
    id: str
    arn: str | None = None
    description: str | None = None
    targets: dict[str, ActionTarget] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)


class Action(ActionSummary):
    parameters: dict[str, ActionParameter] = Field(default_factory=dict)


class TargetResourceTypeParameter(FisModel):
    description: str | None = None
    required: bool | None = None


class TargetResourceTypeSummary(FisModel):
    resource_type: str
    description: str | None = None


class TargetResourceType(TargetResourceTypeSummary):
    parameters: dict[str, TargetResourceTypeParameter] = Field(default_factory=dict)
