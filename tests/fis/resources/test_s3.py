"""aws:s3:bucket-pause-replication on a real moto server."""

from __future__ import annotations

import time

from fisproxy.fis.resources import implementation
from tests.fis.resources.conftest import ACCOUNT, Target, boto


def test_replication_rules_to_the_region_are_disabled_then_restored(moto_url, tag, resolve, context):
    s3 = boto(moto_url, "s3")
    source, destination = f"src-{tag['fis-test']}", f"dst-{tag['fis-test']}"
    for bucket in (source, destination):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_tagging(Bucket=source, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tag.items()]})
    rule = {"ID": "all", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
            "DeleteMarkerReplication": {"Status": "Disabled"}, "Destination": {"Bucket": f"arn:aws:s3:::{destination}"}}
    s3.put_bucket_replication(Bucket=source, ReplicationConfiguration={
        "Role": f"arn:aws:iam::{ACCOUNT}:role/replication", "Rules": [rule]})
    target = resolve(Target("aws:s3:bucket", resource_tags=tag))
    assert target.ids == (source,)
    action = implementation("aws:s3:bucket-pause-replication")
    ctx = context("aws:s3:bucket-pause-replication", {"Buckets": target},
                  {"duration": "PT5M", "region": "us-east-1", "destinationBuckets": destination},
                  deadline=time.monotonic() + 300)
    action.start(ctx)
    assert s3.get_bucket_replication(Bucket=source)["ReplicationConfiguration"]["Rules"][0]["Status"] == "Disabled"
    action.stop(ctx)
    assert s3.get_bucket_replication(Bucket=source)["ReplicationConfiguration"]["Rules"][0]["Status"] == "Enabled"


def test_rules_to_another_region_are_left_alone(moto_url, tag, resolve, context):
    s3 = boto(moto_url, "s3")
    source, destination = f"src2-{tag['fis-test']}", f"dst2-{tag['fis-test']}"
    for bucket in (source, destination):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_replication(Bucket=source, ReplicationConfiguration={
        "Role": f"arn:aws:iam::{ACCOUNT}:role/replication",
        "Rules": [{"ID": "r", "Priority": 1, "Status": "Enabled", "Filter": {"Prefix": ""},
                   "DeleteMarkerReplication": {"Status": "Disabled"},
                   "Destination": {"Bucket": f"arn:aws:s3:::{destination}"}}]})
    log: list[str] = []
    action = implementation("aws:s3:bucket-pause-replication")
    ctx = context("aws:s3:bucket-pause-replication",
                  {"Buckets": resolve(Target("aws:s3:bucket", resource_arns=[f"arn:aws:s3:::{source}"]))},
                  {"duration": "PT5M", "region": "eu-west-1"}, log=log)
    action.start(ctx)
    action.stop(ctx)
    assert s3.get_bucket_replication(Bucket=source)["ReplicationConfiguration"]["Rules"][0]["Status"] == "Enabled"
    assert log == [f"Bucket {source} has no enabled replication rule to eu-west-1 matching the parameters."]
