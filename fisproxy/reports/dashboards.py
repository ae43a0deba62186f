"""The CloudWatch dashboards of a report configuration, read as FIS reads them: GetDashboard for
the widgets, and the metrics of each metric widget over the report's window with GetMetricData,
using the experiment role's credentials (the role needs `cloudwatch:GetDashboard` and
`cloudwatch:GetMetricData`). Blocking (upstream calls): run in the report process.

A dashboard body (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html)
lists widgets; a metric widget's `properties.metrics` is a list of
`[Namespace, MetricName, DimName, DimValue, ..., {rendering options}]`, where `"."` repeats the
entry of the line above and the options may name `stat`, `period`, `label` and `region`.
Metric math (`{"expression": ...}`) and other widget types (text, logs, alarms) are named in the
report, not drawn.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fisproxy.fis.models import Experiment
from fisproxy.fis.upstream import RoleSessions, describe_error
from fisproxy.reports.model import DashboardReport, MetricSeries, WidgetReport, Window

log = logging.getLogger(__name__)

MAX_WIDGETS = 30
MAX_METRICS = 100  # GetMetricData's own limit on queries per call... and ours per widget
MAX_POINTS = 1440


def read_dashboards(experiment: Experiment, window: Window, *, endpoint: str | None, region: str,
                    sessions: RoleSessions | None = None) -> list[DashboardReport]:
    """Every dashboard the experiment's report configuration names, each with its widgets'
    metrics; a dashboard that cannot be read carries the upstream's error instead."""
    config = experiment.experiment_report_configuration
    sources = config.data_sources if config is not None else None
    wanted = [d.dashboard_identifier for d in (sources.cloud_watch_dashboards or []) if d.dashboard_identifier] \
        if sources is not None else []
    if not wanted:
        return []
    role = experiment.role_arn or ""
    try:
        session = (sessions or RoleSessions(endpoint)).session(role, region, experiment.id)
    except Exception as e:  # a Failure: the reason says what the upstream answered
        reason = getattr(e, "reason", str(e))
        return [DashboardReport(identifier=i, name=dashboard_name(i), error=reason) for i in wanted]
    return [_dashboard(session, identifier, window, region) for identifier in wanted]


def dashboard_name(identifier: str) -> str:
    """`arn:aws:cloudwatch::123456789012:dashboard/Name` -> `Name` (a bare name stays)."""
    return identifier.split(":dashboard/", 1)[1] if ":dashboard/" in identifier else identifier


def _dashboard(session: Any, identifier: str, window: Window, region: str) -> DashboardReport:
    name = dashboard_name(identifier)
    out = DashboardReport(identifier=identifier, name=name)
    try:
        body = json.loads(session.client("cloudwatch", region).get_dashboard(DashboardName=name)["DashboardBody"])
    except Exception as e:
        out.error = f"GetDashboard {name} failed: {describe_error(e)}"
        return out
    widgets = body.get("widgets") if isinstance(body, dict) else None
    for raw in (widgets if isinstance(widgets, list) else [])[:MAX_WIDGETS]:
        if isinstance(raw, dict) and raw.get("type") == "metric" and isinstance(raw.get("properties"), dict):
            out.widgets.append(_widget(session, raw["properties"], window, region))
    if not out.widgets:
        out.error = f"Dashboard {name} has no metric widget."
    return out


def _widget(session: Any, props: dict[str, Any], window: Window, region: str) -> WidgetReport:
    period = _period(props.get("period"), window)
    title = str(props.get("title") or "")
    queries, labels, skipped = _queries(props, period)
    widget = WidgetReport(title=title or ", ".join(labels[:3]) or "metric widget", period_seconds=period)
    if skipped:
        widget.note = f"Not drawn: {skipped} (metric math and malformed lines are not evaluated)."
    if not queries:
        return widget
    where = str(props.get("region") or region)
    try:
        answer = session.client("cloudwatch", where).get_metric_data(
            MetricDataQueries=queries, StartTime=window.start, EndTime=window.end, MaxDatapoints=MAX_POINTS)
    except Exception as e:
        widget.note = f"GetMetricData failed: {describe_error(e)}"
        return widget
    by_id = {r["Id"]: r for r in answer.get("MetricDataResults", [])}
    for query, label in zip(queries, labels, strict=True):
        result = by_id.get(query["Id"], {})
        widget.series.append(MetricSeries(
            label=label, timestamps=list(result.get("Timestamps", [])), values=list(result.get("Values", []))))
    return widget


def _queries(props: dict[str, Any], period: int) -> tuple[list[dict[str, Any]], list[str], str]:
    """GetMetricData queries for a widget's metric lines, their labels, and what was skipped."""
    lines = props.get("metrics")
    stat = str(props.get("stat") or "Average")
    queries: list[dict[str, Any]] = []
    labels: list[str] = []
    skipped: list[str] = []
    previous: list[Any] = []
    for i, line in enumerate(lines if isinstance(lines, list) else []):
        if len(queries) >= MAX_METRICS:
            break
        options = line[-1] if isinstance(line, list) and line and isinstance(line[-1], dict) else {}
        parts = line[:-1] if options else line
        if not isinstance(parts, list) or "expression" in options:
            skipped.append(str(options.get("label") or options.get("expression") or f"line {i + 1}"))
            continue
        parts = [previous[j] if p == "." and j < len(previous) else p for j, p in enumerate(parts)]
        previous = parts
        if len(parts) < 2 or len(parts) % 2 or not all(isinstance(p, str) for p in parts):
            skipped.append(f"line {i + 1}")
            continue
        namespace, metric, *dims = parts
        dimensions = [{"Name": dims[j], "Value": dims[j + 1]} for j in range(0, len(dims), 2)]
        queries.append({
            "Id": f"m{i}", "ReturnData": True,
            "MetricStat": {"Metric": {"Namespace": namespace, "MetricName": metric, "Dimensions": dimensions},
                           "Period": _period(options.get("period"), None) if options.get("period") else period,
                           "Stat": str(options.get("stat") or stat)},
        })
        dims_text = " ".join(f"{d['Name']}={d['Value']}" for d in dimensions)
        labels.append(str(options.get("label") or f"{namespace} {metric} {dims_text}".strip()))
    return queries, labels, ", ".join(skipped)


def _period(value: Any, window: Window | None) -> int:
    """A CloudWatch period: the widget's, else one that cuts the window into ~60 points (60 s
    or a multiple; finer for short windows: high-resolution metrics allow 1, 5, 10, 30 s)."""
    if isinstance(value, int) and value > 0:
        return value
    if window is None:
        return 60
    span = (window.end - window.start).total_seconds()
    for p in (1, 5, 10, 30, 60):
        if span / p <= 60:
            return p
    return 60 * max(1, round(span / 60 / 60))
