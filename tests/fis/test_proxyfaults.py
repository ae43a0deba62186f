"""Proxy-fault actions compiled into scoped rules (`fis/proxyfaults.py`): which calls each admits."""

from __future__ import annotations

import json

import pytest

from fisproxy.aws.call import AwsCall, RequestParts
from fisproxy.fis.proxyfaults import Placement, compile_rule
from fisproxy.fis.resources.scoped import ShardIterators
from fisproxy.fis.resources.targets import ResolvedTarget, TargetResource
from fisproxy.proxy.settings import BY_NAME, parse_placement

FN = "arn:aws:lambda:us-east-1:123456789012:function:orders"
STREAM = "arn:aws:kinesis:us-east-1:123456789012:stream/clicks"
SUBNET = "arn:aws:ec2:us-east-1:123456789012:subnet/subnet-0abc"


def target(resource_type: str, *arns: str, **parameters: str) -> ResolvedTarget:
    return ResolvedTarget("t", resource_type, tuple(TargetResource(a, a.rsplit("/", 1)[-1].rsplit(":", 1)[-1])
                                                     for a in arns), parameters)


NOWHERE = Placement()


def rule(action_id: str, params: dict[str, str], targets: dict[str, ResolvedTarget],
         placement: Placement = NOWHERE):
    return compile_rule(action_id, params, targets, region="us-east-1", placement=placement,
                        iterators=ShardIterators())


def lambda_call(function: str) -> tuple[AwsCall, RequestParts]:
    call = AwsCall("lambda", "us-east-1", "Invoke", "lambda", "rest-json")
    return call, RequestParts("POST", f"/2015-03-31/functions/{function}/invocations", {}, None)


def test_lambda_faults_admit_invocations_of_the_targeted_function_only():
    spec = rule("aws:lambda:invocation-error", {"duration": "PT1M", "preventExecution": "true",
                                                "invocationPercentage": "40"},
                {"Functions": target("aws:lambda:function", FN)})
    assert spec is not None and spec.percentage == 40.0 and spec.faults[0].kind == "lambda-error"
    assert spec.faults[0].phase == "request"  # preventExecution: the function never runs
    for name in ("orders", "orders%3Aprod", f"{FN.replace(':', '%3A')}", "123456789012%3Afunction%3Aorders"):
        assert spec.scope.admits(*lambda_call(name)), name
    assert not spec.scope.admits(*lambda_call("billing"))


def test_lambda_faults_that_let_the_function_run_act_after_it_answered():
    spec = rule("aws:lambda:invocation-http-integration-response",
                {"duration": "PT1M", "preventExecution": "false", "statusCode": "502",
                 "contentTypeHeader": "application/json"},
                {"Functions": target("aws:lambda:function", FN)})
    assert spec is not None
    fault = spec.faults[0]
    assert (fault.kind, fault.phase, fault.status, fault.content_type) == (
        "lambda-http", "response", 502, "application/json")


def test_kinesis_faults_read_the_stream_from_the_body():
    spec = rule("aws:kinesis:stream-provisioned-throughput-exception", {"percentage": "100", "duration": "PT1M"},
                {"KinesisStreams": target("aws:kinesis:stream", STREAM)})
    assert spec is not None and spec.scope.needs_body
    call = AwsCall("kinesis", "us-east-1", "PutRecord", "kinesis", "json")
    headers = {"content-type": "application/x-amz-json-1.1"}

    def parts(body: dict) -> RequestParts:
        return RequestParts("POST", "/", headers, json.dumps(body).encode())

    assert spec.scope.admits(call, parts({"StreamName": "clicks"}))
    assert spec.scope.admits(call, parts({"StreamARN": STREAM}))
    assert not spec.scope.admits(call, parts({"StreamName": "views"}))
    assert not spec.scope.admits(call, RequestParts("POST", "/", headers, b"\xff not json"))
    assert not spec.scope.admits(call, RequestParts("POST", "/", headers, None))  # body not read


def test_capacity_errors_admit_launches_in_the_zones_or_naming_none():
    spec = rule("aws:ec2:api-insufficient-instance-capacity-error",
                {"availabilityZoneIdentifiers": "us-east-1a,use1-az2", "percentage": "100", "duration": "PT1M"}, {})
    assert spec is not None and spec.operations and "RunInstances" in spec.operations
    call = AwsCall("ec2", "us-east-1", "RunInstances", "ec2", "ec2")

    def launch(body: str) -> RequestParts:
        return RequestParts("POST", "/", {}, body.encode())

    assert spec.scope.admits(call, launch("Action=RunInstances&Placement.AvailabilityZone=us-east-1a"))
    assert spec.scope.admits(call, launch("Action=RunInstances&Placement.AvailabilityZoneId=use1-az2"))
    assert spec.scope.admits(call, launch("Action=RunInstances&ImageId=ami-1"))  # could land there
    assert not spec.scope.admits(call, launch("Action=RunInstances&Placement.AvailabilityZone=us-east-1b"))


@pytest.mark.parametrize("scope", ["all", "availability-zone", "dynamodb", "prefix-list", "s3", "s3express", "vpc"])
def test_subnet_disruption_applies_only_on_a_proxy_placed_in_a_targeted_subnet(scope):
    subnets = {"Subnets": target("aws:ec2:subnet", SUBNET)}
    params = {"scope": scope, "duration": "PT1M"}
    inside = rule("aws:network:disrupt-connectivity", params, subnets, Placement(subnet="subnet-0abc"))
    # A dropped request hangs until the client's timeout, like a packet that never arrives.
    assert inside is not None and inside.faults[0].kind == "disconnect" and inside.faults[0].mode == "hang"
    assert rule("aws:network:disrupt-connectivity", params, subnets, Placement(subnet="subnet-other")) is None
    assert rule("aws:network:disrupt-connectivity", params, subnets, Placement()) is None


def test_cross_region_disruption_drops_calls_to_the_other_region():
    spec = rule("aws:network:route-table-disrupt-cross-region-connectivity", {"region": "eu-west-1"},
                {"Subnets": target("aws:ec2:subnet", SUBNET)}, Placement(subnet="subnet-0abc"))
    assert spec is not None and spec.faults[0].mode == "hang" and not spec.other_traffic
    assert spec.scope.admits(AwsCall("s3", "eu-west-1", "GetObject"), None)
    assert not spec.scope.admits(AwsCall("s3", "us-east-1", "GetObject"), None)
    assert not spec.scope.admits(AwsCall("s3", "ap-south-1", "GetObject"), None)


def test_placement_spec_is_parsed_or_refused_naming_the_option():
    assert parse_placement("az=us-east-1a,subnet=subnet-0abc") == Placement("us-east-1a", None, "subnet-0abc")
    assert parse_placement(None) == Placement()
    with pytest.raises(ValueError, match="^fisproxy_placement: expected az="):
        BY_NAME["placement"].check("zone=us-east-1a")
