"""The one way of drawing a report: ReportLab drawings (`reportlab.graphics`), made from the
report model. The PDF places them as vector graphics; the HTML page and the console get the same
drawing as SVG (`svg()`). Every chart shares the report's time axis: seconds from the
experiment's start (`-0:30` is half a minute before it), with the experiment's span shaded.

ReportLab (https://docs.reportlab.com/reportlab/userguide/ch11_graphics/): the PDF toolkit whose
chart widgets (line plots, axes, legends) render both to PDF and to SVG from one drawing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reportlab.graphics import renderSVG
from reportlab.graphics.charts.axes import XValueAxis
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.lineplots import LinePlot
from reportlab.graphics.shapes import Drawing, Group, Rect, String
from reportlab.graphics.widgets.markers import makeMarker
from reportlab.lib import colors
from reportlab.pdfbase.pdfmetrics import stringWidth

from fisproxy.reports.model import OperationSeries, Report, WidgetReport

WIDTH = 520.0  # points: an A4 page's text width; SVG scales it to the page
FONT = "Helvetica"
GREY = colors.HexColor("#9aa4ae")
RED = colors.HexColor("#cf222e")
GREEN = colors.HexColor("#1a7f37")
BLUE = colors.HexColor("#0969da")
AMBER = colors.HexColor("#d4a72c")
SPAN = colors.HexColor("#fff6d9")  # the experiment's span, behind every chart
PALETTE = (BLUE, RED, GREEN, AMBER, colors.HexColor("#8250df"), colors.HexColor("#1b7c83"),
           colors.HexColor("#bc4c00"), colors.HexColor("#57606a"))
STATE_COLORS = {"completed": GREEN, "running": BLUE, "failed": RED, "stopped": AMBER,
                "cancelled": GREY, "skipped": GREY}
LEFT, RIGHT = 70.0, 12.0  # room for the y axis labels / action names, and the right margin
PANEL_H = 78.0
LANE_H = 16.0


def svg(drawing: Drawing) -> str:
    """The drawing as an SVG document (no XML declaration: it goes inside an HTML page)."""
    text: str = renderSVG.drawToString(drawing)
    return text[text.index("<svg"):] if "<svg" in text else text


# ---- the time axis ------------------------------------------------------------------------------

class _Axis:
    """Seconds from the experiment's start, across the report's window."""

    def __init__(self, report: Report) -> None:
        w = report.window
        self.lo = (w.start - w.experiment_start).total_seconds()
        self.hi = max((w.end - w.experiment_start).total_seconds(), self.lo + 1.0)
        self.span = (0.0, (w.experiment_end - w.experiment_start).total_seconds())
        self.bucket = report.traffic.bucket_seconds
        self.x0 = LEFT
        self.width = WIDTH - LEFT - RIGHT

    def x(self, seconds: float) -> float:
        clipped = min(max(seconds, self.lo), self.hi)
        return self.x0 + self.width * (clipped - self.lo) / (self.hi - self.lo)

    def bucket_mid(self, i: int) -> float:
        return self.lo + (i + 0.5) * self.bucket

    def step(self) -> float:
        for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
            if (self.hi - self.lo) / step <= 8:
                return float(step)
        return (self.hi - self.lo) / 8

    def configure(self, axis: XValueAxis) -> None:
        axis.valueMin, axis.valueMax, axis.valueStep = self.lo, self.hi, self.step()
        axis.labelTextFormat = clock
        axis.labels.fontName, axis.labels.fontSize = FONT, 7  # type: ignore[attr-defined]
        axis.strokeColor = colors.HexColor("#57606a")

    def shade(self, y: float, height: float) -> Rect:
        x1, x2 = self.x(self.span[0]), self.x(self.span[1])
        return _rect(x1, y, max(x2 - x1, 1.0), height, SPAN)


def clock(seconds: float) -> str:
    """`+1:30`, `-0:20`, `0:00`, `+1:02:00`: time from the experiment's start."""
    sign = "-" if seconds < 0 else ("+" if seconds > 0 else "")
    total = int(round(abs(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{sign}{hours}:{minutes:02d}:{secs:02d}" if hours else f"{sign}{minutes}:{secs:02d}"


# ---- charts -------------------------------------------------------------------------------------

def timeline(report: Report) -> Drawing:
    """One lane per action, from its start to its end, coloured by its state, over the window."""
    axis = _Axis(report)
    lanes = max(1, len(report.actions))
    plot_h = lanes * LANE_H
    height = plot_h + 34.0
    d = Drawing(WIDTH, height)
    base = 22.0
    d.add(axis.shade(base, plot_h))
    start = report.window.experiment_start
    for i, a in enumerate(report.actions):
        y = base + plot_h - (i + 1) * LANE_H + 3
        d.add(String(LEFT - 4, y + 3, _short(a.name, 14), fontName=FONT, fontSize=7, textAnchor="end"))
        if a.start_time is None:
            d.add(String(axis.x0 + 2, y + 3, f"{a.state} (never ran)", fontName=FONT, fontSize=7,
                         fillColor=GREY))
            continue
        s = (a.start_time - start).total_seconds()
        e = ((a.end_time or report.window.end) - start).total_seconds()
        x1, x2 = axis.x(s), axis.x(e)
        d.add(_rect(x1, y, max(x2 - x1, 2.0), LANE_H - 6, STATE_COLORS.get(a.state, BLUE), opacity=0.85))
        label = f"{a.action_id.split(':')[-1]}: {a.state}"
        size = 6.5
        if x2 - x1 > stringWidth(label, FONT, size) + 6:  # inside the bar
            d.add(String(x1 + 3, y + 3, label, fontName=FONT, fontSize=size, fillColor=colors.white))
        elif WIDTH - x2 > stringWidth(label, FONT, size) + 4:  # after it
            d.add(String(x2 + 3, y + 3, label, fontName=FONT, fontSize=size))
        else:  # before it
            d.add(String(x1 - 3, y + 3, label, fontName=FONT, fontSize=size, textAnchor="end"))
    d.add(_x_axis(axis, base))
    d.add(String(LEFT, height - 9, "Actions over the report window (shaded: the experiment)",
                 fontName=FONT, fontSize=8))
    return d


def operation(report: Report, s: OperationSeries) -> Drawing:
    """One operation over time, three panels on the report's time axis: requests (the faulted
    part in red) with retries; calls that succeeded and failed (when their last attempt ended);
    latency (50th and 95th percentile) with the back-off waited before retries. Counts are
    drawn as steps, one per bucket, the faulted or failed part over the whole."""
    axis = _Axis(report)
    ended = [ok + bad for ok, bad in zip(s.succeeded, s.failed, strict=True)]
    panels: list[tuple[str, list[_Series]]] = [
        ("requests", [_Series("passed", GREY, s.requests, "steps"), _Series("faulted", RED, s.faulted, "steps"),
                      _Series("retries", BLUE, s.retries, "line")]),
        ("calls", [_Series("succeeded", GREEN, ended, "steps"), _Series("failed", RED, s.failed, "steps")]),
        ("ms", [_Series("latency p50", BLUE, s.latency_p50_ms, "line"),
                _Series("latency p95", AMBER, s.latency_p95_ms, "line"),
                _Series("back-off", GREY, s.backoff_ms, "line")]),
    ]
    gap = 32.0
    height = 20.0 + len(panels) * (PANEL_H + gap) + 6.0
    d = Drawing(WIDTH, height)
    y = 20.0
    for title, lines in reversed(panels):
        d.add(_panel(axis, y, title, lines, counts=title != "ms"))
        y += PANEL_H + gap
    d.add(String(LEFT, height - 12, s.label, fontName=FONT, fontSize=9.5))
    return d


def widget(report: Report, w: WidgetReport) -> Drawing:
    """A CloudWatch dashboard widget's metrics over the window."""
    axis = _Axis(report)
    start = report.window.experiment_start
    lines = []
    for i, series in enumerate(w.series):
        points = [((t - start).total_seconds(), v) for t, v in sorted(zip(series.timestamps, series.values, strict=True))]
        lines.append((series.label, PALETTE[i % len(PALETTE)], points))
    height = PANEL_H + 50.0 + 10.0 * ((len(lines) + 1) // 2)
    d = Drawing(WIDTH, height)
    base = 22.0 + 10.0 * ((len(lines) + 1) // 2)
    d.add(axis.shade(base, PANEL_H))
    drawn = [(label, color, pts) for label, color, pts in lines if pts]
    if drawn:
        d.add(_plot(axis, base, [(pts, color, False) for _, color, pts in drawn]))
        d.add(_legend([(c, label) for label, c, _ in drawn], 0.0, base - 22))
    else:
        d.add(String(axis.x0 + 4, base + PANEL_H / 2, w.note or "no data points in the window",
                     fontName=FONT, fontSize=8, fillColor=GREY))
        d.add(_x_axis(axis, base))
    d.add(String(LEFT, height - 10, _short(w.title, 90), fontName=FONT, fontSize=9))
    return d


# ---- building blocks ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Series:
    label: str
    color: colors.Color
    values: Sequence[float | None]
    style: str  # "steps": filled steps, one per bucket; "line": through the buckets' middles


def _points(axis: _Axis, s: _Series) -> list[tuple[float, float]]:
    if s.style == "steps":
        points = []
        for i, v in enumerate(s.values):
            left = axis.lo + i * axis.bucket
            points += [(left, float(v or 0)), (min(left + axis.bucket, axis.hi), float(v or 0))]
        return points
    return [(min(axis.bucket_mid(i), axis.hi), float(v)) for i, v in enumerate(s.values) if v is not None]


def _panel(axis: _Axis, y: float, title: str, lines: Sequence[_Series], *, counts: bool) -> Group:
    g = Group()
    g.add(axis.shade(y, PANEL_H))
    series = [(_points(axis, s) or [(axis.lo, 0.0)], s.color, s.style == "steps") for s in lines]
    g.add(_plot(axis, y, series, counts=counts))
    g.add(String(LEFT - 30, y + PANEL_H / 2, title, fontName=FONT, fontSize=7.5, textAnchor="end",
                 fillColor=colors.HexColor("#57606a")))
    g.add(_legend([(s.color, s.label) for s in lines], WIDTH - 260.0, y + PANEL_H + 8, columns=3))
    return g


def _plot(axis: _Axis, y: float, series: Sequence[tuple[Sequence[tuple[float, float]], colors.Color, bool]],
          *, counts: bool = False) -> LinePlot:
    lp = LinePlot()
    lp.x, lp.y, lp.width, lp.height = axis.x0, y, axis.width, PANEL_H  # type: ignore[assignment]
    lp.data = [list(points) for points, _, _ in series]
    for i, (points, color, filled) in enumerate(series):
        line = lp.lines[i]
        line.strokeColor = color
        line.strokeWidth = 0.8 if filled else 1.3
        if filled:  # the first area is the whole (a light tint), the next ones its part, over it
            line.inFill = True
            line.fillColor = _tint(color) if i == 0 else color
        elif len(points) < 3:
            line.symbol = makeMarker("FilledCircle", size=3, fillColor=color, strokeColor=color)
    axis.configure(lp.xValueAxis)
    top = _nice(max((v for points, _, _ in series for _, v in points), default=0.0))
    lp.yValueAxis.valueMin = 0
    lp.yValueAxis.valueMax = top
    if counts and top <= 8:
        lp.yValueAxis.valueStep = 1 if top <= 5 else 2
    lp.yValueAxis.labels.fontName, lp.yValueAxis.labels.fontSize = FONT, 7
    lp.yValueAxis.labelTextFormat = _number
    lp.yValueAxis.visibleGrid = True
    lp.yValueAxis.gridStrokeColor = colors.HexColor("#d0d7de")
    lp.yValueAxis.gridStrokeWidth = 0.4
    lp.yValueAxis.strokeColor = colors.HexColor("#57606a")
    return lp


def _rect(x: float, y: float, width: float, height: float, fill: colors.Color, *,
          opacity: float | None = None) -> Rect:
    rect = Rect(x, y, width, height)
    rect.fillColor, rect.strokeColor = fill, None
    if opacity is not None:
        rect.fillOpacity = opacity
    return rect


def _x_axis(axis: _Axis, y: float) -> XValueAxis:
    x = XValueAxis()
    x.setPosition(axis.x0, y, axis.width)
    axis.configure(x)
    x.configure([(axis.lo, axis.hi)])
    return x


def _legend(pairs: Sequence[tuple[colors.Color, str]], x: float, y: float, columns: int = 2) -> Legend:
    legend = Legend()
    legend.x, legend.y = x + LEFT, y  # type: ignore[assignment]
    legend.alignment = "right"
    legend.fontName, legend.fontSize = FONT, 7
    legend.columnMaximum = max(1, (len(pairs) + columns - 1) // columns) if columns > 1 else len(pairs)
    legend.dx, legend.dy, legend.deltax, legend.deltay = 7, 7, 70, 9
    legend.boxAnchor = "sw"
    legend.colorNamePairs = [(c, _short(label, 40)) for c, label in pairs]
    legend.strokeColor = None
    return legend


def _tint(color: colors.Color, amount: float = 0.55) -> colors.Color:
    """`color` mixed with white."""
    return colors.Color(*(c + (1 - c) * amount for c in (color.red, color.green, color.blue)))


def _nice(top: float) -> float:
    """A round axis maximum at or above `top` (at least 1)."""
    if top <= 1:
        return 1.0
    magnitude = 10 ** (len(str(int(top))) - 1)
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * magnitude >= top:
            return float(m * magnitude)
    return float(10 * magnitude)


def _number(v: float) -> str:
    return f"{v:.0f}" if v >= 10 or v == int(v) else f"{v:.1f}"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


Chart = Callable[[Report], Drawing]
