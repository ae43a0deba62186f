"""Target resolution on a real moto server: by tags, by ARNs (checked to exist), filters,
type parameters, COUNT/PERCENT, nothing found, and upstream errors as reasons."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from fisproxy.fis.failure import Failure
from fisproxy.fis.resources.resolve import path_values
from tests.fis.resources.conftest import ACCOUNT, Target, boto, run_instances


def arn(instance: str, region: str = "us-east-1") -> str:
    return f"arn:aws:ec2:{region}:{ACCOUNT}:instance/{instance}"


def test_instances_by_tags_leave_the_others_out(moto_url, tag, resolve):
    ids = run_instances(moto_url, 3, tag)
    run_instances(moto_url, 2, {"fis-test": "someone-else"})
    resolved = resolve(Target("aws:ec2:instance", resource_tags=tag))
    assert sorted(resolved.ids) == sorted(ids)
    assert resolved.arns == tuple(sorted(arn(i) for i in ids))
    assert not resolved.by_arn
    details = resolved.resources[0].details
    assert details["Placement"]["AvailabilityZone"].startswith("us-east-1") and details["State"]["Name"] == "running"
    json.dumps(resolved.to_json())  # JSON-safe, for the engine to keep


def test_instances_by_arns_are_checked_to_exist(moto_url, tag, resolve):
    ids = run_instances(moto_url, 2, tag)
    resolved = resolve(Target("aws:ec2:instance", resource_arns=[arn(ids[1])]))
    assert resolved.ids == (ids[1],) and resolved.by_arn
    missing = arn("i-0123456789abcdef0")
    with pytest.raises(Failure) as err:
        resolve(Target("aws:ec2:instance", resource_arns=[arn(ids[0]), missing]), name="Web")
    assert err.value.reason == (f'Target "Web": {missing} not found on the upstream '
                                "(ec2 DescribeInstances in us-east-1).")
    assert err.value.code == "InvalidTarget"


def test_filters_state_and_zone(moto_url, tag, resolve):
    ec2 = boto(moto_url, "ec2")
    group = ec2.create_security_group(GroupName=f"g-{tag['fis-test']}", Description="filters")["GroupId"]
    a = run_instances(moto_url, 2, tag, Placement={"AvailabilityZone": "us-east-1a"})
    b = run_instances(moto_url, 1, tag, Placement={"AvailabilityZone": "us-east-1b"}, SecurityGroupIds=[group])
    ec2.stop_instances(InstanceIds=[a[0]])
    running_in_a = resolve(Target("aws:ec2:instance", resource_tags=tag, filters=[
        {"path": "State.Name", "values": ["running"]},
        {"path": "Placement.AvailabilityZone", "values": ["us-east-1a"]},
    ]))
    assert running_in_a.ids == (a[1],)
    either_zone = resolve(Target("aws:ec2:instance", resource_tags=tag, filters=[
        {"path": "Placement.AvailabilityZone", "values": ["us-east-1a", "us-east-1b"]}]))
    assert sorted(either_zone.ids) == sorted(a + b)
    # Lists fan out: any security group id of any network interface matches.
    by_group = resolve(Target("aws:ec2:instance", resource_tags=tag,
                              filters=[{"path": "NetworkInterfaces.Groups.GroupId", "values": [group]}]))
    assert by_group.ids == (b[0],)


def test_count_and_percent_are_seeded(moto_url, tag, resolve):
    run_instances(moto_url, 5, tag)
    one = resolve(Target("aws:ec2:instance", "COUNT(2)", resource_tags=tag), seed=7)
    again = resolve(Target("aws:ec2:instance", "COUNT(2)", resource_tags=tag), seed=7)
    assert len(one.ids) == 2 and one.ids == again.ids
    half = resolve(Target("aws:ec2:instance", "PERCENT(50)", resource_tags=tag), seed=1)
    assert len(half.ids) == 2  # 5 at 50% rounds down
    assert resolve(Target("aws:ec2:instance", "PERCENT(10)", resource_tags=tag)).empty  # less than one


def test_nothing_matching_resolves_to_an_empty_target(resolve, tag):
    resolved = resolve(Target("aws:ec2:instance", resource_tags=tag))
    assert resolved.empty and resolved.resources == ()


def test_spot_instances_are_only_the_spot_ones(moto_url, tag, resolve):
    ec2 = boto(moto_url, "ec2")
    run_instances(moto_url, 1, tag)
    ami = ec2.describe_images()["Images"][0]["ImageId"]
    spot = ec2.request_spot_instances(InstanceCount=1, LaunchSpecification={"ImageId": ami, "InstanceType": "t3.micro"})
    request = spot["SpotInstanceRequests"][0]
    ec2.create_tags(Resources=[request["InstanceId"]], Tags=[{"Key": k, "Value": v} for k, v in tag.items()])
    resolved = resolve(Target("aws:ec2:spot-instance", resource_tags=tag))
    assert resolved.ids == (request["InstanceId"],)
    assert resolved.resources[0].details["InstanceLifecycle"] == "spot"


def test_rds_instances_by_zone_parameter_and_tags(moto_url, tag, resolve):
    rds = boto(moto_url, "rds")
    names = {}
    for zone in ("us-east-1a", "us-east-1b"):
        name = f"db-{tag['fis-test']}-{zone[-1]}"
        rds.create_db_instance(DBInstanceIdentifier=name, Engine="postgres", DBInstanceClass="db.t3.micro",
                               MasterUsername="u", MasterUserPassword="password1", AllocatedStorage=20,
                               AvailabilityZone=zone, Tags=[{"Key": k, "Value": v} for k, v in tag.items()])
        names[zone] = name
    both = resolve(Target("aws:rds:db", resource_tags=tag))
    assert sorted(both.ids) == sorted(names.values())
    in_b = resolve(Target("aws:rds:db", resource_tags=tag, parameters={"availabilityZoneIdentifiers": "us-east-1b"}))
    assert in_b.ids == (names["us-east-1b"],)
    assert in_b.arns == (f"arn:aws:rds:us-east-1:{ACCOUNT}:db:{names['us-east-1b']}",)


def test_ecs_clusters_by_tags_and_filters(moto_url, tag, resolve):
    ecs = boto(moto_url, "ecs")
    name = f"cl-{tag['fis-test']}"
    ecs.create_cluster(clusterName=name, tags=[{"key": k, "value": v} for k, v in tag.items()])
    ecs.create_cluster(clusterName=f"other-{tag['fis-test']}")
    resolved = resolve(Target("aws:ecs:cluster", resource_tags=tag, filters=[{"path": "Status", "values": ["ACTIVE"]}]))
    assert resolved.ids == (name,)


def test_eks_nodegroups_filters_take_pascal_case_for_camel_case_fields(moto_url, tag, resolve):
    eks = boto(moto_url, "eks")
    cluster = f"k-{tag['fis-test']}"
    eks.create_cluster(name=cluster, roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks", resourcesVpcConfig={})
    for ng in ("blue", "green"):
        eks.create_nodegroup(clusterName=cluster, nodegroupName=ng, nodeRole=f"arn:aws:iam::{ACCOUNT}:role/n",
                             subnets=["subnet-1"], tags=tag)
    resolved = resolve(Target("aws:eks:nodegroup", resource_tags=tag,
                              filters=[{"path": "NodegroupName", "values": ["green"]}]))
    assert resolved.ids == ("green",)
    assert resolved.resources[0].details["clusterName"] == cluster


def _zip(code: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("index.py", code)
    return buf.getvalue()


def test_lambda_functions_by_tags_and_functions_qualifier_kept(moto_lambda, tag, resolve):
    lam = boto(moto_lambda, "lambda")
    role = boto(moto_lambda, "iam").create_role(
        RoleName=f"lambda-{tag['fis-test']}", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    made = []
    for n, tags in ((f"fn-{tag['fis-test']}", tag), (f"fn2-{tag['fis-test']}", {})):
        fn = lam.create_function(FunctionName=n, Runtime="python3.12", Role=role, Handler="index.handler",
                                 Code={"ZipFile": _zip("def handler(e, c):\n    return 1\n")}, Tags=tags)
        made.append(fn["FunctionArn"])
    resolved = resolve(Target("aws:lambda:function", resource_tags=tag, parameters={"functionQualifier": "$LATEST"}))
    assert resolved.arns == (made[0],)
    assert resolved.parameters == {"functionQualifier": "$LATEST"}


def test_kinesis_streams_by_tags_and_dynamodb_tables_by_arn(moto_url, tag, resolve):
    kinesis = boto(moto_url, "kinesis")
    name = f"st-{tag['fis-test']}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.add_tags_to_stream(StreamName=name, Tags=tag)
    kinesis.create_stream(StreamName=f"other-{tag['fis-test']}", ShardCount=1)
    resolved = resolve(Target("aws:kinesis:stream", resource_tags=tag,
                              filters=[{"path": "StreamStatus", "values": ["ACTIVE"]}]))
    assert resolved.arns == (f"arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{name}",)
    table = boto(moto_url, "dynamodb").create_table(
        TableName=f"t-{tag['fis-test']}", KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST",
    )["TableDescription"]
    by_arn = resolve(Target("aws:dynamodb:global-table", resource_arns=[table["TableArn"]]))
    assert by_arn.ids == (table["TableName"],)


def test_roles_by_arn_are_taken_as_given_and_by_tags_listed(moto_url, tag, resolve):
    given = f"arn:aws:iam::{ACCOUNT}:role/somewhere-else"
    assert resolve(Target("aws:iam:role", resource_arns=[given],
                          parameters={"accessKeyIds": "AKIA1, AKIA2"})).arns == (given,)
    assert resolve(Target("aws:iam:role", resource_arns=[given],
                          parameters={"accessKeyIds": "AKIA1, AKIA2"})).access_keys == ("AKIA1", "AKIA2")
    role = boto(moto_url, "iam").create_role(RoleName=f"r-{tag['fis-test']}", AssumeRolePolicyDocument="{}",
                                            Tags=[{"Key": k, "Value": v} for k, v in tag.items()])["Role"]
    assert resolve(Target("aws:iam:role", resource_tags=tag)).arns == (role["Arn"],)


def test_an_api_the_upstream_lacks_is_said_so_with_its_own_answer(resolve):
    # moto has no ARC zonal shift: it answers a bare HTML 500 page. The reason says the upstream
    # does not implement the call, with the status and an excerpt of that answer, and the actions
    # using the target can be skipped.
    with pytest.raises(Failure) as err:
        resolve(Target("aws:arc:zonal-shift-managed-resource", resource_tags={"a": "b"}), name="Shifted")
    assert err.value.reason.startswith(
        'Target "Shifted": the upstream does not implement arc-zonal-shift ListManagedResources'
        ': it answered HTTP 500, not an AWS error: "500 Internal Server Error')
    assert "fisproxy" not in err.value.reason
    assert err.value.code == "DependentServiceFailure" and err.value.skippable


def test_pods_need_the_kubernetes_api(resolve):
    with pytest.raises(Failure, match="Kubernetes API, which fisproxy cannot reach") as err:
        resolve(Target("aws:eks:pod", parameters={"clusterIdentifier": "c", "namespace": "n",
                                                   "selectorType": "podName", "selectorValue": "p"}))
    assert err.value.code == "ConfigurationFailure"


def test_filter_paths_compare_text_and_booleans():
    details = {"MultiAZ": False, "Endpoint": {"Port": 5432}, "tags": [{"key": "a"}]}
    assert list(path_values(details, ["MultiAZ"])) == ["false"]
    assert list(path_values(details, ["Endpoint", "Port"])) == ["5432"]
    assert list(path_values(details, ["Tags", "Key"])) == ["a"]
    assert list(path_values(details, ["Endpoint"])) == []  # a structure is not a value
