"""The rules of a template that span fields, which field types cannot say: known action ids
and their parameters, target references and resource types, `startAfter` names and cycles,
counts, role and alarm ARNs, report durations. `validate_template` raises a FieldError naming the field of the
first rule broken; CreateExperimentTemplate, UpdateExperimentTemplate and templates files run
it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Protocol

from fisproxy.fis import actions as action_catalog
from fisproxy.fis import ids
from fisproxy.fis.fielderror import FieldError
from fisproxy.fis.models import (
    ExperimentTemplateAction,
    ExperimentTemplateReportConfiguration,
    ExperimentTemplateStopCondition,
    ExperimentTemplateTarget,
)

MAX_ACTIONS = 20
MAX_STOP_CONDITIONS = 5
MAX_NAME = 64

# Role ARNs as FIS needs them; LocalStack's templates leave out the empty region field
# (`arn:aws:iam:000000000000:role/ExperimentRole`), which is accepted too.
_ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::?\d{12}:role/\S+$")
_ALARM_ARN = re.compile(r"^arn:aws[\w-]*:cloudwatch:[a-z0-9-]+:\d{12}:alarm:\S+$")
STOP_CONDITION_SOURCES = ("none", "aws:cloudwatch:alarm")


class TemplateParts(Protocol):
    """What validate_template reads: a CreateExperimentTemplateRequest or an ExperimentTemplate."""

    @property
    def role_arn(self) -> str | None: ...

    @property
    def targets(self) -> Mapping[str, ExperimentTemplateTarget]: ...

    @property
    def actions(self) -> Mapping[str, ExperimentTemplateAction]: ...

    @property
    def stop_conditions(self) -> Sequence[ExperimentTemplateStopCondition]: ...


def validate_template(t: TemplateParts) -> None:
    """Raise FieldError for the first rule `t` breaks (the rules the field types cannot say)."""
    if t.role_arn is not None and not _ROLE_ARN.match(t.role_arn):
        raise FieldError("roleArn", f'must be an IAM role ARN like arn:aws:iam::123456789012:role/fis, got "{t.role_arn}"')
    _validate_targets(t.targets)
    _validate_actions(t.actions, t.targets)
    _validate_stop_conditions(t.stop_conditions)
    _validate_report_configuration(getattr(t, "experiment_report_configuration", None))


def _check_name(field: str, name: str) -> None:
    if not name.strip():
        raise FieldError(field, "names must not be blank")
    if len(name) > MAX_NAME:
        raise FieldError(f"{field}.{name}", f"names are at most {MAX_NAME} characters, got {len(name)}")


def _validate_targets(targets: Mapping[str, ExperimentTemplateTarget]) -> None:
    for name, target in targets.items():
        _check_name("targets", name)
        where = f"targets.{name}"
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


def _validate_stop_conditions(conditions: Sequence[ExperimentTemplateStopCondition]) -> None:
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


def _validate_report_configuration(config: ExperimentTemplateReportConfiguration | None) -> None:
    """The report's pre- and post-experiment durations are ISO 8601 (sub-minute ones too)."""
    if config is None:
        return
    for field, text in (("preExperimentDuration", config.pre_experiment_duration),
                        ("postExperimentDuration", config.post_experiment_duration)):
        if text is not None:
            try:
                ids.parse_duration(text)
            except ValueError as e:
                raise FieldError(f"experimentReportConfiguration.{field}", str(e)) from None
