"""EC2 instance actions performed on a real moto server with the experiment role."""

from __future__ import annotations

import threading
import time

import pytest

from fisproxy.fis.failure import Failure
from fisproxy.fis.resources import implementation, perform
from tests.fis.resources.conftest import Target, boto, image, run_instances, states
from tests.helpers import wait_until


def in_thread(fn) -> threading.Thread:
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def test_stop_instances_starts_them_again_after_start_instances_after_duration(moto_url, tag, resolve, context):
    targeted = run_instances(moto_url, 2, tag)
    bystander = run_instances(moto_url, 1, {"fis-test": "bystander"})
    target = resolve(Target("aws:ec2:instance", resource_tags=tag))
    log: list[str] = []
    ctx = context("aws:ec2:stop-instances", {"Instances": target}, {"startInstancesAfterDuration": "PT2S"},
                  deadline=time.monotonic() + 2.0, log=log)
    began = time.monotonic()
    runner = in_thread(lambda: perform(implementation("aws:ec2:stop-instances"), ctx))
    wait_until(lambda: set(states(moto_url, targeted).values()) == {"stopped"}, 10, "stopped instances")
    assert states(moto_url, bystander) == {bystander[0]: "running"}  # untargeted: untouched
    runner.join(20)
    assert not runner.is_alive() and time.monotonic() - began >= 2.0
    assert set(states(moto_url, targeted).values()) == {"running"}
    assert log[0] == f"Stopped instances {', '.join(sorted(targeted))}."
    assert log[-1] == f"Started instances {', '.join(sorted(targeted))} again."


def test_stopping_the_experiment_early_starts_the_instances_again(moto_url, tag, resolve, context):
    targeted = run_instances(moto_url, 1, tag)
    target = resolve(Target("aws:ec2:instance", resource_tags=tag))
    ctx = context("aws:ec2:stop-instances", {"Instances": target}, {"startInstancesAfterDuration": "PT10M"},
                  deadline=time.monotonic() + 600)
    runner = in_thread(lambda: perform(implementation("aws:ec2:stop-instances"), ctx))
    wait_until(lambda: states(moto_url, targeted)[targeted[0]] == "stopped", 10, "stopped instance")
    ctx.cancelled.set()  # StopExperiment
    runner.join(10)
    assert not runner.is_alive()
    assert states(moto_url, targeted)[targeted[0]] == "running"


def test_stop_instances_without_restart_leaves_them_stopped(moto_url, tag, resolve, context):
    targeted = run_instances(moto_url, 1, tag)
    ctx = context("aws:ec2:stop-instances", {"Instances": resolve(Target("aws:ec2:instance", resource_tags=tag))})
    perform(implementation("aws:ec2:stop-instances"), ctx)
    assert states(moto_url, targeted)[targeted[0]] == "stopped"


def test_an_instance_terminated_while_stopped_fails_the_restart_unless_accepted(moto_url, tag, resolve, context):
    targeted = run_instances(moto_url, 2, tag)
    target = resolve(Target("aws:ec2:instance", resource_tags=tag))
    for accept in ("false", "true"):
        action = implementation("aws:ec2:stop-instances")
        ctx = context("aws:ec2:stop-instances", {"Instances": target},
                      {"startInstancesAfterDuration": "PT1S", "completeIfInstancesTerminated": accept})
        boto(moto_url, "ec2").start_instances(InstanceIds=[i for i in targeted if states(moto_url, [i])[i] == "stopped"])
        action.start(ctx)
        if accept == "false":
            boto(moto_url, "ec2").terminate_instances(InstanceIds=[targeted[0]])
            with pytest.raises(Failure) as err:
                action.stop(ctx)
            assert err.value.reason.startswith(f"Instances {targeted[0]} were terminated while stopped")
            assert states(moto_url, [targeted[1]])[targeted[1]] == "running"  # the other one restarted
        else:
            action.stop(ctx)  # the terminated one is accepted
            assert states(moto_url, [targeted[1]])[targeted[1]] == "running"


def test_terminate_and_reboot(moto_url, tag, resolve, context):
    targeted = run_instances(moto_url, 2, tag)
    first = resolve(Target("aws:ec2:instance", "COUNT(1)", resource_tags=tag), seed=3)
    perform(implementation("aws:ec2:terminate-instances"), context("aws:ec2:terminate-instances", {"Instances": first}))
    after = states(moto_url, targeted)
    assert after[first.ids[0]] in ("shutting-down", "terminated")
    (other,) = set(targeted) - set(first.ids)
    assert after[other] == "running"
    log: list[str] = []
    rest = resolve(Target("aws:ec2:instance", resource_tags=tag, filters=[{"path": "State.Name", "values": ["running"]}]))
    perform(implementation("aws:ec2:reboot-instances"), context("aws:ec2:reboot-instances", {"Instances": rest}, log=log))
    assert log == [f"Rebooted instances {other}."] and states(moto_url, [other])[other] == "running"


def test_spot_instances_are_interrupted_after_the_duration_as_their_request_says(moto_url, tag, resolve, context):
    ec2 = boto(moto_url, "ec2")
    ami = image(moto_url)
    made = {}
    for behavior in ("stop", "terminate"):
        req = ec2.request_spot_instances(InstanceCount=1, InstanceInterruptionBehavior=behavior,
                                         LaunchSpecification={"ImageId": ami, "InstanceType": "t3.micro"})
        made[behavior] = req["SpotInstanceRequests"][0]["InstanceId"]
    ec2.create_tags(Resources=list(made.values()), Tags=[{"Key": k, "Value": v} for k, v in tag.items()])
    target = resolve(Target("aws:ec2:spot-instance", resource_tags=tag))
    ctx = context("aws:ec2:send-spot-instance-interruptions", {"SpotInstances": target},
                  {"durationBeforeInterruption": "PT1S"}, deadline=time.monotonic() + 1.0)
    began = time.monotonic()
    perform(implementation("aws:ec2:send-spot-instance-interruptions"), ctx)
    assert time.monotonic() - began >= 1.0
    after = states(moto_url, list(made.values()))
    assert after[made["stop"]] in ("stopping", "stopped")
    assert after[made["terminate"]] in ("shutting-down", "terminated")


def test_spot_interruption_cancelled_before_its_time_interrupts_nothing(moto_url, tag, resolve, context):
    ec2 = boto(moto_url, "ec2")
    ami = image(moto_url)
    req = ec2.request_spot_instances(InstanceCount=1, LaunchSpecification={"ImageId": ami, "InstanceType": "t3.micro"})
    instance = req["SpotInstanceRequests"][0]["InstanceId"]
    ec2.create_tags(Resources=[instance], Tags=[{"Key": k, "Value": v} for k, v in tag.items()])
    ctx = context("aws:ec2:send-spot-instance-interruptions",
                  {"SpotInstances": resolve(Target("aws:ec2:spot-instance", resource_tags=tag))},
                  {"durationBeforeInterruption": "PT2M"}, deadline=time.monotonic() + 120)
    ctx.cancelled.set()
    perform(implementation("aws:ec2:send-spot-instance-interruptions"), ctx)
    assert states(moto_url, [instance])[instance] == "running"
