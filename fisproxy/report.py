"""The experiment report: did the application's retry logic hold?

For each action of an experiment and each (service, operation) it saw, from the recorded
requests (`requestlog`):

- requests: requests matching the action's filter (service, operations, region) while it ran,
  plus any it faulted. Role targeting is not recorded per request, so for role-targeted actions
  this also counts other callers' matching requests;
- faulted: requests carrying this action's fault label;
- calls: distinct SDK calls among those requests (`amz-sdk-invocation-id`; a request without
  it counts as a call of its own);
- retries: attempts after the first (`amz-sdk-request: attempt=N`, N > 1) of those calls;
- backoff: the time those calls waited between attempts (end of one attempt to the start of the
  next), summed;
- succeeded / failed: calls whose last attempt got a 2xx / anything else or no response;
- verdict: "retries held" when every call with a faulted attempt finally succeeded.

A call's attempts are followed outside the action's run (the retry after the action ended is
what tells whether it recovered), up to `FOLLOW_SECONDS` around the experiment.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import html
import json
import multiprocessing
import os
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import unquote

from fisproxy.aws import catalog
from fisproxy.fis.actions import ACTIONS
from fisproxy.fis.faults import RuleSpec
from fisproxy.fis.models import Experiment, ExperimentAction
from fisproxy.httpdata import ApiRequest, ApiResponse
from fisproxy.requestlog import RequestRecord

FOLLOW_SECONDS = 120.0
MAX_BUCKETS = 120
BUCKET_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
REPORT_PATH = re.compile(r"^/_fisproxy/experiments/([^/]+)/report/?$")
FORMATS = ("json", "html")

HELD = "retries held"
NO_FAULTS = "no faults injected"
NO_CALL_IDS = "unknown: no SDK call ids"


class RequestSource(Protocol):
    """What the report needs from the store."""

    def get_experiment(self, experiment_id: str) -> Experiment | None: ...

    def requests_between(self, start: float, end: float) -> list[RequestRecord]: ...


# ---- building -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Keyed:
    """A record with the key of the SDK call it belongs to."""

    call: str
    record: RequestRecord


def build_report(store: RequestSource, experiment_id: str, *, now: float | None = None) -> dict[str, Any]:
    """The report as a JSON-ready dict; KeyError if there is no such experiment."""
    experiment = store.get_experiment(experiment_id)
    if experiment is None:
        raise KeyError(experiment_id)
    now = time.time() if now is None else now
    start, end = _window(experiment, now)
    records = store.requests_between(start - FOLLOW_SECONDS, end + FOLLOW_SECONDS)
    keyed = _key_calls(records)
    calls = _calls(keyed)
    actions = [
        _action_report(experiment, name, action, keyed, calls, end)
        for name, action in experiment.actions.items()
    ]
    in_window = [r for r in records if start <= r.time <= end]
    return {
        "experiment": _experiment_info(experiment, start, end),
        "actions": actions,
        "timeline": _timeline(in_window, experiment, start, end),
    }


def _window(e: Experiment, now: float) -> tuple[float, float]:
    started = e.start_time or e.creation_time
    start = started.timestamp() if started else now
    end = e.end_time.timestamp() if e.end_time else max(now, start)
    return start, end


def _key_calls(records: Sequence[RequestRecord]) -> list[_Keyed]:
    return [_Keyed(r.invocation_id or f"#{i}", r) for i, r in enumerate(records)]


def _calls(keyed: Iterable[_Keyed]) -> dict[str, list[RequestRecord]]:
    """Each SDK call's attempts, in order."""
    calls: dict[str, list[RequestRecord]] = defaultdict(list)
    for k in keyed:
        calls[k.call].append(k.record)
    for attempts in calls.values():
        attempts.sort(key=lambda r: (r.time, r.attempt or 0))
    return calls


def _experiment_info(e: Experiment, start: float, end: float) -> dict[str, Any]:
    return {
        "id": e.id,
        "templateId": e.experiment_template_id,
        "state": e.state.status,
        "reason": e.state.reason,
        "startTime": iso(start),
        "endTime": iso(e.end_time.timestamp()) if e.end_time else None,
        "durationSeconds": round(end - start, 3),
    }


