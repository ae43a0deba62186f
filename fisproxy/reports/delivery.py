"""FIS's experiment reports, delivered: the PDF put in the S3 bucket of the report configuration.

`ReportDelivery` runs on its own thread in every proxy. It takes the due jobs of
`fis.reportstate.REPORT_QUEUE` (an experiment ended and its post-experiment window passed),
one at a time under a lease (`report/<id>`, renewed while it works), so a fleet makes each
report once; a proxy that dies mid-report lets its lease expire and another takes the job up.
The work itself (build the report with the dashboards' metrics, lay out the PDF, PutObject with
the experiment role's credentials) runs in the report process (`service.ReportBuilder`): never
on the proxy's event loop or interpreter. A failure is retried (`RETRY_SECONDS`), then the
report is `failed` with the upstream's reason; the job leaves the queue only once its state says
how it ended, and every failure is logged. An experiment whose end could not queue its report
(the store was down) is found by a sweep every `SWEEP_SECONDS`, by one proxy of the fleet at a
time (a lease).

An idle proxy reads the store's data version once a second, and the queue only when it moved
(or a job read before falls due); the sweep, only when it moved since the last one: what this
costs the store does not grow with the experiments that ended (issue 17).

The object: `s3://<bucket>/<prefix>/<experiment id>/<experiment id>-report.pdf`, listed in
GetExperiment's `experimentReport.s3Reports` as `arn:aws:s3:::<bucket>/<key>` with `reportType`
`PDF`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from fisproxy.fis import reportstate
from fisproxy.fis.models import Experiment
from fisproxy.fis.outage import log_failure
from fisproxy.fis.ports import FleetStore
from fisproxy.reports.service import ReportBuilder

log = logging.getLogger(__name__)

LEASE_TTL_SECONDS = 60.0
POLL_SECONDS = 1.0
SWEEP_SECONDS = 30.0  # how often ended experiments are checked for a report never queued
SWEEP_MAX_AGE_SECONDS = 24 * 3600.0  # ... among those that ended this recently (not years of history)
RETRY_SECONDS = (5.0, 30.0)  # waits before the second and third attempts; then `failed`


def report_key(prefix: str | None, experiment_id: str) -> str:
    return "/".join(p for p in ((prefix or "").strip("/"), experiment_id, f"{experiment_id}-report.pdf") if p)


class ReportDelivery:
    def __init__(self, store: FleetStore, builder: ReportBuilder, *, holder: str,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.builder = builder
        self.holder = holder
        self.clock = clock
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_sweep = 0.0
        self._jobs: dict[str, dict[str, Any]] | None = None  # the queue as read at `_version`
        self._version: str | None = None
        self._swept: tuple[str | None] | None = None  # the data version of the last sweep

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="fisproxy-reports", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.step()
            except Exception as e:  # this loop's error boundary: log, try again later
                log_failure(log, e, "fisproxy: report delivery step failed")  # (quiet in an outage)
            self._stopping.wait(POLL_SECONDS)

    def step(self) -> None:
        """Deliver every job that is due (blocking)."""
        now, version = self.clock(), self.store.data_version()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_SECONDS
            # The sweeper keeps its lease while it lives (one proxy reads, not the fleet).
            if self.store.acquire_lease("report/sweep", self.holder, 2 * SWEEP_SECONDS) and self._swept != (version,):
                self.sweep()
                self._swept = (version,)
        if self._jobs is None or version != self._version:
            self._jobs, self._version = self.store.list_docs(reportstate.REPORT_QUEUE), version
        for experiment_id, job in sorted(self._jobs.items()):
            if self._stopping.is_set():
                return
            if float(job.get("due", 0)) <= now and float(job.get("retryAt", 0)) <= now:
                self._take(experiment_id)

    def sweep(self) -> None:
        """Queue the report of every recently ended experiment that has a report configuration
        but no report state: one whose end could not queue it (the store was down then)."""
        oldest = self.clock() - SWEEP_MAX_AGE_SECONDS
        for e in self.store.list_experiments():
            if e.terminal and e.experiment_report_configuration is not None and e.end_time is not None \
                    and e.end_time.timestamp() >= oldest and self.store.get_doc(reportstate.REPORT_DOC, e.id) is None:
                log.info("experiment %s: its report was not queued; queued now", e.id)
                reportstate.queue_report(self.store, e, e.end_time.timestamp())

    def _take(self, experiment_id: str) -> None:
        lease = f"report/{experiment_id}"
        if not self.store.acquire_lease(lease, self.holder, LEASE_TTL_SECONDS):
            return  # another proxy makes it
        try:
            job = self.store.get_doc(reportstate.REPORT_QUEUE, experiment_id)
            if job is not None:  # (not delivered meanwhile by the lease's previous holder)
                self._deliver(experiment_id, job, lease)
        finally:
            self.store.release_lease(lease, self.holder)

    def _deliver(self, experiment_id: str, job: dict[str, Any], lease: str) -> None:
        experiment = self.store.get_experiment(experiment_id)
        if experiment is None or experiment.experiment_report_configuration is None:
            self.store.delete_doc(reportstate.REPORT_QUEUE, experiment_id)
            return
        attempt = int(job.get("attempts", 0)) + 1
        self._state(experiment_id, reportstate.report("running", f"Generating the report (attempt {attempt})."))
        target = _destination(experiment)
        outcome: dict[str, Any]
        if target is None:
            outcome = {"ok": False, "reason": "The report configuration names no S3 bucket (outputs.s3Configuration.bucketName).",
                       "code": "InvalidConfiguration"}
        else:
            future = self.builder.start(deliver_in_child, self.builder.store_url, self.builder.state_path,
                                        experiment_id, self.builder.endpoint, *target)
            outcome = self._wait(future, lease)
        if outcome.get("ok"):
            self._state(experiment_id, reportstate.report(
                "completed", "Report generated.", s3_arns=[outcome["arn"]]))
            self.store.delete_doc(reportstate.REPORT_QUEUE, experiment_id)
            log.info("experiment %s: report delivered to %s", experiment_id, outcome["arn"])
            return
        reason = str(outcome.get("reason", "unknown error"))
        log.warning("experiment %s: report delivery failed (attempt %d): %s", experiment_id, attempt, reason)
        if attempt <= len(RETRY_SECONDS):
            self.store.put_doc(reportstate.REPORT_QUEUE, experiment_id,
                               {**job, "attempts": attempt, "retryAt": self.clock() + RETRY_SECONDS[attempt - 1]})
            self._state(experiment_id, reportstate.report("pending", f"Attempt {attempt} failed; retrying: {reason}"))
            return
        self._state(experiment_id, reportstate.report(
            "failed", f"The report could not be delivered: {reason}", error_code=str(outcome.get("code") or "ReportDeliveryFailed")))
        self.store.delete_doc(reportstate.REPORT_QUEUE, experiment_id)

    def _wait(self, future: concurrent.futures.Future[dict[str, Any]], lease: str) -> dict[str, Any]:
        """The child's outcome, renewing the lease while it works."""
        deadline = time.monotonic() + self.builder.timeout
        while True:
            try:
                return future.result(timeout=LEASE_TTL_SECONDS / 3)
            except concurrent.futures.TimeoutError:
                if time.monotonic() > deadline or self._stopping.is_set():
                    future.cancel()
                    return {"ok": False, "reason": "the report took too long (or the proxy is stopping)",
                            "code": "InternalFailure"}
                self.store.acquire_lease(lease, self.holder, LEASE_TTL_SECONDS)
            except Exception as e:  # the report process died, or could not start
                return {"ok": False, "reason": f"the report process failed: {e}", "code": "InternalFailure"}

    def _state(self, experiment_id: str, report: dict[str, Any]) -> None:
        self.store.put_doc(reportstate.REPORT_DOC, experiment_id, report)


