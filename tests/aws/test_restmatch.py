"""The REST route matcher, on botocore's own S3, Lambda and API Gateway models."""

from __future__ import annotations

import pytest
from mitmproxy.http import Headers

from fisproxy.aws.identify import parse_query
from fisproxy.aws.restmatch import RouteTable, route_table


def op(api: str, method: str, target: str, headers: dict[str, str] | None = None, *,
       virtual: bool = False, context: frozenset[str] = frozenset()) -> str | None:
    path, _, query = target.partition("?")
    match = route_table(api, virtual).match(
        method, path, parse_query(query), Headers(**(headers or {})), context
    )
    return match.operation if match else None


@pytest.mark.parametrize(
    ("method", "target", "headers", "expected"),
    [
        ("GET", "/", {}, "ListBuckets"),
        ("GET", "/b1", {}, "ListObjects"),
        ("GET", "/b1?list-type=2", {}, "ListObjectsV2"),
        ("GET", "/b1?list-type=3", {}, "ListObjects"),  # literal value must match
        ("GET", "/b1?uploads", {}, "ListMultipartUploads"),
        ("GET", "/b1?uploads=", {}, "ListMultipartUploads"),
        ("GET", "/b1?versions&prefix=a", {}, "ListObjectVersions"),
        ("GET", "/b1/a/b%20c.txt", {}, "GetObject"),
        ("GET", "/b1/a/b?uploadId=u1", {}, "ListParts"),
        ("GET", "/b1/k?acl", {}, "GetObjectAcl"),
        ("GET", "/b1?acl", {}, "GetBucketAcl"),
        ("GET", "/b1?analytics", {}, "ListBucketAnalyticsConfigurations"),
        ("GET", "/b1?analytics&id=x", {}, "GetBucketAnalyticsConfiguration"),
        ("HEAD", "/b1", {}, "HeadBucket"),
        ("HEAD", "/b1/k", {}, "HeadObject"),
        ("PUT", "/b1", {}, "CreateBucket"),
        ("PUT", "/b1/k", {}, "PutObject"),
        ("PUT", "/b1/k", {"x-amz-copy-source": "/b0/k0"}, "CopyObject"),
        ("PUT", "/b1/k?partNumber=1&uploadId=u", {}, "UploadPart"),
        ("PUT", "/b1/k?partNumber=1&uploadId=u", {"x-amz-copy-source": "/b0/k0"}, "UploadPartCopy"),
        ("POST", "/b1/k?uploads", {}, "CreateMultipartUpload"),
        ("POST", "/b1/k?uploadId=u", {}, "CompleteMultipartUpload"),
        ("POST", "/b1/k?select&select-type=2", {}, "SelectObjectContent"),
        ("POST", "/b1/k?select", {}, None),  # select-type=2 missing
        ("POST", "/b1?delete", {}, "DeleteObjects"),
        ("DELETE", "/b1/k", {}, "DeleteObject"),
        ("DELETE", "/b1/k?uploadId=u", {}, "AbortMultipartUpload"),
        ("DELETE", "/b1", {}, "DeleteBucket"),
        ("GET", "/b1?lifecycle", {}, "GetBucketLifecycleConfiguration"),  # not the deprecated twin
        ("PUT", "/b1/k?x-id=PutObject", {}, "PutObject"),
        ("PUT", "/b1/k?x-id=CopyObject", {"x-amz-copy-source": "/b0/k0"}, "CopyObject"),
        ("PATCH", "/b1/k", {}, None),
    ],
)
def test_s3_path_style(method: str, target: str, headers: dict[str, str], expected: str | None) -> None:
    assert op("s3", method, target, headers) == expected


@pytest.mark.parametrize(
    ("method", "target", "headers", "expected"),
    [
        ("GET", "/", {}, "ListObjects"),  # on a bucket host, not ListBuckets
        ("GET", "/?list-type=2", {}, "ListObjectsV2"),
        ("GET", "/?location", {}, "GetBucketLocation"),
        ("GET", "/k", {}, "GetObject"),
        ("GET", "/dir/k?uploadId=u", {}, "ListParts"),
        ("PUT", "/", {}, "CreateBucket"),
        ("PUT", "/a/b/c", {}, "PutObject"),
        ("HEAD", "/", {}, "HeadBucket"),
        ("POST", "/WriteGetObjectResponse", {}, None),  # not a bucket operation
    ],
)
def test_s3_virtual_hosted(method: str, target: str, headers: dict[str, str], expected: str | None) -> None:
    assert op("s3", method, target, headers, virtual=True) == expected


