"""aws:dynamodb:global-table-pause-replication, as AWS FIS does it for multi-Region eventually
consistent global tables: a statement in each table's resource policy denies the DynamoDB
replication service role the table's data and control operations until the action's end; the
statement is removed at the end (and the policy deleted if fisproxy created it)
(https://docs.aws.amazon.com/fis/latest/userguide/fis-actions-reference.html#dynamodb-actions-reference).
"""

from __future__ import annotations

import datetime
import json
from typing import Any

from botocore.exceptions import ClientError

from fisproxy.fis.resources.base import ActionContext, register, upstream_call

_DENIED = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
           "dynamodb:DescribeTable", "dynamodb:UpdateTable", "dynamodb:Scan",
           "dynamodb:DescribeTimeToLive", "dynamodb:UpdateTimeToLive"]
_REPLICATION_ROLE = ("role/aws-service-role/replication.dynamodb.amazonaws.com/"
                     "AWSServiceRoleForDynamoDBReplication")


def _sid(ctx: ActionContext) -> str:
    return "DoNotModifyFisDynamoDbPauseReplication" + "".join(c for c in ctx.experiment_id if c.isalnum())


def _statement(ctx: ActionContext, table_arn: str) -> dict[str, Any]:
    left = ctx.remaining() or 0.0
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=left)
    account = table_arn.split(":")[4]
    partition = table_arn.split(":")[1]
    return {
        "Sid": _sid(ctx),
        "Effect": "Deny",
        "Principal": {"AWS": "*"},
        "Action": _DENIED,
        "Resource": table_arn,
        "Condition": {
            "DateLessThan": {"aws:CurrentTime": until.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"},
            "ArnEquals": {"aws:PrincipalArn": f"arn:{partition}:iam::{account}:{_REPLICATION_ROLE}"},
        },
    }


def _policy(ctx: ActionContext, arn: str) -> dict[str, Any] | None:
    try:
        answer = ctx.client("dynamodb").get_resource_policy(ResourceArn=arn)
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "PolicyNotFoundException":
            return None
        raise
    return dict(json.loads(answer["Policy"]))


@register("aws:dynamodb:global-table-pause-replication")
class GlobalTablePauseReplication:
    def start(self, ctx: ActionContext) -> None:
        ddb = ctx.client("dynamodb")
        paused: dict[str, bool] = ctx.state.setdefault("paused", {})
        for arn in ctx.target("Tables").arns:
            with upstream_call(f"dynamodb GetResourcePolicy of {arn}"):
                policy = _policy(ctx, arn)
            created = policy is None
            policy = policy or {"Version": "2012-10-17", "Statement": []}
            statements = [s for s in policy.get("Statement", []) if s.get("Sid") != _sid(ctx)]
            policy["Statement"] = statements + [_statement(ctx, arn)]
            with upstream_call(f"dynamodb PutResourcePolicy of {arn}"):
                ddb.put_resource_policy(ResourceArn=arn, Policy=json.dumps(policy))
            paused[arn] = created
            ctx.log(f"Paused replication of {arn} (resource policy statement {_sid(ctx)}).")

    def stop(self, ctx: ActionContext) -> None:
        ddb = ctx.client("dynamodb")
        paused: dict[str, bool] = ctx.state.get("paused", {})
        for arn, created in list(paused.items()):
            with upstream_call(f"dynamodb GetResourcePolicy of {arn}"):
                policy = _policy(ctx, arn)
            if policy is not None:
                rest = [s for s in policy.get("Statement", []) if s.get("Sid") != _sid(ctx)]
                if created and not rest:
                    with upstream_call(f"dynamodb DeleteResourcePolicy of {arn}"):
                        ddb.delete_resource_policy(ResourceArn=arn)
                else:
                    policy["Statement"] = rest
                    with upstream_call(f"dynamodb PutResourcePolicy of {arn}"):
                        ddb.put_resource_policy(ResourceArn=arn, Policy=json.dumps(policy))
            del paused[arn]
            ctx.log(f"Replication of {arn} resumed.")
