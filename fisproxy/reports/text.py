"""The report as plain text for terminals (`fisproxy report`)."""

from __future__ import annotations

from fisproxy.reports.model import Report
from fisproxy.reports.present import (
    COLUMNS,
    action_title,
    align_columns,
    effect_line,
    summary_lines,
    table_rows,
)


def render_table(report: Report) -> str:
    e = report.experiment
    template = f" (template {e.template_id})" if e.template_id else ""
    lines = [f"Experiment {e.id}{template}"]
    lines += ["  " + line for line in summary_lines(report)]
    for target in report.targets:
        resources = ", ".join(target.resources) or "none resolved"
        lines.append(f"  Target {target.name} ({target.resource_type}): {resources}")
    for action in report.actions:
        lines += ["", action_title(action)]
        lines += ["  " + effect_line(effect) for effect in action.effects]
        rows = table_rows(action)
        if rows:
            lines += ["  " + line for line in align_columns([list(COLUMNS), *rows])]
        elif action.kind != "resource" or not action.effects:
            lines.append("  no matching requests")
    return "\n".join(lines) + "\n"
