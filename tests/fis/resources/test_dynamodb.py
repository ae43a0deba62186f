"""aws:dynamodb:global-table-pause-replication on a real moto server: a deny statement for the
replication service role in the table's resource policy, removed at the end."""

from __future__ import annotations

import json
import time

import pytest
from botocore.exceptions import ClientError

from fisproxy.fis.resources import implementation
from tests.fis.resources.conftest import ACCOUNT, Target, boto


def _table(url: str, name: str) -> str:
    return str(boto(url, "dynamodb").create_table(
        TableName=name, KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
    )["TableDescription"]["TableArn"])


def test_pause_adds_the_deny_statement_and_the_end_removes_it(moto_url, tag, resolve, context):
    ddb = boto(moto_url, "dynamodb")
    fresh = _table(moto_url, f"fresh-{tag['fis-test']}")
    owned = _table(moto_url, f"owned-{tag['fis-test']}")
    theirs = {"Sid": "Theirs", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
              "Action": "dynamodb:GetItem", "Resource": owned}
    ddb.put_resource_policy(ResourceArn=owned, Policy=json.dumps({"Version": "2012-10-17", "Statement": [theirs]}))
    target = resolve(Target("aws:dynamodb:global-table", resource_arns=[fresh, owned]))
    action = implementation("aws:dynamodb:global-table-pause-replication")
    ctx = context("aws:dynamodb:global-table-pause-replication", {"Tables": target}, {"duration": "PT5M"},
                  deadline=time.monotonic() + 300)
    action.start(ctx)
    for arn in (fresh, owned):
        statements = json.loads(ddb.get_resource_policy(ResourceArn=arn)["Policy"])["Statement"]
        fis = [s for s in statements if s["Sid"] == "DoNotModifyFisDynamoDbPauseReplicationEXPresources"]
        assert fis and fis[0]["Effect"] == "Deny" and "dynamodb:PutItem" in fis[0]["Action"]
        assert fis[0]["Condition"]["ArnEquals"]["aws:PrincipalArn"].endswith("/AWSServiceRoleForDynamoDBReplication")
    action.stop(ctx)
    with pytest.raises(ClientError, match="PolicyNotFoundException"):
        ddb.get_resource_policy(ResourceArn=fresh)  # fisproxy made it: deleted
    assert json.loads(ddb.get_resource_policy(ResourceArn=owned)["Policy"])["Statement"] == [theirs]
