"""Building a `Report` from the store: the experiment, its log, what its targets resolved to and
the requests recorded around it. Blocking and CPU-bound over many records: the proxy runs it in
a separate process (`service.ReportBuilder`), never on its event loop or its interpreter."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from fisproxy.fis.actions import ACTIONS
from fisproxy.fis.models import Experiment, ExperimentAction
from fisproxy.fis.reportstate import window_seconds
from fisproxy.fis.runstate import RunState
from fisproxy.reports import traffic
from fisproxy.reports.model import (
    ActionReport,
    Counts,
    DashboardReport,
    ExperimentInfo,
    OperationRow,
    Report,
    ResourceEffect,
    TargetReport,
    Window,
)
from fisproxy.requestlog import RequestRecord

ACTION_DETAIL = "action-detail"  # explog's record of what a resource action did or undid

Dashboards = Callable[[Experiment, Window], list[DashboardReport]]


class ReportSource(Protocol):
    """What a report reads from the store."""

    def get_experiment(self, experiment_id: str) -> Experiment | None: ...

    def get_runtime(self, experiment_id: str) -> RunState | None: ...

    def logs(self, experiment_id: str) -> list[dict[str, Any]]: ...

    def requests_between(self, start: float, end: float) -> list[RequestRecord]: ...


def build_report(store: ReportSource, experiment_id: str, *, now: float | None = None,
                 dashboards: Dashboards | None = None) -> Report:
    """The report of one experiment; KeyError if there is no such experiment. `dashboards`
    reads the CloudWatch dashboards of its report configuration (FIS's reports do)."""
    experiment = store.get_experiment(experiment_id)
    if experiment is None:
        raise KeyError(experiment_id)
    now = time.time() if now is None else now
    window = report_window(experiment, now)
    start, end = window.start.timestamp(), window.end.timestamp()
    exp_end = window.experiment_end.timestamp()
    records = store.requests_between(start - traffic.FOLLOW_SECONDS, end + traffic.FOLLOW_SECONDS)
    keyed = traffic.key_calls(records)
    calls = traffic.calls_of(keyed)
    effects = _effects(store.logs(experiment_id))
    actions = []
    for name, action in experiment.actions.items():
        rows, totals = traffic.action_rows(experiment.id, name, action, _interval(action, exp_end), keyed, calls)
        actions.append(_action(name, action, rows, totals, effects.get(name, [])))
    return Report(
        generated_at=_utc(now),
        experiment=_info(experiment, window),
        window=window,
        actions=actions,
        targets=_targets(experiment, store.get_runtime(experiment_id)),
        traffic=traffic.series(experiment.id, keyed, calls, start, end),
        dashboards=dashboards(experiment, window) if dashboards is not None else [],
    )


def report_window(e: Experiment, now: float) -> Window:
    started = e.start_time or e.creation_time
    start = started.timestamp() if started else now
    end = e.end_time.timestamp() if e.end_time else max(now, start)
    pre, post = window_seconds(e.experiment_report_configuration)
    return Window(
        start=_utc(start - pre), end=_utc(min(max(now, end), end + post)),
        experiment_start=_utc(start), experiment_end=_utc(end), pre_seconds=pre, post_seconds=post)


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _interval(action: ExperimentAction, experiment_end: float) -> tuple[float, float] | None:
    """When the action ran; None if it never started. A running action runs until now."""
    if action.start_time is None:
        return None
    end = action.end_time.timestamp() if action.end_time else experiment_end
    return action.start_time.timestamp(), end


def _info(e: Experiment, window: Window) -> ExperimentInfo:
    start, end = window.experiment_start, window.experiment_end
    return ExperimentInfo(
        id=e.id, arn=e.arn, template_id=e.experiment_template_id, role_arn=e.role_arn,
        tags=dict(e.tags), state=e.state.status, reason=e.state.reason,
        start_time=start, end_time=e.end_time, duration_seconds=round((end - start).total_seconds(), 3))


def _action(name: str, a: ExperimentAction, rows: list[OperationRow], totals: Counts,
            effects: list[ResourceEffect]) -> ActionReport:
    spec = ACTIONS.get(a.action_id)
    return ActionReport(
        name=name, action_id=a.action_id, description=a.description,
        kind=spec.kind if spec is not None else "unknown",
        state=a.state.status, reason=a.state.reason or None,
        start_time=a.start_time, end_time=a.end_time,
        parameters=dict(a.parameters or {}), targets=dict(a.targets or {}),
        rows=rows, totals=totals, effects=effects)


def _targets(e: Experiment, runtime: RunState | None) -> list[TargetReport]:
    resolved = (runtime or RunState()).resolved
    out = []
    for name, target in (e.targets or {}).items():
        found = resolved.get(name)
        out.append(TargetReport(
            name=name, resource_type=target.resource_type, selection_mode=target.selection_mode,
            resources=found.arns if found is not None else []))
    return out


def _effects(records: list[dict[str, Any]]) -> dict[str, list[ResourceEffect]]:
    """Resource actions' effects by action name, in log order."""
    out: dict[str, list[ResourceEffect]] = {}
    for rec in records:
        if rec.get("log_type") != ACTION_DETAIL:
            continue
        details = rec.get("details") or {}
        try:
            effect = ResourceEffect(
                time=datetime.strptime(rec["event_timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC),
                effect=details.get("effect", "done"), message=str(details.get("message", "")),
                resources=[str(r) for r in details.get("resources") or []])
        except (KeyError, ValueError):  # a record this version cannot read: left out
            continue
        out.setdefault(str(details.get("action_name", "")), []).append(effect)
    return out
