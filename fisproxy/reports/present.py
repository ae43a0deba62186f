"""Words and numbers of a report as every rendering shows them (terminal, HTML, PDF): one
wording, defined once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fisproxy.fis.models import Experiment
from fisproxy.reports.model import ActionReport, Counts, Report, ResourceEffect

COLUMNS = ("service", "operation", "requests", "faulted", "calls", "retries", "backoff",
           "succeeded", "failed", "verdict")


def when(t: datetime | None) -> str:
    """`2026-11-27 17:32:50Z`, or `-`."""
    return t.strftime("%Y-%m-%d %H:%M:%SZ") if t else "-"


def time_of_day(t: datetime | None) -> str:
    return t.strftime("%H:%M:%S.") + f"{t.microsecond // 1000:03d}" if t else "-"


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:.1f} h"


def ms(value: float) -> str:
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 60_000:
        return f"{value / 1000:.2f} s"
    return f"{value / 60_000:.1f} min"


def summary_lines(report: Report) -> list[str]:
    """The experiment in a few lines: state, template, role, times, tags, window."""
    e, w = report.experiment, report.window
    reason = f": {e.reason}" if e.reason else ""
    lines = [f"State: {e.state}{reason}"]
    if e.template_id:
        lines.append(f"Template: {e.template_id}")
    if e.role_arn:
        lines.append(f"Role: {e.role_arn}")
    until = when(e.end_time) if e.end_time else "now (running)"
    lines.append(f"Ran: {when(e.start_time)} to {until} ({e.duration_seconds:.1f} s)")
    if e.tags:
        lines.append("Tags: " + ", ".join(f"{k}={v}" for k, v in sorted(e.tags.items())))
    if w.pre_seconds or w.post_seconds:
        lines.append(f"Window: {duration(w.pre_seconds)} before to {duration(w.post_seconds)} after the experiment")
    lines.append(f"Report generated {when(report.generated_at)} by fisproxy")
    return lines


def action_title(a: ActionReport) -> str:
    ran = f"{time_of_day(a.start_time)} -> {time_of_day(a.end_time)}" if a.start_time else "never ran"
    return f"Action {a.name} ({a.action_id}): {a.state}, {ran}"


def effect_line(effect: ResourceEffect) -> str:
    verb = "undone" if effect.effect == "undone" else "done"
    return f"{effect.time.strftime('%H:%M:%S')} {verb}: {effect.message}"


def cells(c: Counts, service: str, operation: str) -> list[str]:
    return [service, operation, str(c.requests), str(c.faulted), str(c.calls), str(c.retries),
            ms(c.backoff_ms), str(c.succeeded), str(c.failed), c.verdict]


def table_rows(a: ActionReport) -> list[list[str]]:
    """An action's table: a row per operation, and a total when there are several."""
    rows = [cells(r, r.service, r.operation or "?") for r in a.rows]
    if len(rows) > 1:
        rows.append(cells(a.totals, "total", ""))
    return rows


def align_columns(rows: list[list[str]]) -> list[str]:
    """Rows of cells as lines with every column left-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def iso(t: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds (`2026-11-27T17:32:50.554Z`)."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def experiment_row(e: Experiment) -> dict[str, Any]:
    """One experiment as `fisproxy experiments` (and mitmweb's fisproxy.experiments) show it."""
    def at(t: datetime | None) -> str | None:
        return iso(t.timestamp()) if t else None

    return {"id": e.id, "templateId": e.experiment_template_id, "state": e.state.status,
            "reason": e.state.reason, "startTime": at(e.start_time), "endTime": at(e.end_time)}
