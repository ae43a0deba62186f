"""LocalStack compatibility end to end: the FIS tutorial templates exactly as LocalStack's docs
write them (quirks included), and the Chaos API examples, against moto through the proxy."""

from __future__ import annotations

import time
import uuid
from typing import Any

import botocore.exceptions
import pytest

from tests.e2e.conftest import Fisproxy, wait_for_state


def run_template(proxy: Fisproxy, template: dict[str, Any]) -> str:
    fis = proxy.fis()
    created = fis.create_experiment_template(**template)["experimentTemplate"]
    exp = fis.start_experiment(experimentTemplateId=created["id"])["experiment"]
    wait_for_state(fis, exp["id"], "running")
    return exp["id"]


def make_table(proxy: Fisproxy, region: str = "us-east-1") -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    proxy.client("dynamodb", region).create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    return name


def test_tutorial_dynamodb_api_error(proxy: Fisproxy) -> None:
    """LocalStack FIS tutorial (experiment-ddb.json): every DynamoDB call fails with
    DynamoDbException 500, `api: all`, role ARN without a region field."""
    table = make_table(proxy)
    run_template(proxy, {
        "actions": {"Test action 1": {"actionId": "localstack:generic:api-error",
                                      "parameters": {"service": "dynamodb", "api": "all", "percentage": "100",
                                                     "exception": "DynamoDbException", "errorCode": "500"}}},
        "description": "Template for interfering with the DynamoDB service",
        "stopConditions": [{"source": "none"}],
        "roleArn": "arn:aws:iam:000000000000:role/ExperimentRole",
    })
    ddb = proxy.client("dynamodb", retries={"total_max_attempts": 1})
    with pytest.raises(botocore.exceptions.ClientError) as info:
        ddb.put_item(TableName=table, Item={"pk": {"S": "a"}})
    err = info.value.response
    assert err["Error"]["Code"] == "DynamoDbException"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert "Fault Injection" in err["Error"]["Message"]
    proxy.client("sqs").list_queues()  # other services untouched


def test_tutorial_kms_custom_exception(proxy: Fisproxy) -> None:
    run_template(proxy, {
        "actions": {"Some test action": {"actionId": "localstack:generic:api-error",
                                         "parameters": {"service": "kms", "operation": "ListKeys", "percentage": "100",
                                                        "exception": "SomeTerribleException", "errorCode": "400"}}},
        "description": "template for a test action", "stopConditions": [{"source": "none"}],
        "roleArn": "arn:aws:iam:123456789012:role/ExperimentRole",
    })
    kms = proxy.client("kms", retries={"total_max_attempts": 1})
    with pytest.raises(botocore.exceptions.ClientError) as info:
        kms.list_keys()
    assert info.value.response["Error"]["Code"] == "SomeTerribleException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    kms.list_aliases()


def test_tutorial_region_outage(proxy: Fisproxy) -> None:
    """Route 53 failover tutorial: a rule with only `region` takes the whole region down,
    with an empty stopConditions list."""
    make_table(proxy, "us-east-1")
    run_template(proxy, {
        "description": "template for internal server error for few regions i.e. us-west-1",
        "actions": {"regionUnavailable-us-west-1": {"actionId": "localstack:generic:api-error",
                                                    "parameters": {"region": "us-west-1", "errorCode": "503"}}},
        "stopConditions": [], "roleArn": "arn:aws:iam:000000000000:role/ExperimentRole",
    })
    for service, call in (("dynamodb", lambda c: c.list_tables()), ("sqs", lambda c: c.list_queues()),
                          ("s3", lambda c: c.list_buckets())):
        with pytest.raises(botocore.exceptions.ClientError) as info:
            call(proxy.client(service, "us-west-1", retries={"total_max_attempts": 1}))
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        call(proxy.client(service, "us-east-1"))  # other regions keep working


