"""The experiment role: AssumeRole on the upstream with the proxy's credentials, cached, and
refusals that carry the upstream's message. Against real moto servers."""

from __future__ import annotations

import random

import pytest

from fisproxy.fis.failure import Failure
from fisproxy.fis.resources.resolve import resolve_target
from fisproxy.fis.upstream import REFRESH_MARGIN_SECONDS, RoleSessions
from tests.fis.resources.conftest import ROLE_ARN, AuthUpstream, Target, boto
from tests.helpers import free_port


class CountingSts:
    """The proxy's STS client, counting AssumeRole calls."""

    def __init__(self, url: str, **keys: str) -> None:
        self.calls = 0
        self._client = boto(url, "sts", **keys)

    def factory(self, region: str) -> object:
        return self

    def assume_role(self, **kwargs: object) -> dict:
        self.calls += 1
        return self._client.assume_role(**kwargs)


def test_calls_are_made_with_the_assumed_role(moto_url):
    session = RoleSessions(moto_url).session(ROLE_ARN, "us-east-1", "EXPabc123")
    who = session.client("sts").get_caller_identity()
    assert who["Arn"] == "arn:aws:sts::123456789012:assumed-role/fis-experiment/fisproxy-EXPabc123"
    assert session.account_id == "123456789012"


def test_assumed_credentials_are_cached_until_near_expiry(moto_url):
    sts = CountingSts(moto_url)
    now = [1_000_000.0]
    sessions = RoleSessions(moto_url, clock=lambda: now[0], sts_factory=sts.factory)
    first = sessions.assume(ROLE_ARN, "us-east-1", "EXP1")
    now[0] = first.expires_at - REFRESH_MARGIN_SECONDS - 1
    assert sessions.assume(ROLE_ARN, "us-east-1", "EXP1") is first
    assert sts.calls == 1
    now[0] = first.expires_at - REFRESH_MARGIN_SECONDS + 1  # close to expiry: assumed again
    assert sessions.assume(ROLE_ARN, "us-east-1", "EXP1") is not first
    assert sts.calls == 2


def test_the_role_not_the_proxy_lists_the_targets(auth_upstream: AuthUpstream):
    # The proxy's own user may not describe instances; the role may: resolution works only
    # because its calls carry the role's credentials.
    proxy = CountingSts(auth_upstream.url, **auth_upstream.proxy_keys)
    sessions = RoleSessions(auth_upstream.url, sts_factory=proxy.factory)
    session = sessions.session(ROLE_ARN, "us-east-1", "EXPauth")
    resolved = resolve_target("i", Target("aws:ec2:instance", resource_tags={"app": "auth"}), session,
                              "us-east-1", random.Random(0))
    assert len(resolved.resources) == 1 and proxy.calls == 1
    with pytest.raises(Exception, match="not authorized to perform: ec2:DescribeInstances"):
        boto(auth_upstream.url, "ec2", **auth_upstream.proxy_keys).describe_instances()


def test_access_denied_to_the_role_is_a_target_error_with_the_upstream_message(auth_upstream: AuthUpstream):
    proxy = CountingSts(auth_upstream.url, **auth_upstream.proxy_keys)
    session = RoleSessions(auth_upstream.url, sts_factory=proxy.factory).session(ROLE_ARN, "us-east-1", "EXPauth")
    with pytest.raises(Failure) as err:
        resolve_target("DBs", Target("aws:rds:db", resource_tags={"app": "auth"}), session, "us-east-1", random.Random(0))
    assert err.value.code == "AuthorizationFailure"
    assert err.value.reason.startswith('Target "DBs": rds DescribeDBInstances failed on the upstream: AccessDenied: ')
    assert "assumed-role/fis-experiment/fisproxy-EXPauth is not authorized to perform: rds:DescribeDBInstances" in err.value.reason


def test_assume_role_refused_is_a_role_error_with_the_upstream_message(auth_upstream: AuthUpstream):
    weak = CountingSts(auth_upstream.url, **auth_upstream.weak_keys)
    with pytest.raises(Failure) as err:
        RoleSessions(auth_upstream.url, sts_factory=weak.factory).session(ROLE_ARN, "us-east-1", "EXPweak")
    assert err.value.code == "AuthorizationFailure"
    assert err.value.reason == (
        f"Cannot assume the experiment role {ROLE_ARN} on the upstream: AccessDenied: "
        "User: arn:aws:iam::123456789012:user/weak is not authorized to perform: sts:AssumeRole"
    )


def test_unreachable_upstream_is_a_role_error_saying_so():
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(Failure) as err:
        RoleSessions(url).session(ROLE_ARN, "us-east-1", "EXPgone")
    assert err.value.code == "DependentServiceFailure"
    assert f'Could not connect to the endpoint URL: "{url}/"' in err.value.reason
