"""FIS's experiment reports end to end, with moto as the upstream: a template with an
`experimentReportConfiguration` produces a PDF in the S3 bucket once the experiment ended and its
post-experiment window passed; GetExperiment's `experimentReport` goes pending -> completed and
names the object; the PDF's text (read with pypdf) names the experiment, its actions, the
faulted operation and its counts, and the CloudWatch dashboard's widget."""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import pypdf
import pytest
from botocore.config import Config

from tests.e2e.conftest import ACCESS_KEY, SECRET_KEY, Fisproxy, wait_for_state
from tests.e2e.test_faults import make_table
from tests.helpers import QUICK_REPORT_RETRIES

ROLE = "arn:aws:iam::123456789012:role/fis"


def upstream(proxy: Fisproxy, service: str) -> Any:
    """A client straight to moto (not through the proxy)."""
    return boto3.session.Session().client(
        service, region_name="us-east-1", endpoint_url=proxy.upstream, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, config=Config(proxies={}))


def wait_for_report(fis: Any, experiment_id: str, *statuses: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        report = fis.get_experiment(id=experiment_id)["experiment"].get("experimentReport") or {}
        status = report.get("state", {}).get("status")
        if not seen or seen[-1] != status:
            seen.append(status)
        if status in statuses:
            return {**report, "seen": seen}
        if time.monotonic() > deadline:
            raise AssertionError(f"experiment report of {experiment_id} is {report}, wanted {statuses}")
        time.sleep(0.2)


def report_template(fis: Any, bucket: str, dashboard: str | None, duration: str = "PT8S", **extra: Any) -> str:
    config: dict[str, Any] = {
        "outputs": {"s3Configuration": {"bucketName": bucket, "prefix": "fis-reports"}},
        "preExperimentDuration": "PT5S", "postExperimentDuration": "PT2S",
    }
    if dashboard:
        config["dataSources"] = {"cloudWatchDashboards": [
            {"dashboardIdentifier": f"arn:aws:cloudwatch::123456789012:dashboard/{dashboard}"}]}
    return fis.create_experiment_template(
        description="report e2e", roleArn=ROLE, stopConditions=[{"source": "none"}],
        actions={"throttlePuts": {"actionId": "aws:fis:inject-api-throttle-error",
                                  "parameters": {"service": "dynamodb", "operations": "PutItem",
                                                 "percentage": "100", "duration": duration}}},
        experimentReportConfiguration=config, tags={"Name": "report-e2e"}, **extra,
    )["experimentTemplate"]["id"]


def test_report_configuration_delivers_a_pdf_to_the_bucket(proxy: Fisproxy) -> None:
    fis = proxy.fis()
    bucket, dashboard, table = (f"r-{uuid.uuid4().hex[:8]}" for _ in range(3))
    upstream(proxy, "s3").create_bucket(Bucket=bucket)
    make_table(proxy, table)
    cloudwatch = upstream(proxy, "cloudwatch")
    cloudwatch.put_dashboard(DashboardName=dashboard, DashboardBody=json.dumps({"widgets": [{
        "type": "metric", "properties": {"title": "Orders per second", "region": "us-east-1", "stat": "Sum",
                                          "metrics": [["Shop", "Orders", "Service", "checkout"]]}}]}))
    cloudwatch.put_metric_data(Namespace="Shop", MetricData=[
        {"MetricName": "Orders", "Dimensions": [{"Name": "Service", "Value": "checkout"}],
         "Timestamp": datetime.now(UTC), "Value": 42.0}])

    exp = fis.start_experiment(experimentTemplateId=report_template(fis, bucket, dashboard))["experiment"]
    assert exp["experimentReport"]["state"]["status"] == "pending"
    wait_for_state(fis, exp["id"], "running")
    ddb = proxy.client("dynamodb", retries={"mode": "standard", "total_max_attempts": 2})
    failed = 0
    for i in range(3):
        try:
            ddb.put_item(TableName=table, Item={"pk": {"S": str(i)}})
        except botocore.exceptions.ClientError:
            failed += 1
    assert failed == 3  # 100 % throttled, two attempts each: 6 faulted requests
    wait_for_state(fis, exp["id"], "completed")

    report = wait_for_report(fis, exp["id"], "completed", "failed")
    assert report["state"]["status"] == "completed", report
    assert "pending" in report["seen"]
    [s3_report] = report["s3Reports"]
    key = f"fis-reports/{exp['id']}/{exp['id']}-report.pdf"
    assert s3_report == {"arn": f"arn:aws:s3:::{bucket}/{key}", "reportType": "PDF"}
    body = upstream(proxy, "s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    if os.environ.get("FISPROXY_SCREENSHOT_DIR"):  # docs/report-page.png is its first page
        (Path(os.environ["FISPROXY_SCREENSHOT_DIR"]) / "report.pdf").write_bytes(body)
    text = " ".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(body)).pages)
    assert exp["id"] in text
    assert "throttlePuts" in text and "aws:fis:inject-api-throttle-error" in text
    assert "dynamodb" in text and "PutItem" in text
    # requests 6, faulted 6, calls 3, retries 3, succeeded 0, failed 3
    assert "PutItem 6 6 3 3" in " ".join(text.split())
    assert "Orders per second" in text and "CloudWatch dashboard " + dashboard in text


