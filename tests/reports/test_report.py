"""The experiment report, from a realistic set of recorded requests with hand-computed numbers:
the model (per action and operation, per operation over time), its table, JSON, HTML and PDF
renderings, the control API handler, and the `fisproxy report` and `fisproxy experiments`
commands against a state file and a live control API."""

from __future__ import annotations

import argparse
import base64
import io
import json
import random
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pypdf
import pytest

from fisproxy.aws.call import AwsCall
from fisproxy.cli import report as reportcli
from fisproxy.fis import explog
from fisproxy.fis.api import FisApi
from fisproxy.fis.chaos import ChaosApi, ChaosState
from fisproxy.fis.engine import Engine
from fisproxy.fis.faults import Fault, FaultSpec
from fisproxy.fis.loops import drive
from fisproxy.fis.models import (
    Experiment,
    ExperimentReportConfiguration,
    ExperimentTarget,
    ExperimentTemplate,
)
from fisproxy.fis.runstate import RunState
from fisproxy.httpdata import ApiRequest
from fisproxy.metrics import Metrics
from fisproxy.proxy.control import ControlRouter
from fisproxy.reports.build import build_report as build_model
from fisproxy.reports.html import render_html
from fisproxy.reports.pdf import render_pdf
from fisproxy.reports.service import report_handler
from fisproxy.reports.text import render_table
from fisproxy.requestlog import RequestRecord
from fisproxy.store import Store
from tests.helpers import free_port

T0 = 1_700_000_000.0
EXP = "EXP1"
THROTTLE = Fault(f"{EXP}/throttle", FaultSpec(kind="error", error_kind="throttle")).label
SLOW = Fault(f"{EXP}/slow", FaultSpec(kind="latency", latency_ms=200)).label
CHAOS = Fault("chaos/0", FaultSpec(kind="error")).label


def at(offset: float) -> datetime:
    return datetime.fromtimestamp(T0 + offset, UTC)


def experiment() -> Experiment:
    """Throttling DynamoDB PutItem/GetItem from +1 s to +31 s, then slowing S3 GetObject in
    eu-west-1 until +60 s; a wait action that never ran."""
    done = {"status": "completed", "reason": "Action was completed."}
    return Experiment.model_validate({
        "id": EXP, "experimentTemplateId": "EXT1",
        "state": {"status": "completed", "reason": "Experiment completed."},
        "creationTime": at(0), "startTime": at(0), "endTime": at(60),
        "actions": {
            "throttle": {"actionId": "aws:fis:inject-api-throttle-error",
                         "parameters": {"service": "dynamodb", "operations": "PutItem,GetItem"},
                         "targets": {"Roles": "app"}, "state": done, "startTime": at(1), "endTime": at(31)},
            "slow": {"actionId": "fisproxy:api:latency",
                     "parameters": {"service": "s3", "operations": "GetObject", "region": "eu-west-1",
                                    "latencyMilliseconds": "200"},
                     "state": done, "startTime": at(31), "endTime": at(60)},
            "pause": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1H"},
                      "state": {"status": "cancelled", "reason": "Action was cancelled."}},
        },
    })


def call(call_id: str | None, attempts: list[tuple[float, float, int | None, str | None]],
         service: str = "dynamodb", operation: str = "PutItem", region: str = "us-east-1") -> list[RequestRecord]:
    """One SDK call: (offset s, duration ms, status, fault label) per attempt, numbered from 1."""
    return [
        RequestRecord(T0 + offset, ms, service, operation, region, (label,) if label else (), status,
                      call_id, n if call_id else None)
        for n, (offset, ms, status, label) in enumerate(attempts, start=1)
    ]