def _action_report(
    e: Experiment, name: str, action: ExperimentAction, keyed: Sequence[_Keyed],
    calls: dict[str, list[RequestRecord]], experiment_end: float,
) -> dict[str, Any]:
    interval = _interval(action, experiment_end)
    label_prefix = f"{e.id}/{name}/"
    rule = _rule(action)
    seen = [k for k in keyed if _seen(k.record, rule, interval, label_prefix)]
    by_operation: dict[tuple[str, str | None], list[_Keyed]] = defaultdict(list)
    for k in seen:
        by_operation[(k.record.service, k.record.operation)].append(k)
    rows = [
        _row(service, operation, items, calls, label_prefix)
        for (service, operation), items in sorted(by_operation.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
    ]
    return {
        "name": name,
        "actionId": action.action_id,
        "state": action.state.status,
        "startTime": iso(interval[0]) if interval else None,
        "endTime": iso(action.end_time.timestamp()) if action.end_time else None,
        "parameters": dict(action.parameters),
        "rows": rows,
        "totals": _totals(rows),
    }


def _interval(action: ExperimentAction, experiment_end: float) -> tuple[float, float] | None:
    """When the action ran; None if it never started. A running action runs until now."""
    if action.start_time is None:
        return None
    end = action.end_time.timestamp() if action.end_time else experiment_end
    return action.start_time.timestamp(), end


def _rule(action: ExperimentAction) -> RuleSpec | None:
    spec = ACTIONS.get(action.action_id)
    if spec is None:
        return None
    try:
        return spec.rule(action.parameters)
    except (ValueError, KeyError):  # stored before a catalogue change: count faulted only
        return None


def _seen(r: RequestRecord, rule: RuleSpec | None, interval: tuple[float, float] | None, label_prefix: str) -> bool:
    if _faulted_by(r, label_prefix):
        return True
    if rule is None or interval is None or not interval[0] <= r.time <= interval[1]:
        return False
    return _matches(rule, r)


def _matches(rule: RuleSpec, r: RequestRecord) -> bool:
    """The live path's matcher (`RuleSpec.matches`), on a record: records keep the signing name
    (`monitoring`), templates may use the botocore name (`cloudwatch`)."""
    return rule.matches(_names(r.service), r.operation, r.region)


@functools.cache
def _names(service: str) -> frozenset[str]:
    return frozenset((service, *catalog.apis_by_signing_name().get(service, ())))


def _faulted_by(r: RequestRecord, label_prefix: str) -> bool:
    return any(label.startswith(label_prefix) for label in r.faults)


# ---- one row: one action, one (service, operation) ------------------------------------------

def _row(
    service: str, operation: str | None, items: Sequence[_Keyed],
    calls: dict[str, list[RequestRecord]], label_prefix: str,
) -> dict[str, Any]:
    keys = list(dict.fromkeys(k.call for k in items))
    faulted_keys = {k.call for k in items if _faulted_by(k.record, label_prefix)}
    succeeded = {key for key in keys if _succeeded(calls[key])}
    row = {
        "service": service,
        "operation": operation,
        "requests": len(items),
        "faulted": sum(1 for k in items if _faulted_by(k.record, label_prefix)),
        "calls": len(keys),
        "retries": sum(_retries(calls[key]) for key in keys),
        "backoffMs": round(sum(_backoff_ms(calls[key]) for key in keys), 1),
        "succeeded": len(succeeded),
        "failed": len(keys) - len(succeeded),
        "faultedCalls": len(faulted_keys),
        "recovered": len(faulted_keys & succeeded),
        "untrackedCalls": sum(1 for key in faulted_keys if key.startswith("#")),
    }
    row["verdict"] = _verdict(row)
    return row


def _retries(attempts: Sequence[RequestRecord]) -> int:
    return sum(1 for r in attempts if r.attempt is not None and r.attempt > 1)


def _backoff_ms(attempts: Sequence[RequestRecord]) -> float:
    """Time between the end of each attempt and the start of the next."""
    gaps = (
        nxt.time * 1000.0 - (prev.time * 1000.0 + prev.duration_ms)
        for prev, nxt in zip(attempts, attempts[1:], strict=False)
    )
    return sum(max(0.0, gap) for gap in gaps)


def _succeeded(attempts: Sequence[RequestRecord]) -> bool:
    status = attempts[-1].status
    return status is not None and 200 <= status < 300


def _verdict(row: dict[str, Any]) -> str:
    faulted_calls = row["faultedCalls"]
    if faulted_calls == 0:
        return NO_FAULTS
    if row["untrackedCalls"] == faulted_calls:
        return NO_CALL_IDS
    lost = faulted_calls - row["recovered"]
    if lost == 0:
        return HELD
    return f"{lost} of {faulted_calls} faulted calls failed"


_SUMMED = ("requests", "faulted", "calls", "retries", "backoffMs", "succeeded", "failed",
           "faultedCalls", "recovered", "untrackedCalls")


def _totals(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    # Rows never share a call (all attempts of a call have one service and operation).
    totals: dict[str, Any] = {key: sum(row[key] for row in rows) for key in _SUMMED}
    totals["backoffMs"] = round(totals["backoffMs"], 1)
    totals["verdict"] = _verdict(totals) if rows else "no matching requests"
    return totals


# ---- timeline -------------------------------------------------------------------------------

def _timeline(records: Sequence[RequestRecord], e: Experiment, start: float, end: float) -> dict[str, Any]:
    """Requests and faulted requests per time bucket, and when each action ran (seconds from start)."""
    width = _bucket_seconds(end - start)
    count = max(1, int((end - start) // width) + 1)
    requests = [0] * count
    faulted = [0] * count
    prefix = f"{e.id}/"
    for r in records:
        i = min(count - 1, int((r.time - start) // width))
        requests[i] += 1
        if any(label.startswith(prefix) for label in r.faults):
            faulted[i] += 1
    spans = []
    for name, action in e.actions.items():
        interval = _interval(action, end)
        if interval is not None:
            spans.append({"name": name, "start": round(interval[0] - start, 3), "end": round(interval[1] - start, 3)})
    return {"bucketSeconds": width, "requests": requests, "faulted": faulted, "actions": spans}


def _bucket_seconds(span: float, max_count: int = MAX_BUCKETS) -> int:
    """The smallest round step that cuts `span` seconds into at most `max_count` pieces."""
    for step in BUCKET_STEPS:
        if span / step <= max_count:
            return step
    return BUCKET_STEPS[-1] * (int(span / BUCKET_STEPS[-1] / max_count) + 1)


# ---- formatting helpers ---------------------------------------------------------------------

def experiment_row(e: Experiment) -> dict[str, Any]:
    """One experiment as `fisproxy experiments` (and mitmweb's fisproxy.experiments) show it."""
    def when(t: Any) -> str | None:
        return iso(t.timestamp()) if t else None

    return {"id": e.id, "templateId": e.experiment_template_id, "state": e.state.status,
            "reason": e.state.reason, "startTime": when(e.start_time), "endTime": when(e.end_time)}


def iso(t: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds (`2026-11-27T17:32:50.554Z`)."""
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _ms(ms: float) -> str:
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.2f} s"
    return f"{ms / 60_000:.1f} min"


def _time_of_day(iso: str | None) -> str:
    return iso[11:23] if iso else "-"


COLUMNS = ("service", "operation", "requests", "faulted", "calls", "retries", "backoff",
           "succeeded", "failed", "verdict")


def _cells(row: dict[str, Any], service: str, operation: str) -> list[str]:
    return [service, operation, str(row["requests"]), str(row["faulted"]), str(row["calls"]),
            str(row["retries"]), _ms(row["backoffMs"]), str(row["succeeded"]), str(row["failed"]),
            row["verdict"]]


def _table_rows(action: dict[str, Any]) -> list[list[str]]:
    rows = [_cells(r, r["service"], r["operation"] or "?") for r in action["rows"]]
    if len(rows) > 1:
        rows.append(_cells(action["totals"], "total", ""))
    return rows


# ---- table ----------------------------------------------------------------------------------

def render_table(report: dict[str, Any]) -> str:
    """A plain-text report for terminals."""
    lines = _table_header(report["experiment"])
    for action in report["actions"]:
        lines += ["", _action_title(action)]
        rows = _table_rows(action)
        if rows:
            lines += ["  " + line for line in align_columns([list(COLUMNS), *rows])]
        else:
            lines.append("  no matching requests")
    return "\n".join(lines) + "\n"


def _table_header(e: dict[str, Any]) -> list[str]:
    reason = f": {e['reason']}" if e["reason"] else ""
    template = f" (template {e['templateId']})" if e["templateId"] else ""
    until = e["endTime"] or "now"
    return [
        f"Experiment {e['id']}{template}: {e['state']}{reason}",
        f"  {e['startTime']} -> {until} ({e['durationSeconds']:.1f} s)",
    ]


def _action_title(a: dict[str, Any]) -> str:
    ran = f"{_time_of_day(a['startTime'])} -> {_time_of_day(a['endTime'])}" if a["startTime"] else "never ran"
    return f"Action {a['name']} ({a['actionId']}): {a['state']}, {ran}"


def align_columns(rows: list[list[str]]) -> list[str]:
    """Rows of cells as lines with every column left-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


# ---- HTML -----------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:right}
th:nth-child(-n+2),td:nth-child(-n+2),td:last-child,th:last-child{text-align:left}
tr.total td{font-weight:600}
.held{color:#1a7f37}.failed{color:#cf222e}.none{color:#777}
code{background:#f4f4f4;padding:0 .3em}
"""


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page: inline CSS and an inline SVG timeline, no external assets."""
    e = report["experiment"]
    title = f"fisproxy report: experiment {e['id']}"
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{_h(title)}</title><style>{_CSS}</style></head><body>',
        f"<h1>{_h(title)}</h1>",
        f"<p>{_html_summary(e)}</p>",
        _svg_timeline(report["timeline"]),
    ]
    for action in report["actions"]:
        parts.append(_html_action(action))
    parts.append("</body></html>")
    return "\n".join(parts)


def _h(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _html_summary(e: dict[str, Any]) -> str:
    template = f" from template <code>{_h(e['templateId'])}</code>" if e["templateId"] else ""
    reason = f" ({_h(e['reason'])})" if e["reason"] else ""
    return (f"State <b>{_h(e['state'])}</b>{reason}{template}; {_h(e['startTime'])} to "
            f"{_h(e['endTime'] or 'now')}, {e['durationSeconds']:.1f} s.")


def _html_action(a: dict[str, Any]) -> str:
    ran = f"{_h(a['startTime'])} to {_h(a['endTime'] or 'now')}" if a["startTime"] else "never ran"
    params = ", ".join(f"{_h(k)}={_h(v)}" for k, v in a["parameters"].items())
    head = (f"<h2>Action {_h(a['name'])}</h2><p><code>{_h(a['actionId'])}</code> {_h(a['state'])}, "
            f"{ran}{'; ' + params if params else ''}</p>")
    if not a["rows"]:
        return head + "<p class=none>No matching requests.</p>"
    header = "".join(f"<th>{_h(c)}</th>" for c in COLUMNS)
    body = [_html_row(r, r["service"], r["operation"] or "?", "") for r in a["rows"]]
    if len(a["rows"]) > 1:
        body.append(_html_row(a["totals"], "total", "", "total"))
    return head + f"<table><tr>{header}</tr>{''.join(body)}</table>"


def _html_row(row: dict[str, Any], service: str, operation: str, css: str) -> str:
    cells = _cells(row, service, operation)
    verdict = cells.pop()
    tds = "".join(f"<td>{_h(c)}</td>" for c in cells)
    return f'<tr class="{css}">{tds}<td class="{_verdict_class(verdict)}">{_h(verdict)}</td></tr>'


def _verdict_class(verdict: str) -> str:
    if verdict == HELD:
        return "held"
    return "failed" if "failed" in verdict else "none"


# Timeline geometry (SVG user units).
_W, _PLOT_H, _LEFT, _TOP, _LANE = 900, 160, 48, 16, 18


def _svg_timeline(t: dict[str, Any]) -> str:
    """Stacked bars (faulted in red over the rest in grey) per bucket, and a lane per action."""
    n = len(t["requests"])
    peak = max(t["requests"], default=0) or 1
    plot_w = _W - _LEFT - 10
    bar_w = plot_w / n
    lanes_top = _TOP + _PLOT_H + 24
    height = lanes_top + _LANE * len(t["actions"]) + 10
    seconds = n * t["bucketSeconds"]
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" '
        f'viewBox="0 0 {_W} {height}" role="img" aria-label="requests and faults over time">',
        f'<text x="{_LEFT}" y="11" font-size="11">requests per {t["bucketSeconds"]} s '
        f'(grey: passed, red: faulted by this experiment); peak {peak}</text>',
    ]
    out += _svg_bars(t, bar_w, peak)
    out += _svg_axis(seconds, plot_w)
    out += _svg_lanes(t["actions"], seconds, plot_w, lanes_top)
    out.append("</svg>")
    return "\n".join(out)


def _svg_bars(t: dict[str, Any], bar_w: float, peak: int) -> list[str]:
    out = []
    base = _TOP + _PLOT_H
    width = max(bar_w - 1, 1)
    for i, (total, bad) in enumerate(zip(t["requests"], t["faulted"], strict=True)):
        if total == 0:
            continue
        x = _LEFT + i * bar_w
        h_total = _PLOT_H * total / peak
        h_bad = _PLOT_H * bad / peak
        tip = f"+{i * t['bucketSeconds']} s: {total} requests, {bad} faulted"
        out.append(f"<g><title>{_h(tip)}</title>")
        if total > bad:
            out.append(f'<rect x="{x:.1f}" y="{base - h_total:.1f}" width="{width:.1f}" '
                       f'height="{h_total - h_bad:.1f}" fill="#9aa4ae"/>')
        if bad:
            out.append(f'<rect x="{x:.1f}" y="{base - h_bad:.1f}" width="{width:.1f}" '
                       f'height="{h_bad:.1f}" fill="#cf222e"/>')
        out.append("</g>")
    return out


def _svg_axis(seconds: float, plot_w: float) -> list[str]:
    base = _TOP + _PLOT_H
    out = [f'<line x1="{_LEFT}" y1="{base}" x2="{_LEFT + plot_w}" y2="{base}" stroke="#333"/>']
    step = _bucket_seconds(seconds, max_count=8)
    tick = 0
    while tick <= seconds:
        x = _LEFT + plot_w * tick / seconds
        out.append(f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 4}" stroke="#333"/>'
                   f'<text x="{x:.1f}" y="{base + 16}" font-size="10" text-anchor="middle">+{_duration(tick)}</text>')
        tick += step
    return out


def _svg_lanes(spans: Sequence[dict[str, Any]], seconds: float, plot_w: float, top: float) -> list[str]:
    out = []
    for i, span in enumerate(spans):
        y = top + i * _LANE
        x1 = _LEFT + plot_w * max(0.0, span["start"]) / seconds
        x2 = _LEFT + plot_w * min(seconds, span["end"]) / seconds
        out.append(f'<g><title>{_h(span["name"])}: +{span["start"]:.1f} s to +{span["end"]:.1f} s</title>'
                   f'<rect x="{x1:.1f}" y="{y:.1f}" width="{max(x2 - x1, 2):.1f}" height="{_LANE - 5}" '
                   f'fill="#f0b429" opacity="0.7"/>'
                   f'<text x="{x1 + 3:.1f}" y="{y + _LANE - 8:.1f}" font-size="10">{_h(span["name"])}</text></g>')
    return out


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m"


# ---- control API ----------------------------------------------------------------------------

class ReportBuilder:
    """Builds reports in a separate process, so a report over millions of records never holds
    the proxy's interpreter (its GIL) while traffic flows. The child opens the store itself
    (`open_store(spec)`: a SQLite path, or a store URL) and lives for one report, so the
    memory it took is given back. Blocking: call from a worker thread."""

    def __init__(self, store_url: str | None, state_path: str, *, timeout: float = 600.0) -> None:
        self.store_url = store_url
        self.state_path = state_path
        self.timeout = timeout
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def build(self, experiment_id: str) -> dict[str, Any]:
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"), max_tasks_per_child=1,
                    initializer=_background_priority)
            pool = self._pool
        return pool.submit(_build_in_child, self.store_url, self.state_path, experiment_id).result(self.timeout)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None


def _background_priority() -> None:
    # A report is background work: on a busy machine the proxy's traffic gets the CPU first.
    with contextlib.suppress(OSError, AttributeError):
        os.nice(19)


def _build_in_child(store_url: str | None, state_path: str, experiment_id: str) -> dict[str, Any]:
    from pathlib import Path

    from fisproxy.store import open_store

    store = open_store(store_url, Path(state_path))
    try:
        return build_report(store, experiment_id)
    finally:
        store.close()


def report_handler(
    store: RequestSource, *, flush: Callable[[], None] | None = None,
    builder: ReportBuilder | None = None,
) -> Callable[[ApiRequest], ApiResponse | None]:
    """A ControlRouter `extra` handler for `GET /_fisproxy/experiments/<id>/report[?format=json|html]`.

    `flush` writes the records still buffered in memory first, so a report read after a
    client's call was answered counts that call. `builder` builds it in another process (else
    here). Blocking: the control plane runs it in a worker thread."""

    def handle(request: ApiRequest) -> ApiResponse | None:
        match = REPORT_PATH.match(request.path)
        if match is None:
            return None
        if request.method != "GET":
            return ApiResponse.json(405, {"message": "use GET"}, {"allow": "GET"})
        fmt = (request.query.get("format") or ["json"])[0]
        if fmt not in FORMATS:
            return ApiResponse.json(400, {"message": f'format: must be json or html, got "{fmt}"'})
        experiment_id = unquote(match.group(1))
        if flush is not None:
            flush()
        try:
            report = builder.build(experiment_id) if builder is not None else build_report(store, experiment_id)
        except KeyError:
            return ApiResponse.json(404, {"message": f"Experiment {experiment_id} not found."})
        if fmt == "html":
            return ApiResponse(200, {"content-type": "text/html; charset=utf-8"}, render_html(report).encode())
        return ApiResponse(200, {"content-type": "application/json"}, json.dumps(report, indent=2).encode())

    return handle
