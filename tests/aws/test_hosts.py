"""Host parsing, against a table of real host shapes and against every hostname that botocore's
endpoints.json produces for every service and region."""

from __future__ import annotations

import re

import pytest

from fisproxy.aws import catalog
from fisproxy.aws.hosts import is_aws_host, parse_host

# host -> (endpoint prefix, region, fips, dualstack, bucket, account, global)
HOSTS = {
    "sqs.eu-west-1.amazonaws.com": ("sqs", "eu-west-1", False, False, None, None, False),
    "kms-fips.us-east-1.amazonaws.com": ("kms", "us-east-1", True, False, None, None, False),
    "dynamodb.us-east-1.api.aws": ("dynamodb", "us-east-1", False, True, None, None, False),
    "dynamodb-fips.us-east-1.api.aws": ("dynamodb", "us-east-1", True, True, None, None, False),
    "monitoring.us-west-2.amazonaws.com": ("monitoring", "us-west-2", False, False, None, None, False),
    "sqs.cn-north-1.amazonaws.com.cn": ("sqs", "cn-north-1", False, False, None, None, False),
    "sqs.cn-north-1.api.amazonwebservices.com.cn": ("sqs", "cn-north-1", False, True, None, None, False),
    "dynamodb.us-gov-west-1.amazonaws.com": ("dynamodb", "us-gov-west-1", False, False, None, None, False),
    "streams.dynamodb.eu-west-1.amazonaws.com": ("streams.dynamodb", "eu-west-1", False, False, None, None, False),
    "api.ecr.eu-west-1.amazonaws.com": ("api.ecr", "eu-west-1", False, False, None, None, False),
    "bedrock-runtime.us-east-1.amazonaws.com": ("bedrock-runtime", "us-east-1", False, False, None, None, False),
    "sync-states.us-east-1.amazonaws.com": ("states", "us-east-1", False, False, None, None, False),
    "streaming-logs.us-east-1.amazonaws.com": ("logs", "us-east-1", False, False, None, None, False),
    "vpce-0a1b-c2d3.sqs.us-east-1.vpce.amazonaws.com": ("sqs", "us-east-1", False, False, None, None, False),
    "123456789012.ddb.eu-west-1.amazonaws.com": ("dynamodb", "eu-west-1", False, False, None, "123456789012", False),
    "123456789012.s3-control.us-east-1.amazonaws.com": ("s3-control", "us-east-1", False, False, None, "123456789012", False),
    # S3 data plane: the bucket is everything left of the s3 label.
    "my-bucket.s3.amazonaws.com": ("s3", "us-east-1", False, False, "my-bucket", None, True),
    "s3.amazonaws.com": ("s3", "us-east-1", False, False, None, None, True),
    "my-bucket.s3.eu-west-1.amazonaws.com": ("s3", "eu-west-1", False, False, "my-bucket", None, False),
    "my.dotted.bucket.s3.eu-west-1.amazonaws.com": ("s3", "eu-west-1", False, False, "my.dotted.bucket", None, False),
    "bucket.s3-eu-west-1.amazonaws.com": ("s3", "eu-west-1", False, False, "bucket", None, False),
    "bucket.s3-external-1.amazonaws.com": ("s3", "us-east-1", False, False, "bucket", None, False),
    "s3.dualstack.eu-west-1.amazonaws.com": ("s3", "eu-west-1", False, True, None, None, False),
    "my-bucket.s3-fips.dualstack.us-east-1.amazonaws.com": ("s3", "us-east-1", True, True, "my-bucket", None, False),
    "my-bucket.s3-accelerate.amazonaws.com": ("s3", None, False, False, "my-bucket", None, False),
    "my-bucket.s3-accelerate.dualstack.amazonaws.com": ("s3", None, False, True, "my-bucket", None, False),
    "myap-123456789012.s3-accesspoint.us-west-2.amazonaws.com": ("s3", "us-west-2", False, False, "myap-123456789012", None, False),
    "mfzwi23gnjvgw.mrap.accesspoint.s3-global.amazonaws.com": ("s3", None, False, False, "mfzwi23gnjvgw.mrap.accesspoint", None, False),
    "b--usw2-az1--x-s3.s3express-usw2-az1.us-west-2.amazonaws.com": ("s3", "us-west-2", False, False, "b--usw2-az1--x-s3", None, False),
    "s3express-control.us-west-2.amazonaws.com": ("s3", "us-west-2", False, False, None, None, False),
    "bucket.vpce-1a2b.s3.us-east-1.vpce.amazonaws.com": ("s3", "us-east-1", False, False, "bucket", None, False),
    # Global endpoints: region from endpoints.json credentialScope.
    "iam.amazonaws.com": ("iam", "us-east-1", False, False, None, None, True),
    "iam.global.api.aws": ("iam", "us-east-1", False, True, None, None, True),
    "iam.us-gov.amazonaws.com": ("iam", "us-gov-west-1", False, False, None, None, True),
    "iam.cn-north-1.amazonaws.com.cn": ("iam", "cn-north-1", False, False, None, None, True),
    "sts.amazonaws.com": ("sts", "us-east-1", False, False, None, None, True),
    "route53.amazonaws.com": ("route53", "us-east-1", False, False, None, None, True),
    "cloudfront.amazonaws.com": ("cloudfront", "us-east-1", False, False, None, None, True),
    "global.health.amazonaws.com": ("health", "us-east-1", False, False, None, None, True),
    "networkmanager.us-west-2.amazonaws.com": ("networkmanager", "us-west-2", False, False, None, None, True),
    "sts.us-east-1.amazonaws.com": ("sts", "us-east-1", False, False, None, None, False),
}