def records() -> list[RequestRecord]:
    t = THROTTLE
    return [
        *call("c0", [(0.5, 10, 200, None)]),                                       # before the action
        # PutItem during "throttle": three calls throttled twice then fine, one that gives up,
        # one never faulted, one whose successful retry comes after the action ended.
        *call("c1", [(2.0, 10, 400, t), (2.06, 10, 400, t), (2.2, 20, 200, None)]),     # backoff 50+130
        *call("c2", [(5.0, 10, 400, t), (5.1, 10, 400, t), (5.4, 10, 200, None)]),      # 90+290
        *call("c3", [(10.0, 10, 400, t), (10.05, 10, 400, t), (10.3, 10, 200, None)]),  # 40+240
        *call("c4", [(20.0, 10, 400, t), (20.1, 10, 400, t), (20.5, 10, 400, t)]),      # 90+390, failed
        *call("c5", [(25.0, 15, 200, None)]),
        *call("c6", [(30.9, 10, 400, t), (31.5, 10, 200, None)]),                       # 590
        *call("q1", [(12.0, 5, 200, None)], operation="Query"),                     # not an operation of it
        *call("g1", [(15.0, 5, 400, t), (15.105, 5, 200, None)], operation="GetItem"),  # 100
        # S3 during "slow": only eu-west-1 GetObject matches.
        *call("s1", [(40.0, 210, 200, SLOW)], service="s3", operation="GetObject", region="eu-west-1"),
        *call("s2", [(41.0, 10, 200, None)], service="s3", operation="GetObject"),
        *call("s3", [(42.0, 10, 200, None)], service="s3", operation="PutObject", region="eu-west-1"),
        # A Chaos API fault: on the timeline, in no action.
        *call(None, [(45.0, 3, 500, CHAOS)], service="sqs", operation="SendMessage"),
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state.sqlite")
    s.put_experiment(experiment())
    s.append_requests(records())
    yield s
    s.close()


def build_report(store: Any, experiment_id: str, **kw: Any) -> dict[str, Any]:
    """The report as its JSON (what `?format=json` answers), without the time it was made."""
    wire = build_model(store, experiment_id, **kw).wire()
    wire.pop("generatedAt")
    return wire


def without_time(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "generatedAt"}


def table_of(store: Any, experiment_id: str) -> str:
    """The terminal table, without the line saying when it was made."""
    return untimed(render_table(build_model(store, experiment_id)))


def untimed(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if "Report generated" not in line)


def row(report: dict[str, Any], action: str, operation: str) -> dict[str, Any]:
    a = next(a for a in report["actions"] if a["name"] == action)
    return next(r for r in a["rows"] if r["operation"] == operation)


# ---- building -------------------------------------------------------------------------------

def test_report_counts_requests_faults_calls_retries_backoff_and_outcomes(store: Store) -> None:
    report = build_report(store, EXP)
    put = row(report, "throttle", "PutItem")
    assert {k: v for k, v in put.items() if k != "verdict"} == {
        "service": "dynamodb", "operation": "PutItem",
        "requests": 14,  # c1-c4 3 each, c5 1, c6 1 (its retry came after the action)
        "faulted": 10, "calls": 6, "retries": 9,
        "backoffMs": 1910.0,  # 180 + 380 + 280 + 480 + 0 + 590
        "succeeded": 5, "failed": 1, "faultedCalls": 5, "recovered": 4, "untrackedCalls": 0,
    }
    assert put["verdict"] == "1 of 5 faulted calls failed"
    get = row(report, "throttle", "GetItem")
    assert (get["requests"], get["faulted"], get["calls"], get["retries"], get["backoffMs"],
            get["succeeded"], get["failed"], get["verdict"]) == (2, 1, 1, 1, 100.0, 1, 0, "retries held")


def test_report_rows_and_totals_per_action(store: Store) -> None:
    actions = {a["name"]: a for a in build_report(store, EXP)["actions"]}
    throttle = actions["throttle"]
    assert [(r["service"], r["operation"]) for r in throttle["rows"]] == [("dynamodb", "GetItem"), ("dynamodb", "PutItem")]
    totals = throttle["totals"]
    assert (totals["requests"], totals["faulted"], totals["calls"], totals["retries"], totals["backoffMs"],
            totals["succeeded"], totals["failed"], totals["verdict"]) == (
        16, 11, 7, 10, 2010.0, 6, 1, "1 of 6 faulted calls failed")
    assert throttle["startTime"] == "2023-11-14T22:13:21.000Z" and throttle["state"] == "completed"

    slow = actions["slow"]["rows"]
    assert [(r["service"], r["operation"], r["requests"], r["faulted"], r["calls"], r["verdict"]) for r in slow] == [
        ("s3", "GetObject", 1, 1, 1, "retries held")]
    assert actions["pause"]["rows"] == [] and actions["pause"]["startTime"] is None
    assert actions["pause"]["totals"]["verdict"] == "no matching requests"


def test_report_experiment_and_window(store: Store) -> None:
    report = build_report(store, EXP)
    assert report["experiment"] == {
        "id": EXP, "arn": None, "templateId": "EXT1", "description": None, "roleArn": None, "tags": {},
        "state": "completed", "reason": "Experiment completed.",
        "startTime": "2023-11-14T22:13:20.000Z", "endTime": "2023-11-14T22:14:20.000Z", "durationSeconds": 60.0,
    }
    assert report["window"] == {  # no report configuration: the experiment itself
        "start": "2023-11-14T22:13:20.000Z", "end": "2023-11-14T22:14:20.000Z",
        "experimentStart": "2023-11-14T22:13:20.000Z", "experimentEnd": "2023-11-14T22:14:20.000Z",
        "preSeconds": 0.0, "postSeconds": 0.0}


def test_report_series_per_operation_over_time(store: Store) -> None:
    traffic = build_report(store, EXP)["traffic"]
    assert (traffic["bucketSeconds"], traffic["buckets"]) == (1.0, 60)
    ops = {(s["service"], s["operation"]): s for s in traffic["operations"]}
    assert sorted(ops) == [("dynamodb", "GetItem"), ("dynamodb", "PutItem"), ("dynamodb", "Query"),
                           ("s3", "GetObject"), ("s3", "PutObject"), ("sqs", "SendMessage")]
    assert sum(sum(s["requests"]) for s in ops.values()) == len(records())  # every record lies in the window
    put = ops[("dynamodb", "PutItem")]
    assert put["requests"][2] == 3 and put["faulted"][2] == 2 and put["retries"][2] == 2  # c1
    assert put["succeeded"][2] == 1 and put["failed"][20] == 1  # c1 ends fine; c4 gives up
    assert put["backoffMs"][2] == 180.0  # 50 + 130
    assert put["latencyP50Ms"][2] == 10.0 and put["latencyP95Ms"][25] == 15.0 and put["latencyP50Ms"][40] is None
    assert sum(put["faulted"]) == 10 and (sum(put["succeeded"]), sum(put["failed"])) == (6, 1)  # c0-c6
    assert sum(ops[("sqs", "SendMessage")]["faulted"]) == 0  # the chaos fault is not this experiment's


def test_report_window_with_a_report_configuration(tmp_path: Path) -> None:
    e = experiment()
    e.experiment_report_configuration = ExperimentReportConfiguration.model_validate(
        {"preExperimentDuration": "PT30S", "postExperimentDuration": "PT10S"})
    s = Store(tmp_path / "s.sqlite")
    s.put_experiment(e)
    s.append_requests(records())
    report = build_report(s, EXP, now=T0 + 65)  # 5 s after the end: the post window is not over
    s.close()
    assert (report["window"]["start"], report["window"]["end"]) == ("2023-11-14T22:12:50.000Z", "2023-11-14T22:14:25.000Z")
    assert (report["window"]["preSeconds"], report["window"]["postSeconds"]) == (30.0, 10.0)
    assert report["traffic"]["bucketSeconds"] == 1.0 and report["traffic"]["buckets"] == 95


def test_resource_effects_and_targets_from_the_log_and_the_run_state(tmp_path: Path) -> None:
    e = experiment()
    e.targets = {"vms": ExperimentTarget.model_validate({"resourceType": "aws:ec2:instance",
                                                         "resourceTags": {"app": "x"}, "selectionMode": "ALL"})}
    s = Store(tmp_path / "s.sqlite")
    arn = "arn:aws:ec2:us-east-1:123456789012:instance/i-1"
    s.put_experiment(e, RunState.model_validate(
        {"resolved": {"vms": {"resource_type": "aws:ec2:instance", "resources": [{"arn": arn, "id": "i-1"}]}}}))
    for t, effect, message in ((T0 + 2, "done", "Stopped instances i-1."), (T0 + 9, "undone", "Started instances i-1 again.")):
        s.append_log(EXP, explog.record(EXP, "action-detail", t, {
            "action_name": "throttle", "effect": effect, "message": message, "resources": [arn]}))
    report = build_report(s, EXP)
    text = render_table(build_model(s, EXP))
    s.close()
    assert report["targets"] == [{"name": "vms", "resourceType": "aws:ec2:instance", "selectionMode": "ALL",
                                  "resources": [arn]}]
    assert report["actions"][0]["effects"] == [
        {"time": "2023-11-14T22:13:22.000Z", "effect": "done", "message": "Stopped instances i-1.", "resources": [arn]},
        {"time": "2023-11-14T22:13:29.000Z", "effect": "undone", "message": "Started instances i-1 again.", "resources": [arn]}]
    assert f"Target vms (aws:ec2:instance): {arn}" in text
    assert "22:13:22 done: Stopped instances i-1." in text and "22:13:29 undone: Started instances i-1 again." in text


def test_report_unknown_experiment_is_a_key_error(store: Store) -> None:
    with pytest.raises(KeyError):
        build_report(store, "EXPnope")


def test_calls_without_sdk_headers_get_an_unknown_verdict(tmp_path: Path) -> None:
    s = Store(tmp_path / "s.sqlite")
    s.put_experiment(experiment())
    s.append_requests(call(None, [(3.0, 5, 400, THROTTLE), (3.5, 5, 200, None)]))
    put = row(build_report(s, EXP), "throttle", "PutItem")
    s.close()
    assert (put["calls"], put["retries"], put["failed"], put["untrackedCalls"]) == (2, 0, 1, 1)
    assert put["verdict"] == "unknown: no SDK call ids"


def test_running_experiment_counts_until_now(tmp_path: Path) -> None:
    e = experiment()
    e.state.status = "running"
    e.end_time = None
    e.actions["slow"].end_time = None
    s = Store(tmp_path / "s.sqlite")
    s.put_experiment(e)
    s.append_requests(records())
    report = build_report(s, EXP, now=T0 + 50)
    s.close()
    assert report["experiment"]["endTime"] is None and report["experiment"]["durationSeconds"] == 50
    assert row(report, "slow", "GetObject")["requests"] == 1
    assert report["window"]["end"] == "2023-11-14T22:14:10.000Z" and report["traffic"]["buckets"] == 50


def test_report_from_a_real_engine_run(tmp_path: Path) -> None:
    """Labels made by the engine's own match() are the ones the report attributes."""
    now = [T0]
    s = Store(tmp_path / "s.sqlite")
    engine = Engine(s, state_dir=tmp_path, rng=random.Random(1), clock=lambda: now[0])
    template = ExperimentTemplate.model_validate({
        "id": "EXTe", "description": "d", "roleArn": "arn:aws:iam::123456789012:role/fis",
        "stopConditions": [{"source": "none"}],
        "actions": {"boom": {"actionId": "fisproxy:api:error",
                             "parameters": {"service": "dynamodb", "operations": "PutItem", "duration": "PT10S"}}},
    })
    exp_id = engine.start_experiment(template, region="us-east-1", tags={}, actions_mode="run-all").id
    drive(engine)
    put = AwsCall("dynamodb", region="us-east-1", operation="PutItem", api="dynamodb")
    recorded = []
    for i in range(4):
        now[0] = T0 + 1 + i
        labels = tuple(f.label for f in engine.match(put))
        recorded.append(RequestRecord(now[0], 5, "dynamodb", "PutItem", "us-east-1", labels,
                                      500 if labels else 200, f"call-{i // 2}", i % 2 + 1))
    now[0] = T0 + 11
    drive(engine)  # the action's 10 s are over: the experiment completes
    now[0] = T0 + 20
    recorded.append(RequestRecord(now[0], 5, "dynamodb", "PutItem", "us-east-1", (), 200, "call-1", 3))
    s.append_requests(recorded)
    report = build_report(s, exp_id, now=now[0])
    engine.close()
    s.close()
    assert report["experiment"]["state"] == "completed"
    r = row(report, "boom", "PutItem")
    assert (r["requests"], r["faulted"], r["calls"], r["retries"], r["succeeded"], r["failed"]) == (4, 4, 2, 3, 1, 1)
    assert r["verdict"] == "1 of 2 faulted calls failed"


# ---- rendering ------------------------------------------------------------------------------

def test_table(store: Store) -> None:
    text = render_table(build_model(store, EXP))
    assert text.startswith("Experiment EXP1 (template EXT1)\n  State: completed: Experiment completed.\n")
    lines = text.splitlines()
    header = next(line for line in lines if line.strip().startswith("service"))
    assert header.split() == ["service", "operation", "requests", "faulted", "calls", "retries", "backoff",
                              "succeeded", "failed", "verdict"]
    put = next(line for line in lines if "PutItem" in line)
    assert put.split()[:11] == ["dynamodb", "PutItem", "14", "10", "6", "9", "1.91", "s", "5", "1", "1"]
    assert put.endswith("1 of 5 faulted calls failed")
    assert any(line.split()[:2] == ["total", "16"] for line in lines)
    assert "Action pause (aws:fis:wait): cancelled, never ran" in text
    # columns line up: in the throttle table, each numeric cell starts where its header does
    table = [line for line in lines if line.split()[:1] in (["service"], ["dynamodb"], ["total"])][:4]
    starts = [m.start() for m in re.finditer(r"\S+", table[0])][2:6]
    for line in table[1:]:
        assert all(line[i] != " " and line[i - 1] == " " for i in starts), line


def svg_images(page: str) -> list[str]:
    return [base64.b64decode(b).decode() for b in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page)]