def test_virtual_table_has_only_bucket_operations() -> None:
    table = route_table("s3", True)
    names = {r.operation for routes in table.routes.values() for r in routes}
    assert "ListBuckets" not in names and "WriteGetObjectResponse" not in names
    assert {"GetObject", "ListObjects", "CreateBucket"} <= names
    assert all(r.template.startswith("/") for routes in table.routes.values() for r in routes)


def test_host_context_breaks_wire_identical_ties() -> None:
    express = frozenset({"UseS3ExpressControlEndpoint"})
    assert op("s3", "GET", "/") == "ListBuckets"
    assert op("s3", "GET", "/", context=express) == "ListDirectoryBuckets"
    lam = frozenset({"UseObjectLambdaEndpoint"})
    headers = {"x-amz-request-route": "r", "x-amz-request-token": "t"}  # required members
    assert op("s3", "POST", "/WriteGetObjectResponse", headers, context=lam) == "WriteGetObjectResponse"
    assert op("s3", "POST", "/WriteGetObjectResponse", context=lam) is None


@pytest.mark.parametrize(
    ("method", "target", "expected"),
    [
        ("POST", "/2015-03-31/functions/f/invocations", "Invoke"),
        ("POST", "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Af/invocations", "Invoke"),
        ("GET", "/2015-03-31/functions/f", "GetFunction"),
        ("GET", "/2015-03-31/functions/f/configuration", "GetFunctionConfiguration"),
        ("GET", "/2015-03-31/functions", "ListFunctions"),
        ("GET", "/2015-03-31/functions/", "ListFunctions"),
        ("DELETE", "/2015-03-31/functions/f", "DeleteFunction"),
        ("GET", "/2015-03-31/functions/f/nope", None),
    ],
)
def test_lambda(method: str, target: str, expected: str | None) -> None:
    assert op("lambda", method, target) == expected


def test_apigateway_prefers_literal_segments() -> None:
    assert op("apigateway", "GET", "/restapis") == "GetRestApis"
    assert op("apigateway", "GET", "/restapis/a1") == "GetRestApi"
    assert op("apigateway", "GET", "/restapis/a1/resources") == "GetResources"
    assert op("apigateway", "GET", "/restapis/a1/resources/r1") == "GetResource"


def test_routes_are_sorted_most_specific_first() -> None:
    table = RouteTable("s3")
    for routes in table.routes.values():
        ranks = [r.specificity for r in routes]
        assert ranks == sorted(ranks, reverse=True)
    get = {r.operation: r for r in table.routes["GET"]}
    assert get["ListParts"].required_query == ("uploadId",)
    assert get["ListObjectsV2"].literal_query == (("list-type", "2"),)
    put = {r.operation: r for r in table.routes["PUT"]}
    assert put["CopyObject"].required_headers == ("x-amz-copy-source",)
    assert put["PutObject"].specificity[2] == -1  # one greedy label


@pytest.mark.parametrize(("api", "method", "path", "labels"), [
    ("s3", "GET", "/b1/a/b%20c.txt", {"Bucket": "b1", "Key": "a/b%20c.txt"}),  # greedy, raw
    ("s3", "GET", "/b1", {"Bucket": "b1"}),
    ("fis", "GET", "/experimentTemplates/EXT1/targetAccountConfigurations/123456789012",
     {"id": "EXT1", "accountId": "123456789012"}),
    ("fis", "GET", "/actions/aws%3Afis%3Await", {"id": "aws%3Afis%3Await"}),
    ("fis", "GET", "/experimentTemplates", {}),
])
def test_a_match_gives_the_raw_text_of_each_label(api: str, method: str, path: str, labels: dict[str, str]) -> None:
    match = route_table(api).match(method, path, {}, Headers())
    assert match is not None and match.route.labels(path) == labels
