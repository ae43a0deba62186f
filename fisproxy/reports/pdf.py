"""The report as a PDF (ReportLab's page layout, Platypus), as FIS delivers it to S3: the
experiment, its actions on a timeline with what resource actions did and undid, the resolved
targets, what the application's calls did per action and operation (table) and over time
(charts), and the CloudWatch dashboards' metrics over the window. Text stays text (a PDF text
extractor finds the experiment, its actions and the counts); charts are vector drawings."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (
    CondPageBreak,
    Flowable,
    KeepTogether,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    Table,
    TableStyle,
)

from fisproxy.reports import charts
from fisproxy.reports.model import Report
from fisproxy.reports.present import (
    COLUMNS,
    action_title,
    duration,
    effect_line,
    summary_lines,
    table_rows,
)

_STYLES = getSampleStyleSheet()
H1 = ParagraphStyle("h1", parent=_STYLES["Heading1"], fontSize=16, spaceAfter=4)
H2 = ParagraphStyle("h2", parent=_STYLES["Heading2"], fontSize=12, spaceBefore=10, spaceAfter=4)
H3 = ParagraphStyle("h3", parent=_STYLES["Heading3"], fontSize=10, spaceBefore=6, spaceAfter=2)
BODY = ParagraphStyle("body", parent=_STYLES["BodyText"], fontSize=8.5, leading=11)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=7.5, leading=9.5, textColor=colors.HexColor("#57606a"))
CELL = ParagraphStyle("cell", parent=BODY, fontSize=7, leading=8.5)


def render_pdf(report: Report) -> bytes:
    out = io.BytesIO()
    e = report.experiment
    doc = SimpleDocTemplate(
        out, pagesize=A4, leftMargin=16 * mm, rightMargin=16 * mm, topMargin=14 * mm, bottomMargin=14 * mm,
        title=f"Experiment report {e.id}", author="fisproxy", subject="AWS FIS experiment report")
    doc.build(list(_story(report)), onFirstPage=_footer, onLaterPages=_footer)
    return out.getvalue()


def _story(report: Report) -> Iterable[Flowable]:
    e = report.experiment
    yield Paragraph(f"Experiment report: {_p(e.id)}", H1)
    for line in summary_lines(report):
        yield Paragraph(_p(line), BODY)
    yield Spacer(1, 6)
    yield Paragraph("Timeline", H2)
    yield charts.timeline(report)
    yield from _actions(report)
    yield from _targets(report)
    yield from _traffic(report)
    yield from _dashboards(report)


def _actions(report: Report) -> Iterable[Flowable]:
    yield Paragraph("Actions", H2)
    for a in report.actions:
        parts: list[Flowable] = [Paragraph(_p(action_title(a)), H3)]
        params = ", ".join(f"{k}={v}" for k, v in a.parameters.items())
        if params:
            parts.append(Paragraph(f"Parameters: {_p(params)}", SMALL))
        if a.targets:
            parts.append(Paragraph("Targets: " + _p(", ".join(f"{k}: {v}" for k, v in a.targets.items())), SMALL))
        if a.reason:
            parts.append(Paragraph(f"Reason: {_p(a.reason)}", SMALL))
        for effect in a.effects:
            parts.append(Paragraph(_p(effect_line(effect)), BODY))
        rows = table_rows(a)
        if rows:
            parts.append(_table([list(COLUMNS), *rows], total=len(a.rows) > 1))
        elif a.kind != "resource":
            parts.append(Paragraph("No matching requests.", SMALL))
        yield KeepTogether(parts)


def _targets(report: Report) -> Iterable[Flowable]:
    if not report.targets:
        return
    yield Paragraph("Resolved targets", H2)
    rows = [["target", "resource type", "selection", "resources"]]
    for t in report.targets:
        rows.append([t.name, t.resource_type, t.selection_mode or "ALL",
                     "\n".join(t.resources) or "none resolved"])
    yield _table(rows, wide_last=True)


def _traffic(report: Report) -> Iterable[Flowable]:
    yield Paragraph("What the application's calls did, over time", H2)
    if not report.traffic.operations:
        yield Paragraph("No AWS request went through fisproxy in the report's window.", SMALL)
        return
    yield Paragraph(
        f"Per operation, in buckets of {duration(report.traffic.bucket_seconds)}; time from the "
        "experiment's start; shaded: the experiment.", SMALL)
    for s in report.traffic.operations:
        yield CondPageBreak(charts.PANEL_H * 3.8)
        yield charts.operation(report, s)
        yield Spacer(1, 4)


def _dashboards(report: Report) -> Iterable[Flowable]:
    for dash in report.dashboards:
        yield Paragraph(f"CloudWatch dashboard {_p(dash.name)}", H2)
        if dash.error:
            yield Paragraph(_p(dash.error), SMALL)
        for w in dash.widgets:
            yield CondPageBreak(charts.PANEL_H * 2)
            yield charts.widget(report, w)
            if w.note:
                yield Paragraph(_p(w.note), SMALL)


def _table(rows: list[list[str]], *, total: bool = False, wide_last: bool = False) -> Table:
    cells = [[Paragraph(_p(c).replace("\n", "<br/>"), CELL) for c in row] for row in rows]
    widths = None
    if wide_last:
        widths = [28 * mm, 38 * mm, 22 * mm, None]
    table = Table(cells, colWidths=widths, repeatRows=1, hAlign="LEFT")
    style: list[Any] = [
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f6f8fa")),
        ("LINEBELOW", (0, 0), (-1, -1), 0.25, colors.HexColor("#d0d7de")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 3), ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]
    if total:
        style.append(("BACKGROUND", (0, -1), (-1, -1), colors.HexColor("#f6f8fa")))
    table.setStyle(TableStyle(style))
    return table


def _footer(canvas: object, doc: SimpleDocTemplate) -> None:
    c = canvas  # reportlab's Canvas
    c.saveState()  # type: ignore[attr-defined]
    c.setFont(charts.FONT, 7)  # type: ignore[attr-defined]
    c.setFillColor(colors.HexColor("#57606a"))  # type: ignore[attr-defined]
    c.drawString(16 * mm, 8 * mm, f"fisproxy experiment report - page {doc.page}")  # type: ignore[attr-defined]
    c.restoreState()  # type: ignore[attr-defined]


def _p(text: object) -> str:
    """Text for a Paragraph (which reads a little markup): escaped."""
    return escape(str(text))

