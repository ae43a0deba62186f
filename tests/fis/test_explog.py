"""Experiment log records (schema v2), their local sinks, and delivery to CloudWatch Logs and S3
on a real moto server (read back with boto clients as the oracle)."""

from __future__ import annotations

import json
import re
import time

from fisproxy.fis import explog, upstream

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


class ListStore:
    def __init__(self) -> None:
        self.records: dict[str, list[dict]] = {}

    def append_log(self, experiment_id: str, record: dict) -> None:
        self.records.setdefault(experiment_id, []).append(record)


def sample_records(t0: float = T0) -> list[dict]:
    # CloudWatch Logs refuses events older than 14 days: the upload test passes "now".
    return [
        explog.record("EXP1", "experiment-start", t0, {"experiment_template_id": "EXT1",
                                                       "experiment_start_time": explog.timestamp(t0)}),
        explog.record("EXP1", "action-end", t0 + 61, {"action_name": "a", "action_id": "aws:fis:wait",
                                                      "action_state": {"status": "completed",
                                                                       "reason": "Action was completed."}}),
        explog.record("EXP1", "experiment-end", t0 + 62, {"experiment_end_time": explog.timestamp(t0 + 62)}),
    ]


def test_record_shape():
    rec = explog.record("EXP1", "action-start", T0, {"action_name": "a", "parameters": None})
    assert rec == {"id": "EXP1", "log_type": "action-start", "event_timestamp": "2023-11-14T22:13:20Z",
                   "version": "2", "details": {"action_name": "a"}}


def test_write_goes_to_store_and_jsonl(tmp_path):
    store = ListStore()
    elog = explog.ExperimentLog(store, tmp_path)
    elog.write("EXP1", "experiment-start", T0, experiment_template_id="EXT1")
    elog.write("EXP1", "experiment-end", T0 + 1, experiment_state={"status": "completed"})
    lines = [json.loads(line) for line in (tmp_path / "logs" / "EXP1.jsonl").read_text().splitlines()]
    assert lines == store.records["EXP1"]
    assert [r["log_type"] for r in lines] == ["experiment-start", "experiment-end"]


def test_s3_key_layout():
    key = explog.s3_key("fis/", "111122223333", "eu-west-1", "EXP1", T0, b"x")
    assert re.fullmatch(
        r"fis/AWSLogs/111122223333/fis/eu-west-1/EXP1/2023/11/14/"
        r"111122223333_awsfislogs_eu-west-1_EXP1_202311142213Z_[0-9a-f]{16}\.log", key), key
    assert explog.s3_key(None, "1", "r", "E", T0, b"x").startswith("AWSLogs/1/fis/r/E/")


def test_log_group_name():
    assert explog.log_group_name("arn:aws:logs:us-east-1:123:log-group:fis:*") == "fis"
    assert explog.log_group_name("arn:aws:logs:us-east-1:123:log-group:/aws/fis/x") == "/aws/fis/x"


ROLE = "arn:aws:iam::123456789012:role/fis-logs"


def role_clients(moto_url: str, experiment_id: str) -> upstream.RoleSession:
    """The experiment role's clients: AssumeRole on moto, as the engine does."""
    return upstream.RoleSessions(moto_url).session(ROLE, "us-east-1", experiment_id)


def test_upload_to_cloudwatch_logs_and_s3(moto_url):
    logs = upstream.client("logs", "us-west-2", moto_url)
    logs.create_log_group(logGroupName="fis-logs")
    s3 = upstream.client("s3", "us-east-1", moto_url)
    s3.create_bucket(Bucket="fis-log-bucket")
    config = {
        "cloudWatchLogsConfiguration": {"logGroupArn": "arn:aws:logs:us-west-2:123456789012:log-group:fis-logs:*"},
        "s3Configuration": {"bucketName": "fis-log-bucket", "prefix": "runs"},
        "logSchemaVersion": 2,
    }
    now = float(int(time.time()))
    records = sample_records(now - 62)
    failures = explog.upload(records, experiment_id="EXP1", log_configuration=config, region="us-east-1",
                             account_id="123456789012", clients=role_clients(moto_url, "EXP1"), t=now)
    assert failures == []

    events = logs.get_log_events(logGroupName="fis-logs", logStreamName="/aws/fis/EXP1",
                                 startFromHead=True)["events"]
    assert [json.loads(e["message"]) for e in events] == records
    assert events[0]["timestamp"] == int((now - 62) * 1000)

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="fis-log-bucket")["Contents"]]
    day = time.strftime("%Y/%m/%d", time.gmtime(now))
    assert len(keys) == 1 and keys[0].startswith(f"runs/AWSLogs/123456789012/fis/us-east-1/EXP1/{day}/")
    body = s3.get_object(Bucket="fis-log-bucket", Key=keys[0])["Body"].read().decode()
    assert [json.loads(line) for line in body.splitlines()] == records


def test_upload_is_best_effort(moto_url):
    config = {"s3Configuration": {"bucketName": "no-such-bucket-here"},
              "cloudWatchLogsConfiguration": {"logGroupArn": "arn:aws:logs:us-east-1:1:log-group:missing:*"}}
    failures = explog.upload(sample_records(), experiment_id="EXP2", log_configuration=config,
                             region="us-east-1", account_id="1", clients=role_clients(moto_url, "EXP2"), t=T0)
    assert len(failures) == 2
    assert any("no-such-bucket-here" in f for f in failures) and any("missing" in f for f in failures)


class NoClients:
    def client(self, service, region=None):
        raise AssertionError("no upstream call without a logConfiguration")


def test_no_configuration_no_upload():
    assert explog.upload(sample_records(), experiment_id="E", log_configuration=None, region="r",
                         account_id="1", clients=NoClients(), t=T0) == []


def test_action_detail_names_the_resources_its_message_names_and_the_phase() -> None:
    from fisproxy.fis.resources.base import ActionContext
    from fisproxy.fis.resources.targets import ResolvedTarget, TargetResource

    arn = "arn:aws:ec2:us-east-1:123456789012:instance/"
    vms = ResolvedTarget("vms", "aws:ec2:instance", tuple(TargetResource(arn + i, i) for i in ("i-1", "i-2", "i-3")))
    ctx = ActionContext(experiment_id="EXP1", action_name="stop", action_id="aws:ec2:stop-instances",
                        clients=None, targets={"Instances": vms}, parameters={}, region="us-east-1",
                        log=lambda _: None)
    assert explog.action_detail("stop", ctx, "Stopped instances i-1, i-3.") == {
        "action_name": "stop", "action_id": "aws:ec2:stop-instances", "effect": "done",
        "message": "Stopped instances i-1, i-3.", "resources": [arn + "i-1", arn + "i-3"]}
    assert explog.action_detail("stop", ctx, "Stopped instances i-10.")["resources"] == []  # whole ids only
    ctx.phase = "undo"
    assert explog.action_detail("stop", ctx, f"Started {arn}i-2 again.")["effect"] == "undone"
    assert explog.action_detail("stop", ctx, f"Started {arn}i-2 again.")["resources"] == [arn + "i-2"]
