"""The FIS shapes: one pydantic model per botocore `fis` shape that fisproxy uses.

Attributes are snake_case, the wire is camelCase (`alias_generator=to_camel`; both spellings are
accepted on input). Timestamps are UTC datetimes, truncated to milliseconds, and travel as epoch
seconds (rest-json's default). `wire()` gives the JSON-ready dict boto3 parses.

The same models validate API bodies and templates files, shape responses and are what the store
writes. Structural checks (types, lengths, enums) come from the field types; the rules that span
fields (known action ids and their parameters, target references, `startAfter` cycles, quotas)
live in `validate_template`. Either way a bad input becomes a `FieldError` whose message names
the field: `actions.ThrottleAPI.parameters.percentage: must be an integer 1-100, got "150"`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Protocol, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from fisproxy.fis import actions as action_catalog
from fisproxy.fis import ids

MAX_ACTIONS = 20
MAX_STOP_CONDITIONS = 5
MAX_NAME = 64


class FieldError(ValueError):
    """Bad input, naming the field: `str()` is `<field path>: <problem>`."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem

    @classmethod
    def from_pydantic(cls, error: ValidationError, prefix: str = "") -> FieldError:
        """The first problem pydantic found (and how many more), with its field path."""
        problems = error.errors()
        first = problems[0]
        field = ".".join([prefix] * bool(prefix) + [_printable(str(part)) for part in first["loc"]])
        cause = (first.get("ctx") or {}).get("error")
        if isinstance(cause, FieldError):
            found = FieldError(".".join(p for p in (field, cause.field) if p), cause.problem)
        else:
            found = FieldError(field, _problem(first))
        if len(problems) > 1:
            more = len(problems) - 1
            return cls(found.field, f"{found.problem} (and {more} more problem{'s' * (more > 1)})")
        return found


def _printable(text: str) -> str:
    # Undecodable bytes (lone surrogates) shown escaped: messages must encode as UTF-8.
    return text.encode("utf-8", "backslashreplace").decode()


