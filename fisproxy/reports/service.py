"""Reports for the control API, built and rendered in a separate process.

`GET /_fisproxy/experiments/<id>/report?format=json|html|pdf|console` answers the report model
as JSON, the HTML page, the PDF, or (`console`) the model with its charts as SVG `data:` URLs,
which the browser console shows. Building over a million records, or laying out a PDF, never
holds the proxy's interpreter (its GIL) while traffic flows: `ReportBuilder` runs it in a child
process at background priority, which opens the store itself (`open_store(spec)`) and is
replaced every `TASKS_PER_CHILD` reports, so the memory a large report took is given back. A
report asked for again within `CACHE_SECONDS` (the console polls) is answered from memory.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from fisproxy.httpdata import ApiRequest, ApiResponse
from fisproxy.reports.build import ReportSource, build_report
from fisproxy.reports.model import Report

REPORT_PATH = re.compile(r"^/_fisproxy/experiments/([^/]+)/report/?$")
CONTENT_TYPES = {
    "json": "application/json",
    "console": "application/json",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
}
FORMATS = tuple(CONTENT_TYPES)
TASKS_PER_CHILD = 20
CACHE_SECONDS = 1.0


def render(report: Report, fmt: str) -> bytes:
    """The report in one of FORMATS."""
    if fmt == "html":
        from fisproxy.reports.html import render_html
        return render_html(report).encode()
    if fmt == "pdf":
        from fisproxy.reports.pdf import render_pdf
        return render_pdf(report)
    if fmt == "console":
        from fisproxy.reports.html import chart_urls
        urls = chart_urls(report)
        return json.dumps({"report": report.wire(), "charts": urls.__dict__}).encode()
    return json.dumps(report.wire(), indent=2).encode()


class ReportBuilder:
    """Builds and renders reports in a child process. Blocking: call from a worker thread.
    `endpoint`: the upstream, where the CloudWatch dashboards of a report configuration are
    read (with the experiment role)."""

    def __init__(self, store_url: str | None, state_path: str, *, endpoint: str | None = None,
                 timeout: float = 600.0) -> None:
        self.store_url = store_url
        self.state_path = state_path
        self.endpoint = endpoint
        self.timeout = timeout
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, bytes]] = {}

    def render(self, experiment_id: str, fmt: str) -> bytes:
        """The report in `fmt`; KeyError if there is no such experiment."""
        key = (experiment_id, fmt)
        cached = self._cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached[1]
        body = self.submit(_render_in_child, self.store_url, self.state_path, experiment_id, fmt,
                           self.endpoint if fmt != "console" else None)
        self._cache = {k: v for k, v in self._cache.items() if time.monotonic() - v[0] < CACHE_SECONDS}
        self._cache[key] = (time.monotonic(), body)
        return body

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(*args)` in the child and wait for its result."""
        return self.start(fn, *args).result(self.timeout)

    def start(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future[Any]:
        """Run `fn(*args)` in the child (a module-level function: it is pickled)."""
        with self._lock:
            if self._pool is None:
                self._pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                    max_tasks_per_child=TASKS_PER_CHILD, initializer=_background_priority)
            return self._pool.submit(fn, *args)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None


def _background_priority() -> None:
    # A report is background work: on a busy machine the proxy's traffic gets the CPU first.
    with contextlib.suppress(OSError, AttributeError):
        os.nice(19)


def open_child_store(store_url: str | None, state_path: str) -> Any:
    from fisproxy.store import open_store
    return open_store(store_url, Path(state_path))


def _render_in_child(store_url: str | None, state_path: str, experiment_id: str, fmt: str,
                     endpoint: str | None) -> bytes:
    store = open_child_store(store_url, state_path)
    try:
        return render(build(store, experiment_id, endpoint=endpoint), fmt)
    finally:
        store.close()


def build(store: ReportSource, experiment_id: str, *, endpoint: str | None = None,
          with_dashboards: bool = True) -> Report:
    """The report, with the CloudWatch dashboards of its report configuration when `endpoint`
    (or real AWS: None with `with_dashboards`) can be asked."""
    def dashboards(experiment: Any, window: Any) -> Any:
        from fisproxy.fis.runstate import RunState
        from fisproxy.reports.dashboards import read_dashboards
        region = (store.get_runtime(experiment.id) or RunState()).region
        return read_dashboards(experiment, window, endpoint=endpoint, region=region)

    return build_report(store, experiment_id, dashboards=dashboards if with_dashboards else None)


def report_handler(
    *, builder: ReportBuilder | None = None, store: ReportSource | None = None,
    flush: Callable[[], None] | None = None,
) -> Callable[[ApiRequest], ApiResponse | None]:
    """A ControlRouter `extra` handler for `GET /_fisproxy/experiments/<id>/report[?format=...]`.

    `flush` writes the records still buffered in memory first, so a report read after a
    client's call was answered counts that call. `builder` builds it in another process (else
    here, from `store`, without dashboards). Blocking: the control plane runs it in a worker
    thread."""

    def handle(request: ApiRequest) -> ApiResponse | None:
        match = REPORT_PATH.match(request.path)
        if match is None:
            return None
        if request.method not in ("GET", "HEAD"):
            return ApiResponse.json(405, {"message": "use GET"}, {"allow": "GET, HEAD"})
        fmt = (request.query.get("format") or ["json"])[0]
        if fmt not in FORMATS:
            return ApiResponse.json(400, {"message": f'format: must be one of {", ".join(FORMATS)}, got "{fmt[:40]}"'})
        experiment_id = unquote(match.group(1))
        if flush is not None:
            flush()
        try:
            if builder is not None:
                body = builder.render(experiment_id, fmt)
            else:
                assert store is not None
                body = render(build(store, experiment_id, with_dashboards=False), fmt)
        except KeyError:
            return ApiResponse.json(404, {"message": f"Experiment {experiment_id} not found."})
        headers = {"content-type": CONTENT_TYPES[fmt], "cache-control": "no-store"}
        if fmt == "html":  # our own page: no script, nothing from elsewhere
            headers["content-security-policy"] = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
        if fmt == "pdf":
            headers["content-disposition"] = f'attachment; filename="{_safe(experiment_id)}.pdf"'
        return ApiResponse(200, headers, b"" if request.method == "HEAD" else body)

    return handle


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:64] or "report"
