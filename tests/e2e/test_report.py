"""The experiment report end to end: what the proxy recorded agrees with what boto3 saw."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import botocore.exceptions

from tests.e2e.conftest import VENV_BIN, Fisproxy, start_action, wait_for_state
from tests.e2e.test_faults import make_table
from tests.helpers import SkippedBackoff, clean_env


def report_row_counting(proxy: Fisproxy, exp_id: str, requests: int, timeout: float = 10) -> dict:
    """The first row of the experiment's report once it counts `requests` requests. A report
    flushes what the proxy recorded; a dropped connection is recorded when mitmproxy ends its
    flow, just after the client saw the drop, hence the short wait."""
    deadline = time.monotonic() + timeout
    while True:
        rows = proxy.control("GET", f"/_fisproxy/experiments/{exp_id}/report").json()["actions"][0]["rows"]
        if (rows and rows[0]["requests"] >= requests) or time.monotonic() > deadline:
            assert rows, "nothing recorded"
            return rows[0]
        time.sleep(0.05)


def test_report_matches_what_the_sdk_saw(proxy: Fisproxy, no_backoff: SkippedBackoff) -> None:
    table = f"t-{uuid.uuid4().hex[:8]}"
    make_table(proxy, table)
    exp_id = start_action(proxy, "aws:fis:inject-api-throttle-error",
                          {"service": "dynamodb", "operations": "PutItem", "percentage": "60"})
    ddb = proxy.client("dynamodb", retries={"mode": "standard", "max_attempts": 3})
    retries = succeeded = failed = 0
    for i in range(12):
        try:
            out = ddb.put_item(TableName=table, Item={"pk": {"S": str(i)}})
            succeeded += 1
        except botocore.exceptions.ClientError as e:
            out = e.response
            failed += 1
        retries += out["ResponseMetadata"]["RetryAttempts"]
    ddb.get_item(TableName=table, Key={"pk": {"S": "0"}})  # not in `operations`
    proxy.fis().stop_experiment(id=exp_id)
    wait_for_state(proxy.fis(), exp_id, "stopped")
    # No wait for the recorder: a report flushes what is still buffered, and each request was
    # recorded before its response went out.
    out = subprocess.run(
        [str(VENV_BIN / "fisproxy"), "report", exp_id, "--control-url", proxy.control_url, "--format", "json"],
        capture_output=True, text=True, env=clean_env(), timeout=60, check=True,
    ).stdout
    report = json.loads(out)
    rows = report["actions"][0]["rows"]
    assert [(r["service"], r["operation"]) for r in rows] == [("dynamodb", "PutItem")]
    row = rows[0]
    assert row["calls"] == 12
    assert (row["retries"], row["succeeded"], row["failed"]) == (retries, succeeded, failed)
    assert row["requests"] == 12 + retries
    assert row["faulted"] == retries + failed  # each retry follows a throttle; a failed call's last one too
    assert row["backoffMs"] >= 0
    assert len(no_backoff.delays) == retries  # every retry was the SDK's, after a back-off it decided on
    table_out = subprocess.run(
        [str(VENV_BIN / "fisproxy"), "report", exp_id, "--control-url", proxy.control_url],
        capture_output=True, text=True, env=clean_env(), timeout=60, check=True,
    ).stdout
    assert "PutItem" in table_out and row["verdict"] in table_out
    metrics = proxy.control("GET", "/metrics").text
    assert f'fisproxy_faults_total{{action="fault",experiment="{exp_id}",kind="error"}} {float(retries + failed)}' in metrics


def test_dropped_connections_are_recorded_as_failures(proxy: Fisproxy, no_backoff: SkippedBackoff) -> None:
    table = f"t-{uuid.uuid4().hex[:8]}"
    make_table(proxy, table)
    exp_id = start_action(proxy, "fisproxy:api:disconnect",
                          {"service": "dynamodb", "operations": "GetItem", "mode": "reset"})
    ddb = proxy.client("dynamodb", retries={"mode": "standard", "total_max_attempts": 2})
    try:
        ddb.get_item(TableName=table, Key={"pk": {"S": "0"}})
        raise AssertionError("the connection should have been reset")
    except botocore.exceptions.BotoCoreError:
        pass
    proxy.fis().stop_experiment(id=exp_id)
    wait_for_state(proxy.fis(), exp_id, "stopped")
    row = report_row_counting(proxy, exp_id, requests=2)
    assert (row["operation"], row["requests"], row["faulted"], row["calls"], row["retries"], row["failed"]) == (
        "GetItem", 2, 2, 1, 1, 1)
    html = proxy.control("GET", f"/_fisproxy/experiments/{exp_id}/report", params={"format": "html"})
    assert html.headers["content-type"].startswith("text/html") and "data:image/svg+xml" in html.text