@pytest.mark.parametrize(("host", "expected"), HOSTS.items())
def test_host_shapes(host: str, expected: tuple) -> None:
    info = parse_host(host)
    assert info is not None
    got = (info.endpoint_prefix, info.region, info.fips, info.dualstack, info.bucket, info.account, info.is_global)
    assert got == expected


def test_case_and_trailing_dot() -> None:
    assert parse_host("SQS.EU-WEST-1.AMAZONAWS.COM.") == parse_host("sqs.eu-west-1.amazonaws.com")


def test_partition_from_region() -> None:
    assert parse_host("sqs.us-gov-east-1.amazonaws.com").partition == "aws-us-gov"
    assert parse_host("sqs.cn-northwest-1.amazonaws.com.cn").partition == "aws-cn"
    assert parse_host("sqs.eusc-de-east-1.amazonaws.eu").partition == "aws-eusc"


@pytest.mark.parametrize(
    "host",
    ["example.com", "localhost", "127.0.0.1", "amazonaws.com", "evil-amazonaws.com",
     "amazonaws.com.evil.example", "nosuchservice.us-east-1.amazonaws.com", "d111.cloudfront.net"],
)
def test_not_an_aws_service_host(host: str) -> None:
    assert parse_host(host) is None


def test_is_aws_host_uses_every_partition_suffix() -> None:
    suffixes = set()
    for part in catalog.loader().load_data("partitions")["partitions"]:
        suffixes.add(part["outputs"]["dnsSuffix"])
        suffixes.add(part["outputs"]["dualStackDnsSuffix"])
    assert len(suffixes) >= 10
    for suffix in suffixes:
        assert is_aws_host(f"anything.{suffix}"), suffix
        assert not is_aws_host(suffix)
        assert not is_aws_host(f"x{suffix}")


# endpoints.json keys that share hosts with another model's endpoint prefix (IoT data plane).
_SAME_HOSTS = {"data.iot": {"data.iot", "data-ats.iot"}}


def _expected_prefixes(key: str) -> set[str]:
    if key in _SAME_HOSTS:
        return _SAME_HOSTS[key]
    if key not in catalog.apis_by_endpoint_prefix() and key in catalog.api_names():
        return {key, catalog.endpoint_prefix(key)}  # docdb, neptune: their own key or rds
    return {key}


def test_every_endpoints_json_hostname() -> None:
    """Every hostname botocore's endpoints.json yields (default pattern, FIPS and dual-stack
    variants, explicit hostnames), for every service and region, parses to its service and
    signing region."""
    data = catalog.loader().load_data("endpoints")
    region_res = {
        p["id"]: re.compile(p["regionRegex"]) for p in catalog.loader().load_data("partitions")["partitions"]
    }
    checked, wrong = 0, []
    for part in data["partitions"]:
        suffix = part["dnsSuffix"]
        defaults = part["defaults"]
        for key, service in part["services"].items():
            for region, endpoint in service.get("endpoints", {}).items():
                if endpoint.get("deprecated") or region == service.get("partitionEndpoint"):
                    continue
                if not region_res[part["partition"]].match(region):  # `fips-us-east-1` etc.
                    continue
                base = endpoint.get("hostname") or service.get("defaults", {}).get("hostname") or defaults["hostname"]
                forms = [(base, suffix, set())]
                forms += [(v["hostname"], v.get("dnsSuffix", suffix), set(v["tags"])) for v in defaults.get("variants", ())]
                expected_region = endpoint.get("credentialScope", {}).get("region", region)
                for template, dns_suffix, tags in forms:
                    host = template.format(service=key, region=region, dnsSuffix=dns_suffix)
                    info = parse_host(host)
                    checked += 1
                    if (
                        info is None
                        or info.endpoint_prefix not in _expected_prefixes(key)
                        or info.region != expected_region
                        or info.fips != ("fips" in tags or "-fips" in host)
                        or ("dualstack" in tags and not info.dualstack)
                    ):
                        wrong.append((host, info))
    assert checked > 20000
    assert wrong == []
