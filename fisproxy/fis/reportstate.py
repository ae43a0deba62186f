"""FIS's experiment reports: when one is due, and the `experimentReport` GetExperiment shows.

A template's `experimentReportConfiguration` makes FIS produce a PDF once the experiment has
ended and its post-experiment window has passed
(https://docs.aws.amazon.com/fis/latest/userguide/experiment-report-configuration.html). Here:

- at the experiment's end the engine calls `queue_report`: the report's state becomes
  `pending` and a job `REPORT_QUEUE/<id>` is due at the end plus `postExperimentDuration`.
  FIS makes no report for a `cancelled` experiment or one run with `actionsMode` `skip-all`:
  their report is `cancelled`, with the reason.
- the proxy's report delivery (`fisproxy/reports/delivery.py`) takes due jobs one at a time,
  under a lease in a fleet, and records `running`, then `completed` with the S3 object, or
  `failed` with the reason (after retries); the job leaves the queue only then.
- `experiment_report(store, e)` is the state as the API shows it (kept in its own document,
  `REPORT_DOC/<id>`, so the delivery never rewrites the experiment the engine saves).
"""

from __future__ import annotations

from typing import Any

from fisproxy.fis import ids
from fisproxy.fis.models import (
    Experiment,
    ExperimentReport,
    ExperimentReportS3Report,
    ExperimentReportState,
    ExperimentTemplateReportConfiguration,
)
from fisproxy.fis.ports import DocStore

REPORT_DOC = "experiment-report"  # experiment id -> its ExperimentReport (wire shape)
REPORT_QUEUE = "experiment-report-queue"  # experiment id -> {"due": epoch s, "attempts": n, ...}
DEFAULT_WINDOW_SECONDS = 20 * 60.0  # FIS's default pre- and post-experiment durations

PENDING = "The report is produced once the experiment has ended and its post-experiment window has passed."
NOT_FOR_CANCELLED = "Experiment reports are not generated for cancelled experiments."
NOT_FOR_SKIP_ALL = "Experiment reports are not generated for experiments run with actionsMode skip-all."


def window_seconds(config: ExperimentTemplateReportConfiguration | None) -> tuple[float, float]:
    """(pre, post) seconds of a report configuration: FIS's 20 minutes for a duration it leaves
    out (sub-minute durations are accepted, as for every fisproxy duration); none without a
    configuration. ValueError for a duration that is not ISO 8601."""
    if config is None:
        return 0.0, 0.0

    def seconds(text: str | None) -> float:
        return DEFAULT_WINDOW_SECONDS if text is None else ids.parse_duration(text).total_seconds()

    return seconds(config.pre_experiment_duration), seconds(config.post_experiment_duration)


def report(status: str, reason: str, *, error_code: str | None = None,
           s3_arns: list[str] | None = None) -> dict[str, Any]:
    """An `ExperimentReport` in its wire shape (the PDF's S3 ARN for a completed one)."""
    state = ExperimentReportState.model_validate(
        {"status": status, "reason": reason[:512], **({"error": {"code": error_code[:128]}} if error_code else {})})
    reports = [ExperimentReportS3Report(arn=arn, report_type="PDF") for arn in s3_arns or []]
    return ExperimentReport(state=state, s3_reports=reports or None).wire()


def queue_report(store: DocStore, e: Experiment, ended: float) -> None:
    """At an experiment's end: queue its report, or record why it gets none."""
    config = e.experiment_report_configuration
    if config is None:
        return
    options = e.experiment_options
    if e.state.status == "cancelled":
        store.put_doc(REPORT_DOC, e.id, report("cancelled", NOT_FOR_CANCELLED))
        return
    if options is not None and options.actions_mode == "skip-all":
        store.put_doc(REPORT_DOC, e.id, report("cancelled", NOT_FOR_SKIP_ALL))
        return
    try:
        _, post = window_seconds(config)
    except ValueError:  # stored before durations were checked: produce it at once
        post = 0.0
    store.put_doc(REPORT_DOC, e.id, report("pending", PENDING))
    store.put_doc(REPORT_QUEUE, e.id, {"due": ended + post, "attempts": 0})


def experiment_report(store: DocStore, e: Experiment) -> ExperimentReport | None:
    """What GetExperiment shows as `experimentReport`: None without a report configuration;
    `pending` until the experiment ends and its report is due."""
    if e.experiment_report_configuration is None:
        return e.experiment_report
    doc = store.get_doc(REPORT_DOC, e.id)
    if doc is not None:
        return ExperimentReport.model_validate(doc)
    if e.terminal:
        return e.experiment_report
    return ExperimentReport(state=ExperimentReportState(status="pending", reason=PENDING))
