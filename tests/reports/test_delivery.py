"""FIS report delivery, with a real SQLite store and the report process replaced by a recorded
outcome: due jobs only, made once in a fleet (lease + re-check), retried, then failed with the
reason; the experiment's `experimentReport` as GetExperiment shows it."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fisproxy.fis import reportstate
from fisproxy.fis.models import Experiment
from fisproxy.reports import delivery
from fisproxy.reports.delivery import ReportDelivery, report_key
from fisproxy.store import Store

T0 = 1_700_000_000.0


class FakeBuilder:
    """Stands for the report process: answers each job with the next outcome."""

    store_url = None
    state_path = "unused"
    endpoint = None
    timeout = 5.0

    def __init__(self, *outcomes: dict[str, Any]) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[tuple[Any, ...]] = []

    def start(self, fn: Any, *args: Any) -> concurrent.futures.Future[dict[str, Any]]:
        self.calls.append(args)
        future: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        future.set_result(self.outcomes.pop(0))
        return future


def experiment(status: str = "completed", **options: str) -> Experiment:
    return Experiment.model_validate({
        "id": "EXP1", "roleArn": "arn:aws:iam::123456789012:role/fis",
        "state": {"status": status, "reason": "x"}, "startTime": T0, "endTime": T0 + 60,
        "experimentOptions": options or None,
        "experimentReportConfiguration": {
            "outputs": {"s3Configuration": {"bucketName": "reports", "prefix": "fis/"}},
            "postExperimentDuration": "PT30S"},
    })


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "s.sqlite")
    yield s
    s.close()


def shown(store: Store) -> dict[str, Any]:
    e = store.get_experiment("EXP1")
    assert e is not None
    report = reportstate.experiment_report(store, e)
    assert report is not None
    return report.wire()


def test_due_after_the_post_window_then_completed_with_the_object(store: Store) -> None:
    e = experiment()
    store.put_experiment(e)
    reportstate.queue_report(store, e, T0 + 60)
    assert shown(store)["state"]["status"] == "pending"
    now = [T0 + 89.0]
    builder = FakeBuilder({"ok": True, "arn": "arn:aws:s3:::reports/fis/EXP1/EXP1-report.pdf"})
    worker = ReportDelivery(store, builder, holder="a", clock=lambda: now[0])  # type: ignore[arg-type]
    worker.step()
    assert builder.calls == []  # 29 s after the end: the 30 s post window has not passed
    now[0] = T0 + 90.0
    worker.step()
    assert builder.calls[0][-2:] == ("reports", "fis/EXP1/EXP1-report.pdf")
    assert shown(store) == {"state": {"status": "completed", "reason": "Report generated."},
                            "s3Reports": [{"arn": "arn:aws:s3:::reports/fis/EXP1/EXP1-report.pdf", "reportType": "PDF"}]}
    assert store.list_docs(reportstate.REPORT_QUEUE) == {}
    worker.step()
    assert len(builder.calls) == 1  # made once


def test_failures_are_retried_then_the_report_fails_with_the_reason(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    e = experiment()
    store.put_experiment(e)
    reportstate.queue_report(store, e, T0 + 60)
    bad = {"ok": False, "reason": "PutObject s3://reports/x failed: NoSuchBucket: no bucket", "code": "DependentServiceFailure"}
    now = [T0 + 100.0]
    builder = FakeBuilder(bad, bad, bad)
    worker = ReportDelivery(store, builder, holder="a", clock=lambda: now[0])  # type: ignore[arg-type]
    worker.step()
    assert shown(store)["state"]["status"] == "pending" and "retrying: PutObject" in shown(store)["state"]["reason"]
    worker.step()
    assert len(builder.calls) == 1  # not before its retry time
    for wait in delivery.RETRY_SECONDS:
        now[0] += wait
        worker.step()
    assert len(builder.calls) == 3
    state = shown(store)["state"]
    assert state["status"] == "failed" and "NoSuchBucket" in state["reason"]
    assert state["error"] == {"code": "DependentServiceFailure"}
    assert store.list_docs(reportstate.REPORT_QUEUE) == {}
    assert caplog.text.count("report delivery failed") == 3  # never silent


def test_a_fleet_makes_each_report_once(store: Store) -> None:
    e = experiment()
    store.put_experiment(e)
    reportstate.queue_report(store, e, T0 + 60)
    ok = {"ok": True, "arn": "arn:aws:s3:::reports/k"}
    a, b = FakeBuilder(ok), FakeBuilder(ok)
    store.acquire_lease("report/EXP1", "b", 60)  # b is making it right now
    ReportDelivery(store, a, holder="a", clock=lambda: T0 + 200).step()  # type: ignore[arg-type]
    assert a.calls == []
    ReportDelivery(store, b, holder="b", clock=lambda: T0 + 200).step()  # type: ignore[arg-type]
    store.release_lease("report/EXP1", "b")
    ReportDelivery(store, a, holder="a", clock=lambda: T0 + 200).step()  # type: ignore[arg-type]
    assert (len(a.calls), len(b.calls)) == (0, 1)


@pytest.mark.parametrize(("status", "options", "why"), [
    ("cancelled", {}, reportstate.NOT_FOR_CANCELLED),
    ("completed", {"actionsMode": "skip-all"}, reportstate.NOT_FOR_SKIP_ALL),
])
def test_no_report_for_cancelled_and_skip_all(store: Store, status: str, options: dict[str, str], why: str) -> None:
    e = experiment(status, **options)
    store.put_experiment(e)
    reportstate.queue_report(store, e, T0 + 60)
    assert shown(store) == {"state": {"status": "cancelled", "reason": why}}
    assert store.list_docs(reportstate.REPORT_QUEUE) == {}


def test_running_experiments_show_a_pending_report_and_others_none(store: Store) -> None:
    e = experiment("running")
    store.put_experiment(e)
    assert shown(store)["state"]["status"] == "pending"
    plain = e.model_copy(update={"experiment_report_configuration": None})
    assert reportstate.experiment_report(store, plain) is None


def test_report_key() -> None:
    assert report_key("fis/", "EXP1") == "fis/EXP1/EXP1-report.pdf"
    assert report_key(None, "EXP1") == "EXP1/EXP1-report.pdf"


def test_a_report_the_end_could_not_queue_is_found_by_the_sweep(store: Store) -> None:
    store.put_experiment(experiment())  # ended, with a report configuration, never queued
    builder = FakeBuilder({"ok": True, "arn": "arn:aws:s3:::reports/k"})
    ReportDelivery(store, builder, holder="a", clock=lambda: T0 + 200).step()  # type: ignore[arg-type]
    assert shown(store)["state"]["status"] == "completed" and len(builder.calls) == 1
