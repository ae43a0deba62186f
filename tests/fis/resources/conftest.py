"""Shared set-up for the resource tests: the experiment role's session on the suite's moto
server, a moto server that enforces IAM (for AccessDenied and AssumeRole), and contexts."""

from __future__ import annotations

import functools
import json
import random
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from fisproxy.fis.resources.base import ActionContext
from fisproxy.fis.resources.resolve import resolve_target
from fisproxy.fis.resources.targets import ResolvedTarget
from fisproxy.fis.upstream import RoleSession, RoleSessions
from tests.helpers import clean_env, free_port, http_ok, stop, wait_until

ACCOUNT = "123456789012"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/fis-experiment"
TEST_KEYS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@dataclass
class Target:
    """What resolve_target reads from an experiment target."""

    resource_type: str
    selection_mode: str = "ALL"
    resource_arns: list[str] | None = None
    resource_tags: dict[str, str] | None = None
    filters: list[dict[str, Any]] | None = None
    parameters: dict[str, str] | None = None


def boto(url: str, service: str, region: str = "us-east-1", **keys: str) -> Any:
    """A boto3 client as the test's own hand on the upstream (setting up, checking)."""
    return boto3.client(service, endpoint_url=url, region_name=region, **(keys or TEST_KEYS))


@pytest.fixture(scope="session")
def moto_lambda(moto_url: str) -> str:
    """The suite's moto, running Lambda functions in-process (no Docker)."""
    requests.post(f"{moto_url}/moto-api/config", json={"lambda": {"use_docker": False}}, timeout=5,
                  proxies={"http": None, "https": None}).raise_for_status()
    return moto_url


@pytest.fixture
def tag() -> dict[str, str]:
    """A tag no other test uses: the suite's moto is shared."""
    return {"fis-test": uuid.uuid4().hex[:12]}


@pytest.fixture
def session(moto_url: str) -> RoleSession:
    return RoleSessions(moto_url).session(ROLE_ARN, "us-east-1", "EXPresources")


@pytest.fixture
def resolve(session: RoleSession) -> Callable[..., ResolvedTarget]:
    def run(target: Target, seed: int = 0, name: str = "t", region: str = "us-east-1") -> ResolvedTarget:
        return resolve_target(name, target, session, region, random.Random(seed))

    return run


@pytest.fixture
def context(session: RoleSession) -> Callable[..., ActionContext]:
    def make(action_id: str, targets: Mapping[str, ResolvedTarget], parameters: Mapping[str, str] | None = None,
             *, deadline: float | None = None, log: list[str] | None = None, seed: int = 0) -> ActionContext:
        lines = log if log is not None else []
        return ActionContext(
            experiment_id="EXPresources", action_name="a", action_id=action_id, clients=session,
            targets=targets, parameters=dict(parameters or {}), region="us-east-1", log=lines.append,
            deadline=deadline, rng=random.Random(seed),
        )

    return make


@functools.cache
def image(url: str, region: str = "us-east-1") -> str:
    """An AMI of the upstream (moto's DescribeImages is slow: asked once)."""
    return str(boto(url, "ec2", region).describe_images()["Images"][0]["ImageId"])


def run_instances(url: str, count: int, tags: Mapping[str, str], region: str = "us-east-1", **extra: Any) -> list[str]:
    ec2 = boto(url, "ec2", region)
    ami = image(url, region)
    answer = ec2.run_instances(
        ImageId=ami, MinCount=count, MaxCount=count, InstanceType="t3.micro",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}],
        **extra,
    )
    return [i["InstanceId"] for i in answer["Instances"]]


def states(url: str, ids: list[str], region: str = "us-east-1") -> dict[str, str]:
    answer = boto(url, "ec2", region).describe_instances(InstanceIds=ids)
    return {i["InstanceId"]: i["State"]["Name"] for r in answer["Reservations"] for i in r["Instances"]}


@dataclass
class AuthUpstream:
    """A moto server that checks IAM: the proxy's own user may only assume roles, the role
    `ROLE_ARN` may only describe EC2 instances, `weak` may do nothing."""

    url: str
    proxy_keys: dict[str, str]
    weak_keys: dict[str, str]


def _start_moto(log: Path, **env: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env=clean_env(**env),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_ok(f"{url}/moto-api/"), 60, "moto server", proc)
    except BaseException:
        stop(proc)
        raise
    return proc, url


def _keys(key: dict[str, str]) -> dict[str, str]:
    return {"aws_access_key_id": key["AccessKeyId"], "aws_secret_access_key": key["SecretAccessKey"]}


@pytest.fixture(scope="module")
def auth_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthUpstream]:
    # Moto enforces IAM after this many requests: enough to create the users and the role.
    proc, url = _start_moto(tmp_path_factory.mktemp("moto-auth") / "moto.log", INITIAL_NO_AUTH_ACTION_COUNT="9")
    try:
        iam = boto(url, "iam")
        allow = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["sts:AssumeRole"], "Resource": "*"}]}
        trust = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]}
        role_policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["ec2:DescribeInstances"], "Resource": "*"}]}
        iam.create_user(UserName="proxy")                                                     # 1
        proxy_key = iam.create_access_key(UserName="proxy")["AccessKey"]                      # 2
        iam.put_user_policy(UserName="proxy", PolicyName="assume", PolicyDocument=json.dumps(allow))  # 3
        iam.create_role(RoleName="fis-experiment", AssumeRolePolicyDocument=json.dumps(trust))  # 4
        iam.put_role_policy(RoleName="fis-experiment", PolicyName="describe",
                            PolicyDocument=json.dumps(role_policy))                           # 5
        iam.create_user(UserName="weak")                                                      # 6
        weak_key = iam.create_access_key(UserName="weak")["AccessKey"]                        # 7
        ec2 = boto(url, "ec2")
        ami = ec2.describe_images()["Images"][0]["ImageId"]                                   # 8
        ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1,                                # 9
                          TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "app", "Value": "auth"}]}])
        yield AuthUpstream(url, _keys(proxy_key), _keys(weak_key))
    finally:
        stop(proc)