def test_html_is_self_contained_with_the_charts_as_svg(store: Store) -> None:
    page = render_html(build_model(store, EXP))
    assert page.startswith("<!DOCTYPE html>")
    for external in ("<script", "<link", "url(", "@import", "http:", "https:"):
        assert external not in page
    assert re.findall(r'src="([a-z]+):', page) == ["data"] * 7  # the timeline, one chart per operation (6)
    timeline, *operations = svg_images(page)
    assert "throttle" in timeline and "inject-api-throttle-error: completed" in timeline
    assert len(operations) == 6 and "dynamodb PutItem" in operations[1]
    assert all(s.startswith("<svg") and "faulted" in s and "latency p95" in s for s in operations)
    assert "1 of 5 faulted calls failed" in page and "retries held" in page
    assert page.count('class="held"') == 2  # GetItem and S3 GetObject


def test_html_escapes_what_came_from_users(tmp_path: Path) -> None:
    e = experiment()
    e.actions["<b>x</b>"] = e.actions.pop("slow")
    e.actions["<b>x</b>"].parameters["latencyMilliseconds"] = '"><script>alert(1)</script>'
    s = Store(tmp_path / "s.sqlite")
    s.put_experiment(e)
    report = build_model(s, EXP)
    page = render_html(report)
    pdf = render_pdf(report)
    s.close()
    assert "<script>" not in page and "<b>x</b>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page
    assert all("<b>x</b>" not in svg for svg in svg_images(page))  # escaped inside the charts too
    assert "<b>x</b>" in pdf_text(pdf)  # the PDF shows it as text


