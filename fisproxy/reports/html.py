"""The report as one self-contained HTML page (Jinja2, autoescaped): inline CSS, the charts as
SVG images in `data:` URLs, nothing loaded from anywhere else; the same content and charts as
the PDF. `chart_urls` gives the console the same charts."""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass

import jinja2

from fisproxy.reports import charts
from fisproxy.reports.model import HELD, Report
from fisproxy.reports.present import (
    COLUMNS,
    action_title,
    duration,
    effect_line,
    summary_lines,
    table_rows,
)


@dataclass(frozen=True)
class ChartUrls:
    timeline: str
    operations: list[str]
    dashboards: list[list[str]]


def svg_url(svg: str) -> str:
    """An SVG document as a `data:` URL (an <img> shows it; it can run no script)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def chart_urls(report: Report) -> ChartUrls:
    return ChartUrls(
        timeline=svg_url(charts.svg(charts.timeline(report))),
        operations=[svg_url(charts.svg(charts.operation(report, s))) for s in report.traffic.operations],
        dashboards=[[svg_url(charts.svg(charts.widget(report, w))) for w in d.widgets] for d in report.dashboards],
    )


@functools.cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("fisproxy.reports", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2")


def render_html(report: Report) -> str:
    return _template().render(
        report=report, e=report.experiment, summary=summary_lines(report),
        titles=[action_title(a) for a in report.actions], columns=COLUMNS,
        table_rows=table_rows, effect_line=effect_line, verdict_class=verdict_class,
        bucket=duration(report.traffic.bucket_seconds), charts=chart_urls(report))


def verdict_class(verdict: str) -> str:
    if verdict == HELD:
        return "held"
    return "failed" if "failed" in verdict else "none"
