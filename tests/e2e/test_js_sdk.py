"""The AWS SDK for JavaScript v3 as a real client: node runs tests/js/throttle.mjs through the
fisproxy process (hpagent for HTTPS_PROXY, NODE_EXTRA_CA_CERTS for the CA) while a FIS
experiment throttles DynamoDB PutItem; the SDK must classify and retry the injected error exactly
as it does a real throttle, and GetItem must pass untouched."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Fisproxy, start_action
from tests.helpers import run_group

JS_DIR = Path(__file__).resolve().parent.parent / "js"
NEEDED = ("@aws-sdk/client-dynamodb", "@smithy/node-http-handler", "hpagent")
# JS v3's default for DynamoDB (the standard retry mode: 4 attempts,
# https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html), the same as the SDK announces in `amz-sdk-request: attempt=N; max=4`.
JS_DYNAMODB_ATTEMPTS = 4


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with tests/js's locked packages installed (npm ci, once)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the AWS SDK for JavaScript v3 tests")
    if not all((JS_DIR / "node_modules" / name / "package.json").is_file() for name in NEEDED):
        # The machine's own environment: npm talks to the registry, not to fisproxy. Tried
        # three times: a registry hiccup should not fail the suite.
        for _ in range(3):
            result = run_group([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR,
                               env=dict(os.environ), text=True, timeout=600)
            if result.returncode == 0:
                break
        assert result.returncode == 0, f"npm ci failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return node


def run_node(proxy: Fisproxy, node: str, *args: str) -> dict[str, Any]:
    result = subprocess.run([node, str(JS_DIR / "throttle.mjs"), *args], cwd=JS_DIR, env=proxy.env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"node failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_js_sdk_retries_injected_throttle_like_a_real_one(node: str, proxy: Fisproxy) -> None:
    table = f"js-{uuid.uuid4().hex[:8]}"
    ddb = proxy.client("dynamodb")
    ddb.create_table(
        TableName=table, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    ddb.put_item(TableName=table, Item={"pk": {"S": "seeded"}, "v": {"S": "1"}})
    exp_id = start_action(proxy, "aws:fis:inject-api-throttle-error",
                          {"service": "dynamodb", "operations": "PutItem", "percentage": "100"})

    out = run_node(proxy, node, table, "us-east-1")

    put = out["put"]
    assert not put["ok"], put
    assert put["name"] == "ThrottlingException", put
    assert put["fault"] == "client"
    meta = put["metadata"]
    assert meta["httpStatusCode"] == 400
    assert meta["attempts"] == JS_DYNAMODB_ATTEMPTS, put
    assert meta["totalRetryDelay"] > 0, "the SDK backed off between attempts"
    # Every attempt really went over the wire and was answered by the experiment.
    wire = put["wire"]
    assert [w["sdkRequest"] for w in wire] == [
        f"attempt={n}; max={JS_DYNAMODB_ATTEMPTS}" for n in range(1, JS_DYNAMODB_ATTEMPTS + 1)]
    assert {w["operation"] for w in wire} == {"DynamoDB_20120810.PutItem"}
    assert {w["status"] for w in wire} == {400}
    assert all(w["fault"] and w["fault"].startswith(f"{exp_id}/") for w in wire), wire

    get = out["get"]
    assert get["ok"], get
    assert get["item"] == {"pk": {"S": "seeded"}, "v": {"S": "1"}}
    assert get["metadata"]["attempts"] == 1
    assert [w["fault"] for w in get["wire"]] == [None]

    # The throttled write never reached the upstream.
    assert "Item" not in ddb.get_item(TableName=table, Key={"pk": {"S": "js"}})
