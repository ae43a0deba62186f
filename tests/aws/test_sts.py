"""learn_credentials: STS responses as AWS documents them and as moto writes them."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from moto import mock_aws

from fisproxy.aws.call import AwsCall
from fisproxy.aws.sts import learn_credentials
from fisproxy.fis.identities import role_arn

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FQoGZXIvYXdzEBYaDIOG9fR5YipfSYQko2iI"

ASSUME_ROLE_XML = f"""<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <AssumedRoleUser>
      <AssumedRoleId>AROA3XFRBF23EXAMPLE:my-session</AssumedRoleId>
      <Arn>arn:aws:sts::123456789012:assumed-role/app-role/my-session</Arn>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIA3XFRBF23EXAMPLE1</AccessKeyId>
      <SecretAccessKey>{SECRET}</SecretAccessKey>
      <SessionToken>{TOKEN}</SessionToken>
      <Expiration>2026-11-27T17:00:00Z</Expiration>
    </Credentials>
    <PackedPolicySize>6</PackedPolicySize>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ResponseMetadata>
</AssumeRoleResponse>""".encode()

CALLER_XML = b"""<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
<GetCallerIdentityResult><Arn>arn:aws:sts::123456789012:assumed-role/app-role/s1</Arn>
<UserId>AROA3XFRBF23EXAMPLE:s1</UserId><Account>123456789012</Account></GetCallerIdentityResult>
<ResponseMetadata><RequestId>01234567-89ab-cdef-0123-456789abcdef</RequestId></ResponseMetadata>
</GetCallerIdentityResponse>"""

ROLE = "arn:aws:sts::123456789012:assumed-role/app-role/my-session"


def sts_call(operation: str, access_key: str | None = "AKIAIOSFODNN7EXAMPLE") -> AwsCall:
    return AwsCall("sts", "us-east-1", operation, "sts", "query", access_key)


@pytest.mark.parametrize("operation", ["AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"])
def test_assume_role_xml(operation: str) -> None:
    body = ASSUME_ROLE_XML.replace(b"AssumeRole", operation.encode())
    learned = learn_credentials(sts_call(operation), 200, body)
    assert learned == ("ASIA3XFRBF23EXAMPLE1", ROLE)
    assert SECRET not in repr(learned) and TOKEN not in repr(learned)


def test_xml_without_namespace_and_with_prefix() -> None:
    plain = ASSUME_ROLE_XML.replace(b' xmlns="https://sts.amazonaws.com/doc/2011-06-15/"', b"")
    assert learn_credentials(sts_call("AssumeRole"), 200, plain) == ("ASIA3XFRBF23EXAMPLE1", ROLE)
    prefixed = plain.replace(b"<", b"<s:").replace(b"<s:/", b"</s:").replace(
        b"<s:AssumeRoleResponse>", b'<s:AssumeRoleResponse xmlns:s="urn:x">'
    )
    assert learn_credentials(sts_call("AssumeRole"), 200, prefixed) == ("ASIA3XFRBF23EXAMPLE1", ROLE)


def test_get_caller_identity_maps_the_signing_key() -> None:
    learned = learn_credentials(sts_call("GetCallerIdentity", "ASIAKEY"), 200, CALLER_XML)
    assert learned == ("ASIAKEY", "arn:aws:sts::123456789012:assumed-role/app-role/s1")
    assert learn_credentials(sts_call("GetCallerIdentity", None), 200, CALLER_XML) is None


def test_json_responses() -> None:
    output = {
        "AssumedRoleUser": {"Arn": ROLE, "AssumedRoleId": "AROA:my-session"},
        "Credentials": {"AccessKeyId": "ASIAJSON", "SecretAccessKey": SECRET, "SessionToken": TOKEN,
                        "Expiration": 1795795220},
    }
    json_call = AwsCall("sts", "us-east-1", "AssumeRole", "sts", "json", "AKID")
    assert learn_credentials(json_call, 200, json.dumps(output).encode()) == ("ASIAJSON", ROLE)
    wrapped = {"AssumeRoleResponse": {"AssumeRoleResult": output, "ResponseMetadata": {"RequestId": "r"}}}
    assert learn_credentials(json_call, 200, json.dumps(wrapped).encode()) == ("ASIAJSON", ROLE)
    identity = {"Arn": "arn:aws:iam::123456789012:user/alice", "Account": "123456789012", "UserId": "AIDA"}
    caller = AwsCall("sts", "us-east-1", "GetCallerIdentity", "sts", "json", "AKIAALICE")
    assert learn_credentials(caller, 200, json.dumps(identity).encode()) == (
        "AKIAALICE", "arn:aws:iam::123456789012:user/alice"
    )


@pytest.mark.parametrize(
    ("call", "status", "body"),
    [
        (sts_call("AssumeRole"), 403, ASSUME_ROLE_XML),
        (sts_call("AssumeRole"), 500, ASSUME_ROLE_XML),
        (sts_call("GetSessionToken"), 200, ASSUME_ROLE_XML),
        (sts_call("AssumeRole"), 200, b""),
        (sts_call("AssumeRole"), 200, b"<html>gateway timeout</html>"),
        (sts_call("AssumeRole"), 200, b"<AssumeRoleResponse><unclosed>"),
        (sts_call("AssumeRole"), 200, b"{not json"),
        (sts_call("AssumeRole"), 200, b'{"Credentials": {"AccessKeyId": "ASIA"}}'),  # no Arn
        (sts_call(None), 200, ASSUME_ROLE_XML),  # type: ignore[arg-type]
        (AwsCall("dynamodb", "us-east-1", "AssumeRole", "dynamodb", "json", "AKID"), 200, ASSUME_ROLE_XML),
        (
            sts_call("AssumeRole"),
            200,
            b"<ErrorResponse><Error><Code>AccessDenied</Code><Message>no</Message></Error></ErrorResponse>",
        ),
    ],
)
def test_nothing_learned(call: AwsCall, status: int, body: bytes) -> None:
    assert learn_credentials(call, status, body) is None


def _moto_bodies(calls: Any) -> list[tuple[str, int, bytes, Any]]:
    bodies: list[tuple[str, int, bytes]] = []
    with mock_aws():
        client = boto3.client("sts", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE",
                              aws_secret_access_key="secret")

        def received(response_dict: dict, context: dict | None = None, **kwargs: Any) -> None:
            bodies.append((kwargs["event_name"].rsplit(".", 1)[1], response_dict["status_code"], response_dict["body"]))

        client.meta.events.register("response-received", received)
        results = calls(client)
    return [(op, status, body, result) for (op, status, body), result in zip(bodies, results, strict=True)]


def test_moto_sts_responses() -> None:
    role = "arn:aws:iam::123456789012:role/app-role"
    captured = _moto_bodies(lambda c: [
        c.assume_role(RoleArn=role, RoleSessionName="s1"),
        c.assume_role_with_web_identity(RoleArn=role, RoleSessionName="s2", WebIdentityToken="token123"),
        c.get_caller_identity(),
    ])
    for operation, status, body, result in captured:
        learned = learn_credentials(sts_call(operation, "AKIDEXAMPLE"), status, body)
        if operation == "GetCallerIdentity":
            assert learned == ("AKIDEXAMPLE", result["Arn"])
        else:  # what botocore itself parsed from the same bytes
            assert learned == (result["Credentials"]["AccessKeyId"], result["AssumedRoleUser"]["Arn"])
            assert role_arn(learned[1]) == role  # the role the engine's targeting compares
            assert result["Credentials"]["SecretAccessKey"] not in repr(learned)
