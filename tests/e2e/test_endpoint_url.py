"""The third way in: SDKs pointed at fisproxy with an endpoint URL (`--endpoint-port`), for
upstreams that do not check signatures (moto, LocalStack). No proxy settings, no CA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
from botocore.config import Config

from tests.e2e.conftest import Fisproxy, start_action
from tests.helpers import free_port


@pytest.fixture
def endpoint(tmp_path: Path, moto: str) -> Iterator[tuple[Fisproxy, str]]:
    port = free_port()
    with Fisproxy(tmp_path, moto, extra_args=("--endpoint-port", str(port))).running() as proxy:
        yield proxy, f"http://127.0.0.1:{port}"


def test_sdk_with_endpoint_url(endpoint: tuple[Fisproxy, str]) -> None:
    proxy, url = endpoint

    def client(service: str):
        return boto3.session.Session().client(
            service, region_name="us-east-1", endpoint_url=url, aws_access_key_id="testing",
            aws_secret_access_key="testing", config=Config(retries={"total_max_attempts": 1}, proxies={}))

    s3 = client("s3")
    s3.create_bucket(Bucket="endpoint-url")
    s3.put_object(Bucket="endpoint-url", Key="k", Body=b"through the endpoint")
    assert s3.get_object(Bucket="endpoint-url", Key="k")["Body"].read() == b"through the endpoint"
    exp_id = start_action(proxy, "aws:fis:inject-api-throttle-error",
                          {"service": "dynamodb", "operations": "ListTables", "percentage": "100"})
    with pytest.raises(botocore.exceptions.ClientError) as info:
        client("dynamodb").list_tables()
    assert info.value.response["Error"]["Code"] == "ThrottlingException"
    assert info.value.response["ResponseMetadata"]["HTTPHeaders"]["x-fisproxy-fault"] == f"{exp_id}/fault/error"
