"""Experiment logs are delivered with the experiment role's credentials, as FIS does, never with
the proxy's own: a real proxy in front of a moto server that enforces IAM (moto's
INITIAL_NO_AUTH_ACTION_COUNT), where the proxy's own user may only assume roles. A role allowed
to write logs gets them to S3 and CloudWatch Logs; a role that is not gets nothing delivered,
and the proxy says why."""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.e2e.conftest import Fisproxy, wait_for_state
from tests.helpers import clean_env, free_port, http_ok, start_process, stop, wait_until

ACCOUNT = "123456789012"
BUCKET = "fis-logs-" + uuid.uuid4().hex[:8]
GROUP = "fis-experiments"


def client(url: str, service: str, key: dict[str, str]) -> Any:
    return boto3.session.Session().client(
        service, region_name="us-east-1", endpoint_url=url,
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
        config=Config(proxies={}, retries={"total_max_attempts": 1}))


SETUP_CALLS = 9  # the IAM calls below, made before moto starts checking credentials


@pytest.fixture(scope="module")
def iam_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, dict[str, str]]]]:
    """A moto server that checks every call against IAM after the first SETUP_CALLS, with an
    admin user, the proxy's user (sts:AssumeRole only), a role that may write logs and one that
    may not."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_process([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                         tmp_path_factory.mktemp("moto-iam") / "moto.log", lambda: http_ok(f"{url}/moto-api/"),
                         "moto server", env=clean_env(INITIAL_NO_AUTH_ACTION_COUNT=str(SETUP_CALLS)))
    try:
        iam = client(url, "iam", {"AccessKeyId": "setup", "SecretAccessKey": "setup"})
        keys = {}
        for user, action in (("admin", "*"), ("fisproxy", "sts:AssumeRole")):
            iam.create_user(UserName=user)
            keys[user] = iam.create_access_key(UserName=user)["AccessKey"]
            iam.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]}))
        # (moto checks trust policies only for AWS principals: the proxy's user stands for FIS)
        trust = json.dumps({"Version": "2012-10-17", "Statement": [{
            "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/fisproxy"},
            "Action": "sts:AssumeRole"}]})
        iam.create_role(RoleName="fis-logs", AssumeRolePolicyDocument=trust)
        iam.put_role_policy(RoleName="fis-logs", PolicyName="logs", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": "*", "Action": [
                "s3:PutObject", "logs:CreateLogStream", "logs:PutLogEvents"]}]}))
        iam.create_role(RoleName="fis-no-logs", AssumeRolePolicyDocument=trust)  # call 9
        admin = keys["admin"]
        client(url, "s3", admin).create_bucket(Bucket=BUCKET)
        client(url, "logs", admin).create_log_group(logGroupName=GROUP)
        # The proxy's own credentials cannot write there: what the test tells apart.
        with pytest.raises(Exception, match="AccessDenied"):
            client(url, "s3", keys["fisproxy"]).put_object(Bucket=BUCKET, Key="own", Body=b"x")
        yield url, keys
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, iam_moto: tuple[str, dict[str, dict[str, str]]]) -> Iterator[Fisproxy]:
    url, keys = iam_moto
    own = keys["fisproxy"]
    with Fisproxy(tmp_path_factory.mktemp("fisproxy-logs"), url, env_extra={
            "AWS_ACCESS_KEY_ID": own["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": own["SecretAccessKey"]},
    ).running() as p:
        yield p


def run(proxy: Fisproxy, role: str) -> str:
    fis = proxy.fis()
    template = fis.create_experiment_template(
        description=f"logs as {role}", roleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}",
        stopConditions=[{"source": "none"}],
        actions={"wait": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1S"}}},
        logConfiguration={
            "logSchemaVersion": 2,
            "s3Configuration": {"bucketName": BUCKET, "prefix": role},
            "cloudWatchLogsConfiguration": {"logGroupArn": f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:{GROUP}:*"},
        })["experimentTemplate"]
    exp_id = fis.start_experiment(experimentTemplateId=template["id"])["experiment"]["id"]
    wait_for_state(fis, exp_id, "completed")
    return exp_id


def objects(url: str, admin: dict[str, str], prefix: str) -> list[str]:
    listed = client(url, "s3", admin).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for o in listed.get("Contents", [])]


def test_logs_go_out_with_the_experiment_role(proxy: Fisproxy, iam_moto: tuple[str, dict[str, dict[str, str]]]) -> None:
    url, keys = iam_moto
    exp_id = run(proxy, "fis-logs")
    wait_until(lambda: bool(objects(url, keys["admin"], "fis-logs/")), 20, "the log object in S3")
    key, = objects(url, keys["admin"], "fis-logs/")
    assert f"/AWSLogs/{ACCOUNT}/fis/us-east-1/{exp_id}/" in key
    body = client(url, "s3", keys["admin"]).get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    types = [json.loads(line)["log_type"] for line in body.splitlines()]
    assert types[0] == "experiment-start" and types[-1] == "experiment-end"
    events = client(url, "logs", keys["admin"]).get_log_events(
        logGroupName=GROUP, logStreamName=f"/aws/fis/{exp_id}", startFromHead=True)["events"]
    assert [json.loads(e["message"])["log_type"] for e in events] == types


def test_a_role_that_may_not_write_logs_delivers_nothing_and_the_proxy_says_why(
        proxy: Fisproxy, iam_moto: tuple[str, dict[str, dict[str, str]]]) -> None:
    url, keys = iam_moto
    exp_id = run(proxy, "fis-no-logs")
    wait_until(lambda: f"experiment {exp_id}: log delivery failed" in proxy.log.read_text(errors="replace"),
               20, "the delivery failure in the proxy's log")
    lines = [line for line in proxy.log.read_text(errors="replace").splitlines()
             if f"experiment {exp_id}: log delivery failed" in line]
    # Refused to the role (moto names the assumed role), for both destinations.
    assert any("s3://" in line and "AccessDenied" in line for line in lines), lines
    assert any("CloudWatch Logs" in line and "assumed-role/fis-no-logs/" in line for line in lines), lines
    time.sleep(1)
    assert objects(url, keys["admin"], "fis-no-logs/") == []
    with pytest.raises(Exception, match="ResourceNotFound"):
        client(url, "logs", keys["admin"]).get_log_events(logGroupName=GROUP, logStreamName=f"/aws/fis/{exp_id}")