def pdf_text(pdf: bytes) -> str:
    return " ".join(" ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages).split())


def test_pdf_names_the_experiment_its_actions_and_the_counts(store: Store) -> None:
    pdf = render_pdf(build_model(store, EXP))
    assert pdf.startswith(b"%PDF-")
    text = pdf_text(pdf)
    assert "Experiment report: EXP1" in text and "Template: EXT1" in text
    assert "Action throttle (aws:fis:inject-api-throttle-error): completed" in text
    assert "dynamodb PutItem 14 10 6 9 1.91 s 5 1" in text  # the table's row, as text
    assert "dynamodb GetItem" in text and "s3 GetObject" in text  # chart titles


# ---- control API handler --------------------------------------------------------------------

def get(handler: Any, path: str, **query: str) -> Any:
    return handler(ApiRequest("GET", path, {k: [v] for k, v in query.items()}))


def test_handler_serves_json_html_pdf_and_the_console_view(store: Store) -> None:
    handle = report_handler(store=store)
    response = get(handle, f"/_fisproxy/experiments/{EXP}/report")
    assert response.status == 200 and response.headers["content-type"] == "application/json"
    assert without_time(json.loads(response.body)) == build_report(store, EXP)
    html = get(handle, f"/_fisproxy/experiments/{EXP}/report", format="html")
    assert html.status == 200 and html.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in html.headers["content-security-policy"]  # a report runs no script
    assert b"data:image/svg+xml" in html.body
    pdf = get(handle, f"/_fisproxy/experiments/{EXP}/report", format="pdf")
    assert pdf.headers["content-type"] == "application/pdf" and pdf.body.startswith(b"%PDF-")
    assert pdf.headers["content-disposition"] == 'attachment; filename="EXP1.pdf"'
    view = json.loads(get(handle, f"/_fisproxy/experiments/{EXP}/report", format="console").body)
    assert without_time(view["report"]) == build_report(store, EXP)
    assert view["charts"]["timeline"].startswith("data:image/svg+xml;base64,")
    assert len(view["charts"]["operations"]) == 6


def test_handler_errors_and_other_paths(store: Store) -> None:
    handle = report_handler(store=store)
    missing = get(handle, "/_fisproxy/experiments/EXPnope/report")
    assert missing.status == 404 and "EXPnope" in json.loads(missing.body)["message"]
    assert get(handle, f"/_fisproxy/experiments/{EXP}/report", format="xml").status == 400
    assert handle(ApiRequest("DELETE", f"/_fisproxy/experiments/{EXP}/report")).status == 405
    assert get(handle, "/experiments") is None
    assert get(handle, "/_fisproxy/health") is None


# ---- command line ---------------------------------------------------------------------------

def run_cli(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="fisproxy")
    sub = parser.add_subparsers(dest="command", required=True)
    reportcli.register(sub)
    sub.add_parser("other")
    args = parser.parse_args(argv)
    assert reportcli.dispatch(args)


@pytest.fixture
def state(store: Store, tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite"


def test_cli_report_from_a_state_file(state: Path, store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(["report", EXP, "--state", str(state)])
    assert untimed(capsys.readouterr().out) == table_of(store, EXP)
    run_cli(["report", EXP, "--state", str(state), "--format", "json"])
    assert without_time(json.loads(capsys.readouterr().out)) == build_report(store, EXP)
    run_cli(["report", EXP, "--state", str(state), "--html"])
    assert capsys.readouterr().out.startswith("<!DOCTYPE html>")


def test_cli_pdf_goes_to_a_file(state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "r.pdf"
    run_cli(["report", EXP, "--state", str(state), "--pdf", "-o", str(out)])
    assert out.read_bytes().startswith(b"%PDF-") and "EXP1" in pdf_text(out.read_bytes())
    assert f"wrote {out}" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)  # never binary to a terminal
    run_cli(["report", EXP, "--state", str(state), "--pdf"])
    assert (tmp_path / "EXP1.pdf").read_bytes().startswith(b"%PDF-")


def test_cli_errors_exit_2_with_one_line(state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["report", "EXPnope", "--state", str(state)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no experiment EXPnope" in err
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["report", EXP, "--state", str(tmp_path / "absent.sqlite")])
    assert exit_info.value.code == 2 and "no state file" in capsys.readouterr().err
    assert not (tmp_path / "absent.sqlite").exists()
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["report", EXP, "--control-url", f"http://127.0.0.1:{free_port()}"])
    assert exit_info.value.code == 2 and "cannot reach the control API" in capsys.readouterr().err


def test_cli_dispatch_leaves_other_commands(state: Path) -> None:
    assert reportcli.dispatch(argparse.Namespace(command="run")) is False


def test_cli_experiments_from_a_state_file(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(["experiments", "--state", str(state)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "template", "state", "start", "end"]
    assert lines[1].split() == [EXP, "EXT1", "completed", "2023-11-14T22:13:20.000Z", "2023-11-14T22:14:20.000Z"]
    run_cli(["experiments", "--state", str(state), "--format", "json"])
    assert json.loads(capsys.readouterr().out) == [{
        "id": EXP, "templateId": "EXT1", "state": "completed", "reason": "Experiment completed.",
        "startTime": "2023-11-14T22:13:20.000Z", "endTime": "2023-11-14T22:14:20.000Z"}]


class _ControlAdapter(BaseHTTPRequestHandler):
    """HTTP -> ApiRequest -> ControlRouter (as the addon wires it) -> HTTP."""

    router: ControlRouter

    def do_GET(self) -> None:  # noqa: N802
        split = urlsplit(self.path)
        request = ApiRequest("GET", split.path, parse_qs(split.query), {k.lower(): v for k, v in self.headers.items()})
        response = self.router.handle(request, "us-east-1")
        self.send_response(response.status)
        for k, v in response.headers.items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def control_url(store: Store, tmp_path: Path) -> Iterator[str]:
    engine = Engine(store, state_dir=tmp_path, rng=random.Random(0))
    router = ControlRouter(fis=FisApi(store, engine), chaos=ChaosApi(ChaosState()),
                           extra=(Metrics(engine.active_count).handle, report_handler(store=store)))
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_ControlAdapter,), {"router": router}))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    engine.close()


def test_cli_against_the_control_api(control_url: str, store: Store, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # must not be used
    run_cli(["report", EXP, "--control-url", control_url, "--format", "json"])
    assert without_time(json.loads(capsys.readouterr().out)) == build_report(store, EXP)
    run_cli(["report", EXP, "--control-url", control_url])
    assert untimed(capsys.readouterr().out) == table_of(store, EXP)
    run_cli(["experiments", "--control-url", control_url])
    assert capsys.readouterr().out.splitlines()[1].split()[:3] == [EXP, "EXT1", "completed"]
    with pytest.raises(SystemExit):
        run_cli(["report", "EXPnope", "--control-url", control_url])
    assert "Experiment EXPnope not found." in capsys.readouterr().err


def test_cli_default_source_prefers_a_live_control_api(control_url: str, tmp_path: Path, store: Store,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FISPROXY_STATE", str(tmp_path / "absent.sqlite"))
    monkeypatch.setenv("AWS_ENDPOINT_URL_FIS", control_url)
    run_cli(["report", EXP, "--format", "json"])
    assert json.loads(capsys.readouterr().out)["experiment"]["id"] == EXP
    # nothing listening: the state file
    monkeypatch.setenv("AWS_ENDPOINT_URL_FIS", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("FISPROXY_STATE", str(tmp_path / "state.sqlite"))
    run_cli(["experiments", "--format", "json"])
    assert [e["id"] for e in json.loads(capsys.readouterr().out)] == [EXP]


def test_metrics_served_through_the_router(control_url: str) -> None:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{control_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert "fisproxy_active_experiments 0.0" in text


def test_cli_output_file_for_any_format(state: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_cli(["report", EXP, "--state", str(state), "-o", str(tmp_path / "r.txt")])
    assert "PutItem" in (tmp_path / "r.txt").read_text() and capsys.readouterr().out == ""
