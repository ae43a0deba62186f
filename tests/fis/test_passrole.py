"""Which roles a caller may pass (passrole.py, fisproxy's iam:PassRole): `--allowed-role`
patterns, and resource actions against an upstream that is not on this machine only with that
list or an authenticated control API. Refusals reach boto3 as AccessDeniedException naming
roleArn, on create, update and start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from fisproxy.fis.api import FisApi
from fisproxy.fis.chaos import ChaosApi, ChaosState
from fisproxy.fis.passrole import RolePolicy
from fisproxy.proxy.auth import ControlAuth
from fisproxy.proxy.control import ControlPlane, ControlRouter
from fisproxy.proxy.controlserver import ControlServer
from fisproxy.proxy.settings import role_policy
from fisproxy.store import Store
from tests.fis.test_api import FakeRunner

ROLE = "arn:aws:iam::111122223333:role/fis-ec2"
OTHER = "arn:aws:iam::111122223333:role/admin"
STOP = {"stop": {"actionId": "aws:ec2:stop-instances", "targets": {"Instances": "i"}}}
TARGETS = {"i": {"resourceType": "aws:ec2:instance", "resourceArns": [
    "arn:aws:ec2:us-east-1:111122223333:instance/i-0123456789abcdef0"], "selectionMode": "ALL"}}
WAIT = {"wait": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1M"}}}


class Action:
    def __init__(self, action_id: str) -> None:
        self.action_id = action_id


@pytest.mark.parametrize("pattern, arn, allowed", [
    ("arn:aws:iam::111122223333:role/fis-*", ROLE, True),
    ("arn:aws:iam::111122223333:role/fis-*", OTHER, False),
    ("arn:aws:iam::*:role/fis-ec?", ROLE, True),
    ("arn:aws:iam::*:role/fis-ec?", ROLE + "2", False),
    ("*", OTHER, True),
    ("arn:aws:iam::111122223333:role/[a]*", "arn:aws:iam::111122223333:role/a", False),  # not fnmatch
    ("arn:aws:iam::111122223333:role/fis-ec2", ROLE, True),
    ("arn:aws:iam::111122223333:role/fis-ec2", ROLE.upper(), False),
])
def test_patterns_are_iam_wildcards(pattern: str, arn: str, allowed: bool) -> None:
    assert RolePolicy.from_options([pattern], remote_upstream=False, authenticated=False).allows(arn) is allowed


def test_a_listed_policy_refuses_any_other_role_whatever_the_actions() -> None:
    policy = RolePolicy.from_options(["arn:aws:iam::111122223333:role/fis-*"], remote_upstream=False,
                                     authenticated=True)
    assert policy.refusal(ROLE, {"s": Action("aws:ec2:stop-instances")}) is None
    refusal = policy.refusal(OTHER, {"w": Action("aws:fis:wait")})
    assert refusal is not None and refusal.startswith(f"roleArn: {OTHER} ") and "--allowed-role" in refusal


@pytest.mark.parametrize("remote, authenticated, refused", [
    (True, False, True), (True, True, False), (False, False, False), (False, True, False)])
def test_resource_actions_against_a_remote_upstream_need_a_list_or_authentication(
        remote: bool, authenticated: bool, refused: bool) -> None:
    policy = RolePolicy.from_options([], remote_upstream=remote, authenticated=authenticated)
    refusal = policy.refusal(OTHER, {"stop": Action("aws:ec2:stop-instances")})
    assert (refusal is not None) is refused
    if refusal:
        assert "action stop (aws:ec2:stop-instances)" in refusal and "real AWS" in refusal
        assert "--allowed-role" in refusal and "--control-token" in refusal
    # API faults act on no resource: any role, anywhere
    assert policy.refusal(OTHER, {"t": Action("aws:fis:inject-api-throttle-error")}) is None
    # skip-all runs no action
    assert policy.refusal(OTHER, {"stop": Action("aws:ec2:stop-instances")}, run_actions=False) is None


def test_where_the_upstream_is() -> None:
    def remote(endpoint: tuple[str, str, int] | None) -> bool:
        return role_policy([], endpoint, ControlAuth()).remote_upstream

    assert remote(None)  # real AWS
    assert not remote(("http", "127.0.0.1", 5000)) and not remote(("http", "localhost", 4566))
    assert remote(("http", "localstack", 4566)) and remote(("https", "10.0.0.5", 443))
    assert role_policy([], ("http", "10.0.0.5", 5000), ControlAuth(token="t")).authenticated


@pytest.mark.parametrize("entry", ["role/fis", "arn:aws:iam::1:role/with space", ""])
def test_bad_patterns_name_the_option(entry: str) -> None:
    if not entry:
        assert RolePolicy.from_options([entry], remote_upstream=True, authenticated=False).patterns == ()
        return
    with pytest.raises(ValueError, match="fisproxy_allowed_roles: entry 1"):
        RolePolicy.from_options([entry], remote_upstream=True, authenticated=False)


# ---- through the FIS API, with boto3 --------------------------------------------------------

def serve(tmp_path: Path, policy: RolePolicy) -> Iterator[Any]:
    store = Store(tmp_path / "state.sqlite")
    api = FisApi(store, FakeRunner(store), account_id="111122223333", roles=policy)
    server = ControlServer(ControlPlane(ControlRouter(fis=api, chaos=ChaosApi(ChaosState())), ControlAuth()),
                           "127.0.0.1", 0)
    server.start()
    assert server.address is not None
    try:
        yield boto3.client("fis", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{server.address[1]}",
                           aws_access_key_id="AKID", aws_secret_access_key="secret",
                           config=Config(retries={"total_max_attempts": 1}, proxies={}))
    finally:
        server.stop()
        store.close()


@pytest.fixture
def listed(tmp_path: Path) -> Iterator[Any]:
    yield from serve(tmp_path, RolePolicy.from_options(["arn:aws:iam::111122223333:role/fis-*"],
                                                       remote_upstream=True, authenticated=False))


@pytest.fixture
def real_aws_anonymous(tmp_path: Path) -> Iterator[Any]:
    yield from serve(tmp_path, RolePolicy.from_options([], remote_upstream=True, authenticated=False))


def create(fis: Any, role: str, actions: dict[str, Any], targets: dict[str, Any] | None = None) -> Any:
    return fis.create_experiment_template(description="passrole", roleArn=role, actions=actions,
                                          targets=targets or {}, stopConditions=[{"source": "none"}])


def refused(call: Any) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as info:
        call()
    response = info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"], response["Error"]["Message"]


def test_a_role_not_listed_is_refused_on_create_and_update(listed: Any) -> None:
    status, code, message = refused(lambda: create(listed, OTHER, WAIT))
    assert (status, code) == (403, "AccessDeniedException") and message.startswith(f"roleArn: {OTHER}")
    template_id = create(listed, ROLE, STOP, TARGETS)["experimentTemplate"]["id"]
    status, code, _ = refused(lambda: listed.update_experiment_template(id=template_id, roleArn=OTHER))
    assert (status, code) == (403, "AccessDeniedException")
    assert listed.get_experiment_template(id=template_id)["experimentTemplate"]["roleArn"] == ROLE
    assert listed.start_experiment(experimentTemplateId=template_id)["experiment"]["roleArn"] == ROLE


def test_resource_actions_against_real_aws_without_a_list_or_authentication(real_aws_anonymous: Any) -> None:
    fis = real_aws_anonymous
    status, code, message = refused(lambda: create(fis, OTHER, STOP, TARGETS))
    assert (status, code) == (403, "AccessDeniedException")
    assert "aws:ec2:stop-instances" in message and "--allowed-role" in message
    # API faults and waits need no role on resources: as before
    template_id = create(fis, OTHER, WAIT)["experimentTemplate"]["id"]
    # ... and adding a resource action later is refused too
    status, _, _ = refused(lambda: fis.update_experiment_template(
        id=template_id, actions={"stop": {"actionId": "aws:ec2:stop-instances", "targets": {"Instances": "i"}}},
        targets=TARGETS))
    assert status == 403
    assert fis.start_experiment(experimentTemplateId=template_id)["experiment"]["id"]


def test_start_checks_the_role_of_a_template_made_before_the_list(tmp_path: Path) -> None:
    """A template created while any role was allowed (or from a templates file) cannot start
    with a role the proxy no longer passes."""
    open_policy = RolePolicy.from_options([], remote_upstream=False, authenticated=False)
    servers = serve(tmp_path, open_policy)
    fis = next(servers)
    template_id = create(fis, OTHER, STOP, TARGETS)["experimentTemplate"]["id"]
    servers.close()
    strict = serve(tmp_path, RolePolicy.from_options([ROLE], remote_upstream=False, authenticated=False))
    fis = next(strict)
    try:
        status, code, message = refused(lambda: fis.start_experiment(experimentTemplateId=template_id))
        assert (status, code) == (403, "AccessDeniedException") and OTHER in message
        assert fis.list_experiments()["experiments"] == []
    finally:
        strict.close()