@pytest.fixture
def quick_retries(tmp_path: Path, moto: str) -> Iterator[Fisproxy]:
    """A proxy whose report delivery waits 0.5 s between attempts, not 5 s and 30 s: the three
    attempts and the end are the same (tests/reports/test_delivery.py checks the waits)."""
    with Fisproxy(tmp_path, moto, env_extra={"PYTHONPATH": str(QUICK_REPORT_RETRIES)}).running() as proxy:
        yield proxy


def test_a_bucket_that_does_not_exist_fails_the_report_with_the_reason(quick_retries: Fisproxy) -> None:
    fis = quick_retries.fis()
    template = report_template(fis, f"missing-{uuid.uuid4().hex[:8]}", None, duration="PT1S")  # (only its end matters)
    exp = fis.start_experiment(experimentTemplateId=template)["experiment"]
    wait_for_state(fis, exp["id"], "completed")
    report = wait_for_report(fis, exp["id"], "failed", timeout=90)
    assert "NoSuchBucket" in report["state"]["reason"]
    assert report["state"]["error"]["code"]
    log = quick_retries.log.read_text()
    assert [n for n in (1, 2, 3) if f"report delivery failed (attempt {n})" in log] == [1, 2, 3]


@pytest.mark.parametrize("how", ["lever", "skip-all"])
def test_no_report_for_cancelled_or_skip_all_experiments(proxy: Fisproxy, how: str) -> None:
    fis = proxy.fis()
    template = report_template(fis, "unused-bucket", None)
    if how == "skip-all":
        exp = fis.start_experiment(experimentTemplateId=template, experimentOptions={"actionsMode": "skip-all"})["experiment"]
        wait_for_state(fis, exp["id"], "completed")
    else:
        exp = fis.start_experiment(experimentTemplateId=template)["experiment"]
        wait_for_state(fis, exp["id"], "running")
        fis.update_safety_lever_state(id="default", state={"status": "engaged", "reason": "test"})
        try:
            wait_for_state(fis, exp["id"], "cancelled")
        finally:
            fis.update_safety_lever_state(id="default", state={"status": "disengaged", "reason": "done"})
    report = fis.get_experiment(id=exp["id"])["experiment"]["experimentReport"]
    assert report["state"]["status"] == "cancelled" and "not generated" in report["state"]["reason"]


def test_a_bad_report_duration_is_a_validation_error_naming_the_field(proxy: Fisproxy) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as err:
        proxy.fis().create_experiment_template(
            description="bad", roleArn=ROLE, stopConditions=[{"source": "none"}],
            actions={"w": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1S"}}},
            experimentReportConfiguration={"outputs": {"s3Configuration": {"bucketName": "bucket"}},
                                           "postExperimentDuration": "20min"})
    assert err.value.response["Error"]["Code"] == "ValidationException"
    assert "experimentReportConfiguration.postExperimentDuration" in err.value.response["Error"]["Message"]
