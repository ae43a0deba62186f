"""aws:s3:bucket-pause-replication: the replication rules of each target bucket whose
destination is in `region` (and among `destinationBuckets`, and whose filter prefix is among
`prefixes`, when given) are set Disabled with PutBucketReplication; the bucket's original
replication configuration is put back at the end. (AWS FIS uses a pause flag of the same API
that only it may set; disabling the rules is the public equivalent.)
"""

from __future__ import annotations

import copy
from typing import Any

from fisproxy.fis.resources.base import ActionContext, register, upstream_call


def _rule_prefix(rule: dict[str, Any]) -> str | None:
    f = rule.get("Filter") or {}
    return f.get("Prefix", (f.get("And") or {}).get("Prefix", rule.get("Prefix")))


@register("aws:s3:bucket-pause-replication")
class BucketPauseReplication:
    def start(self, ctx: ActionContext) -> None:
        s3 = ctx.client("s3")
        region = ctx.parameters["region"]
        buckets = {b.strip() for b in ctx.parameters.get("destinationBuckets", "").split(",") if b.strip()}
        prefixes = {p.strip() for p in ctx.parameters.get("prefixes", "").split(",") if p.strip()}
        saved: dict[str, Any] = ctx.state.setdefault("configurations", {})
        regions: dict[str, str] = {}
        for bucket in ctx.target("Buckets").ids:
            with upstream_call(f"s3 GetBucketReplication of {bucket}"):
                config = s3.get_bucket_replication(Bucket=bucket)["ReplicationConfiguration"]
            paused = copy.deepcopy(config)
            names = []
            for rule in paused.get("Rules", []):
                destination = rule.get("Destination", {}).get("Bucket", "").rsplit(":", 1)[-1]
                if rule.get("Status") != "Enabled":
                    continue
                if buckets and destination not in buckets:
                    continue
                if prefixes and _rule_prefix(rule) not in prefixes:
                    continue
                if destination not in regions:
                    with upstream_call(f"s3 GetBucketLocation of {destination}"):
                        where = s3.get_bucket_location(Bucket=destination).get("LocationConstraint")
                    regions[destination] = where or "us-east-1"
                if regions[destination] != region:
                    continue
                rule["Status"] = "Disabled"
                names.append(rule.get("ID") or destination)
            if not names:
                ctx.log(f"Bucket {bucket} has no enabled replication rule to {region} matching the parameters.")
                continue
            saved[bucket] = config
            with upstream_call(f"s3 PutBucketReplication of {bucket}"):
                s3.put_bucket_replication(Bucket=bucket, ReplicationConfiguration=paused)
            ctx.log(f"Replication of {bucket} paused (rules {', '.join(names)}).")

    def stop(self, ctx: ActionContext) -> None:
        s3 = ctx.client("s3")
        saved: dict[str, Any] = ctx.state.get("configurations", {})
        for bucket, config in list(saved.items()):
            with upstream_call(f"s3 PutBucketReplication of {bucket}"):
                s3.put_bucket_replication(Bucket=bucket, ReplicationConfiguration=config)
            del saved[bucket]
            ctx.log(f"Replication of {bucket} resumed.")