def _problem(err: Any) -> str:
    if err["type"] == "missing":
        return "required"
    if err["type"] == "extra_forbidden":
        return "unknown field"
    value = err.get("input")
    if isinstance(value, str):
        if len(value) > 60:
            value = value[:57] + "..."
        value = _printable(value)
    got = f', got "{value}"' if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
    return f"{err['msg']}{got}"


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: Any, prefix: str = "") -> M:
    """`model.model_validate(data)`, with errors as a FieldError naming the field."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise FieldError.from_pydantic(e, prefix) from None


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


class ExperimentTemplateTarget(FisModel):
    resource_type: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    resource_arns: Annotated[list[Arn], Field(max_length=5)] = Field(default_factory=list)
    resource_tags: TagMap = Field(default_factory=dict)
    filters: list[ExperimentTemplateTargetFilter] = Field(default_factory=list)
    selection_mode: Annotated[str, StringConstraints(min_length=1, max_length=64)]
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


# ---- requests -------------------------------------------------------------------------------

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


# ---- rules across fields --------------------------------------------------------------------

# Role ARNs as FIS needs them; LocalStack's templates leave out the empty region field
# (`arn:aws:iam:000000000000:role/ExperimentRole`), which is accepted too.
_ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::?\d{12}:role/\S+$")
_ALARM_ARN = re.compile(r"^arn:aws[\w-]*:cloudwatch:[a-z0-9-]+:\d{12}:alarm:\S+$")
_SELECTION_MODE = re.compile(r"^(ALL|COUNT\((?P<count>\d+)\)|PERCENT\((?P<percent>\d+)\))$")
STOP_CONDITION_SOURCES = ("none", "aws:cloudwatch:alarm")


class _TemplateParts(Protocol):
    """What validate_template reads: a CreateExperimentTemplateRequest or an ExperimentTemplate."""

    role_arn: str | None
    targets: Mapping[str, ExperimentTemplateTarget]
    actions: Mapping[str, ExperimentTemplateAction]
    stop_conditions: list[ExperimentTemplateStopCondition]


def validate_template(t: _TemplateParts | CreateExperimentTemplateRequest | ExperimentTemplate) -> None:
    """Raise FieldError for the first rule `t` breaks (the rules the field types cannot say)."""
    if t.role_arn is not None and not _ROLE_ARN.match(t.role_arn):
        raise FieldError("roleArn", f'must be an IAM role ARN like arn:aws:iam::123456789012:role/fis, got "{t.role_arn}"')
    _validate_targets(t.targets)
    _validate_actions(t.actions, t.targets)
    _validate_stop_conditions(t.stop_conditions)
    _validate_report_configuration(getattr(t, "experiment_report_configuration", None))


def _validate_report_configuration(config: ExperimentTemplateReportConfiguration | None) -> None:
    if config is None:
        return
    for field, text in (("preExperimentDuration", config.pre_experiment_duration),
                        ("postExperimentDuration", config.post_experiment_duration)):
        if text is not None:
            try:
                ids.parse_duration(text)
            except ValueError as e:
                raise FieldError(f"experimentReportConfiguration.{field}", str(e)) from None


def _check_name(field: str, name: str) -> None:
    if not name.strip():
        raise FieldError(field, "names must not be blank")
    if len(name) > MAX_NAME:
        raise FieldError(f"{field}.{name}", f"names are at most {MAX_NAME} characters, got {len(name)}")


def _validate_targets(targets: Mapping[str, ExperimentTemplateTarget]) -> None:
    for name, target in targets.items():
        _check_name("targets", name)
        where = f"targets.{name}"
        m = _SELECTION_MODE.match(target.selection_mode)
        if not m:
            raise FieldError(f"{where}.selectionMode",
                             f'must be ALL, COUNT(n) or PERCENT(n), got "{target.selection_mode}"')
        if m["count"] is not None and int(m["count"]) < 1:
            raise FieldError(f"{where}.selectionMode", f'COUNT needs at least 1, got "{target.selection_mode}"')
        if m["percent"] is not None and not 1 <= int(m["percent"]) <= 100:
            raise FieldError(f"{where}.selectionMode", f'PERCENT takes 1-100, got "{target.selection_mode}"')
        if target.resource_arns and (target.resource_tags or target.filters):
            raise FieldError(f"{where}.resourceArns", "cannot be combined with resourceTags or filters")
        if not (target.resource_arns or target.resource_tags or target.parameters):
            raise FieldError(where, "needs resourceArns, resourceTags or parameters")


def _validate_actions(
    actions: Mapping[str, ExperimentTemplateAction], targets: Mapping[str, ExperimentTemplateTarget]
) -> None:
    if not actions:
        raise FieldError("actions", "a template needs at least one action")
    if len(actions) > MAX_ACTIONS:
        raise FieldError("actions", f"at most {MAX_ACTIONS} actions per template, got {len(actions)}")
    for name, action in actions.items():
        _check_name("actions", name)
        where = f"actions.{name}"
        try:
            spec = action_catalog.get(action.action_id)
        except ValueError as e:
            raise FieldError(f"{where}.actionId", str(e)) from None
        for param, value in action.parameters.items():
            if not 1 <= len(value) <= 1024:
                raise FieldError(f"{where}.parameters.{param}", "values are 1-1024 characters")
        try:
            spec.validate(action.parameters)
        except action_catalog.ParameterError as e:
            raise FieldError(f"{where}.parameters.{e.parameter}", e.problem) from None
        for key, target_name in action.targets.items():
            field = f"{where}.targets.{key}"
            needed = spec.targets.get(key)
            if needed is None and spec.runnable:
                valid = ", ".join(spec.targets) or "none"
                raise FieldError(field, f'{spec.action_id} takes no "{key}" target (valid: {valid})')
            target = targets.get(target_name)
            if target is None:
                known = ", ".join(targets) or "none defined"
                raise FieldError(field, f'names no target "{target_name}" (targets: {known})')
            if needed is not None and target.resource_type != needed:
                raise FieldError(field, f'target "{target_name}" is {target.resource_type}, but {key} needs {needed}')
        for before in action.start_after:
            if before == name:
                raise FieldError(f"{where}.startAfter", "an action cannot start after itself")
            if before not in actions:
                raise FieldError(f"{where}.startAfter", f'names no action "{before}"')
    cycle = _find_cycle({name: a.start_after for name, a in actions.items()})
    if cycle:
        raise FieldError(f"actions.{cycle[0]}.startAfter", "cycle " + " -> ".join(cycle))


def _find_cycle(edges: Mapping[str, list[str]]) -> list[str] | None:
    """A startAfter cycle as a path whose first and last names are equal, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in edges:
        if node not in state and (found := visit(node)):
            return found
    return None


def _validate_stop_conditions(conditions: list[ExperimentTemplateStopCondition]) -> None:
    if len(conditions) > MAX_STOP_CONDITIONS:
        raise FieldError("stopConditions",
                         f"at most {MAX_STOP_CONDITIONS} stop conditions per template, got {len(conditions)}")
    for i, cond in enumerate(conditions):
        where = f"stopConditions.{i}"
        if cond.source not in STOP_CONDITION_SOURCES:
            raise FieldError(f"{where}.source",
                             f'must be {" or ".join(STOP_CONDITION_SOURCES)}, got "{cond.source}"')
        if cond.source == "aws:cloudwatch:alarm" and not (cond.value and _ALARM_ARN.match(cond.value)):
            raise FieldError(f"{where}.value",
                             f'must be a CloudWatch alarm ARN like arn:aws:cloudwatch:us-east-1:123456789012:alarm:name, got "{cond.value}"')
