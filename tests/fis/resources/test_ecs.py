"""ECS actions on a real moto server."""

from __future__ import annotations

import json
import time

from fisproxy.fis.resources import implementation, perform
from tests.fis.resources.conftest import Target, boto, image


def _cluster_with_instances(url: str, name: str, count: int, tags: dict[str, str]) -> list[str]:
    ecs, ec2 = boto(url, "ecs"), boto(url, "ec2")
    ecs.create_cluster(clusterName=name, tags=[{"key": k, "value": v} for k, v in tags.items()])
    for _ in range(count):
        inst = ec2.run_instances(ImageId=image(url), MinCount=1, MaxCount=1)["Instances"][0]
        document = {"instanceId": inst["InstanceId"], "availabilityZone": inst["Placement"]["AvailabilityZone"],
                    "region": "us-east-1", "imageId": image(url), "instanceType": "t3.micro",
                    "privateIp": inst.get("PrivateIpAddress"), "accountId": "123456789012"}
        ecs.register_container_instance(cluster=name, instanceIdentityDocument=json.dumps(document))
    return list(ecs.list_container_instances(cluster=name)["containerInstanceArns"])


def _statuses(url: str, cluster: str, arns: list[str]) -> dict[str, str]:
    described = boto(url, "ecs").describe_container_instances(cluster=cluster, containerInstances=arns)
    return {c["containerInstanceArn"]: c["status"] for c in described["containerInstances"]}


def test_drain_container_instances_drains_a_share_and_restores_them(moto_url, tag, resolve, context):
    name = f"drain-{tag['fis-test']}"
    arns = _cluster_with_instances(moto_url, name, 4, tag)
    action = implementation("aws:ecs:drain-container-instances")
    ctx = context("aws:ecs:drain-container-instances", {"Clusters": resolve(Target("aws:ecs:cluster", resource_tags=tag))},
                  {"drainagePercentage": "50", "duration": "PT1S"}, deadline=time.monotonic() + 1)
    action.start(ctx)
    during = _statuses(moto_url, name, arns)
    assert sorted(during.values()) == ["ACTIVE", "ACTIVE", "DRAINING", "DRAINING"]
    action.stop(ctx)
    assert set(_statuses(moto_url, name, arns).values()) == {"ACTIVE"}


def test_stop_task_stops_the_tasks_of_the_target_service_parameters(moto_url, tag, resolve, context):
    name = f"tasks-{tag['fis-test']}"
    _cluster_with_instances(moto_url, name, 1, tag)
    ecs = boto(moto_url, "ecs")
    ecs.register_task_definition(family=name, containerDefinitions=[{"name": "c", "image": "x", "memory": 128}])
    tasks = [t["taskArn"] for t in ecs.run_task(cluster=name, taskDefinition=name, count=2)["tasks"]]
    target = resolve(Target("aws:ecs:task", "COUNT(1)", parameters={"cluster": name}), seed=5)
    assert len(target.arns) == 1 and target.arns[0] in tasks
    perform(implementation("aws:ecs:stop-task"), context("aws:ecs:stop-task", {"Tasks": target}))
    described = {t["taskArn"]: t for t in ecs.describe_tasks(cluster=name, tasks=tasks)["tasks"]}
    assert described[target.arns[0]]["desiredStatus"] == "STOPPED"
    assert described[target.arns[0]]["stoppedReason"].startswith("Stopped by fisproxy experiment EXPresources")
    (other,) = set(tasks) - set(target.arns)
    assert described[other]["desiredStatus"] == "RUNNING"
