"""The application of the pod test: boto3, configured only by its environment (HTTPS_PROXY,
AWS_CA_BUNDLE, AWS_ENDPOINT_URL_FIS, credentials, retries). It knows nothing of fisproxy.

    app.py loop TABLE        PutItem and GetItem on TABLE, one JSON line per call, forever
    app.py throttle OP       a template throttling DynamoDB's OP, started: prints the experiment id
    app.py experiment ID     prints the experiment's state
"""

import json
import sys
import time

import boto3
from botocore.exceptions import BotoCoreError, ClientError


def call(op: str, fn, **kwargs) -> None:
    record = {"op": op, "time": time.time()}
    try:
        fn(**kwargs)
        record["ok"] = True
    except ClientError as e:
        record.update(ok=False, error=e.response["Error"]["Code"],
                      attempts=e.response["ResponseMetadata"].get("RetryAttempts", 0) + 1)
    except BotoCoreError as e:
        record.update(ok=False, error=type(e).__name__)
    print(json.dumps(record), flush=True)


def loop(table: str) -> None:
    dynamodb = boto3.client("dynamodb")
    while True:
        try:
            dynamodb.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                                  AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                                  KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
            break
        except ClientError as e:
            if e.response["Error"]["Code"] == "ResourceInUseException":
                break
            print(json.dumps({"op": "CreateTable", "ok": False, "error": str(e)}), flush=True)
        except BotoCoreError as e:  # fisproxy or moto not up yet
            print(json.dumps({"op": "CreateTable", "ok": False, "error": str(e)}), flush=True)
        time.sleep(1)
    while True:
        call("PutItem", dynamodb.put_item, TableName=table, Item={"pk": {"S": "a"}})
        call("GetItem", dynamodb.get_item, TableName=table, Key={"pk": {"S": "a"}})
        time.sleep(0.5)


def throttle(operation: str) -> None:
    fis = boto3.client("fis")
    template = fis.create_experiment_template(
        roleArn="arn:aws:iam::123456789012:role/fis", description=f"Throttle {operation}",
        stopConditions=[{"source": "none"}],
        actions={"throttle": {"actionId": "aws:fis:inject-api-throttle-error", "parameters": {
            "service": "dynamodb", "operations": operation, "percentage": "100", "duration": "PT10M"}}})
    experiment = fis.start_experiment(experimentTemplateId=template["experimentTemplate"]["id"])
    print(experiment["experiment"]["id"])


def experiment(experiment_id: str) -> None:
    print(boto3.client("fis").get_experiment(id=experiment_id)["experiment"]["state"]["status"])


if __name__ == "__main__":
    {"loop": loop, "throttle": throttle, "experiment": experiment}[sys.argv[1]](*sys.argv[2:])