def _destination(e: Experiment) -> tuple[str, str] | None:
    config = e.experiment_report_configuration
    s3 = config.outputs.s3_configuration if config is not None and config.outputs is not None else None
    if s3 is None or not s3.bucket_name:
        return None
    return s3.bucket_name, report_key(s3.prefix, e.id)


def deliver_in_child(store_url: str | None, state_path: str, experiment_id: str, endpoint: str | None,
                     bucket: str, key: str) -> dict[str, Any]:
    """In the report process: build the report (dashboards included), lay out the PDF, put it in
    the bucket with the experiment role's credentials. `{"ok": True, "arn": ...}`, or `ok` False
    with the reason and a FIS error code."""
    from fisproxy.fis.failure import Failure
    from fisproxy.fis.runstate import RunState
    from fisproxy.fis.upstream import RoleSessions, describe_error, error_code
    from fisproxy.reports.pdf import render_pdf
    from fisproxy.reports.service import build, open_child_store

    store = open_child_store(store_url, state_path)
    try:
        experiment = store.get_experiment(experiment_id)
        if experiment is None:
            return {"ok": False, "reason": f"experiment {experiment_id} is gone", "code": "InternalFailure"}
        region = (store.get_runtime(experiment_id) or RunState()).region
        body = render_pdf(build(store, experiment_id, endpoint=endpoint))
        try:
            session = RoleSessions(endpoint).session(experiment.role_arn or "", region, experiment_id)
            session.client("s3", region).put_object(
                Bucket=bucket, Key=key, Body=body, ContentType="application/pdf")
        except Failure as e:  # the role could not be assumed
            return {"ok": False, "reason": e.reason, "code": e.code}
        except Exception as e:
            return {"ok": False, "reason": f"PutObject s3://{bucket}/{key} failed: {describe_error(e)}",
                    "code": error_code(e)}
        return {"ok": True, "arn": f"arn:aws:s3:::{bucket}/{key}"}
    finally:
        store.close()