def test_tutorial_latency_then_error(proxy: Fisproxy) -> None:
    """Several actions act together: latency and an error on the same operation, the error
    arrives after the delay; latency alone on another call."""
    run_template(proxy, {
        "actions": {
            "latency": {"actionId": "localstack:generic:latency",
                        "parameters": {"service": "kms", "operation": "ListKeys", "latencyMilliseconds": "700"}},
            "error": {"actionId": "localstack:generic:api-error",
                      "parameters": {"service": "kms", "operation": "ListKeys", "percentage": "100",
                                     "exception": "InternalError", "errorCode": "400"}},
            "s3latency": {"actionId": "localstack:generic:latency",
                          "parameters": {"service": "s3", "operation": "ListBuckets", "latencyMilliseconds": "700"}},
        },
        "description": "template for testing delays", "stopConditions": [],
        "roleArn": "arn:aws:iam:000000000000:role/ExperimentRole",
    })
    t0 = time.monotonic()
    with pytest.raises(botocore.exceptions.ClientError):
        proxy.client("kms", retries={"total_max_attempts": 1}).list_keys()
    assert time.monotonic() - t0 >= 0.7
    t0 = time.monotonic()
    proxy.client("s3").list_buckets()
    assert time.monotonic() - t0 >= 0.7


def test_chaos_api_documented_examples(proxy: Fisproxy) -> None:
    first = [{"service": "s3", "region": "us-east-1"}, {"service": "s3", "region": "ap-south-1"},
             {"service": "lambda"}]
    assert proxy.control("POST", "/_localstack/chaos/faults", json=first).json() == first
    with pytest.raises(botocore.exceptions.ClientError) as info:
        proxy.client("s3", retries={"total_max_attempts": 1}).list_buckets()
    err = info.value.response
    assert err["Error"]["Code"] == "ServiceUnavailable"
    assert err["Error"]["Message"] == "Operation failed due to a simulated fault"
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert err["ResponseMetadata"]["HTTPHeaders"]["x-fisproxy-fault"] == "chaos/0/error"
    proxy.client("s3", "eu-west-1").list_buckets()  # region not in any rule

    patch = [{"service": "kinesis", "operation": "ListStreams", "probability": 1,
              "error": {"statusCode": 400, "code": "ProvisionedThroughputExceededException"}}]
    assert proxy.control("PATCH", "/_localstack/chaos/faults", json=patch).json() == first + patch
    with pytest.raises(botocore.exceptions.ClientError) as info:
        proxy.client("kinesis", retries={"total_max_attempts": 1}).list_streams()
    assert info.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"

    remaining = proxy.control("DELETE", "/_localstack/chaos/faults", json=[{"service": "lambda"}]).json()
    assert remaining == first[:2] + patch
    proxy.client("lambda").list_functions()

    bad = proxy.control("POST", "/_localstack/chaos/faults", json=[{"service": "s3", "foo": 1}])
    assert bad.status_code == 400 and "Additional properties are not allowed" in bad.json()["message"]
    assert proxy.control("GET", "/_localstack/chaos/faults").json() == first[:2] + patch

    assert proxy.control("POST", "/_localstack/chaos/faults", json=[]).json() == []
    proxy.client("s3", retries={"total_max_attempts": 1}).list_buckets()


def test_chaos_effects_latency(proxy: Fisproxy) -> None:
    assert proxy.control("POST", "/_localstack/chaos/effects", json={"latency": 600}).json() == {"latency": 600}
    t0 = time.monotonic()
    proxy.client("sqs").list_queues()
    assert time.monotonic() - t0 >= 0.6
    assert proxy.control("POST", "/_localstack/chaos/effects", json={"latency": 0}).json() == {"latency": 0}


def test_chaos_and_fis_side_by_side(proxy: Fisproxy) -> None:
    proxy.control("POST", "/_localstack/chaos/faults", json=[{"service": "sns"}])
    run_template(proxy, {
        "actions": {"t": {"actionId": "aws:fis:inject-api-throttle-error",
                          "parameters": {"service": "sqs", "percentage": "100"}}},
        "description": "sqs throttle", "stopConditions": [{"source": "none"}],
        "roleArn": "arn:aws:iam::123456789012:role/fis",
    })
    with pytest.raises(botocore.exceptions.ClientError) as sns_err:
        proxy.client("sns", retries={"total_max_attempts": 1}).list_topics()
    with pytest.raises(botocore.exceptions.ClientError) as sqs_err:
        proxy.client("sqs", retries={"total_max_attempts": 1}).list_queues()
    assert sns_err.value.response["ResponseMetadata"]["HTTPHeaders"]["x-fisproxy-fault"].startswith("chaos/")
    assert sqs_err.value.response["ResponseMetadata"]["HTTPHeaders"]["x-fisproxy-fault"].startswith("EXP")
