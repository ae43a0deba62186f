"""A crash or restart loses no template or experiment: kill -9 the real proxy mid-experiment,
start it again on the same state, and find everything as it was."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Fisproxy, wait_for_state
from tests.helpers import wait_until


@pytest.fixture
def own_proxy(tmp_path: Path, moto: str) -> Iterator[Fisproxy]:
    with Fisproxy(tmp_path, moto).running() as proxy:
        yield proxy


def test_kill_9_and_restart(own_proxy: Fisproxy) -> None:
    fis = own_proxy.fis()
    quick = fis.create_experiment_template(
        description="quick", roleArn="arn:aws:iam::123456789012:role/fis", stopConditions=[{"source": "none"}],
        actions={"w": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1S"}}},
        tags={"Name": "quick"},
    )["experimentTemplate"]
    slow = fis.create_experiment_template(
        description="slow", roleArn="arn:aws:iam::123456789012:role/fis", stopConditions=[{"source": "none"}],
        actions={"w": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT8S"}}},
    )["experimentTemplate"]
    done_id = fis.start_experiment(experimentTemplateId=quick["id"])["experiment"]["id"]
    finished = wait_for_state(fis, done_id, "completed")
    running_id = fis.start_experiment(experimentTemplateId=slow["id"])["experiment"]["id"]
    wait_for_state(fis, running_id, "running")
    time.sleep(2)

    own_proxy.kill9()
    down = time.monotonic()
    time.sleep(2)
    own_proxy.start()
    downtime = time.monotonic() - down

    fis = own_proxy.fis()
    templates = {t["id"] for t in fis.list_experiment_templates()["experimentTemplates"]}
    assert {quick["id"], slow["id"]} <= templates
    assert fis.get_experiment_template(id=quick["id"])["experimentTemplate"]["tags"] == {"Name": "quick"}
    again = fis.get_experiment(id=done_id)["experiment"]
    assert again["state"] == finished["state"] and again["endTime"] == finished["endTime"]
    resumed = fis.get_experiment(id=running_id)["experiment"]
    # Running, or already completed if the restart took past its planned end (a busy machine).
    assert resumed["state"]["status"] in ("running", "completed")
    ended = wait_for_state(fis, running_id, "completed", timeout=30)
    # It ended at its planned time (issue 20, point 10): 8 s after it started, the downtime
    # included, as it would have without the crash; not 8 s of running time plus the downtime.
    elapsed = (ended["endTime"] - ended["startTime"]).total_seconds()
    print(f"\n[durability] 8 s experiment, down {downtime:.1f} s: ended after {elapsed:.1f} s")
    assert 8 - 1 <= elapsed < 8 + downtime - 1


def test_templates_file_creates_then_updates_by_name(tmp_path: Path, moto: str) -> None:
    """Templates as code: `--templates FILE` creates templates at start-up and, on the next
    start, updates the one with the same Name tag instead of adding another."""
    def write(description: str) -> Path:
        path = tmp_path / "templates.yaml"
        path.write_text(
            "templates:\n"
            "  throttle-ddb:\n"
            f"    description: {description}\n"
            "    roleArn: arn:aws:iam::123456789012:role/fis\n"
            "    actions:\n"
            "      throttle:\n"
            "        actionId: aws:fis:inject-api-throttle-error\n"
            "        parameters: {service: dynamodb, operations: PutItem, percentage: 50}\n"
        )
        return path

    path = write("first version")
    proxy = Fisproxy(tmp_path, moto, extra_args=("--templates", str(path))).start()
    try:
        [summary] = proxy.fis().list_experiment_templates()["experimentTemplates"]
        assert summary["tags"] == {"Name": "throttle-ddb"} and summary["description"] == "first version"
        proxy.stop()
        write("second version")
        proxy.start()
        [again] = proxy.fis().list_experiment_templates()["experimentTemplates"]
        assert again["id"] == summary["id"] and again["description"] == "second version"
        template = proxy.fis().get_experiment_template(id=again["id"])["experimentTemplate"]
        assert template["actions"]["throttle"]["parameters"]["percentage"] == "50"
    finally:
        proxy.stop()


def test_a_single_proxy_killed_mid_action_keeps_its_planned_time(tmp_path: Path, moto: str) -> None:
    """Issue 20, point 10: instances an experiment stops for 30 s are started again 30 s after
    they were stopped, even though the only proxy was killed (-9) and restarted meanwhile; not
    after 30 s plus the downtime (what a restart did before)."""
    from tests.e2e.test_resources import by_tags, instances, run_experiment, states

    tag = {"fis-e2e": uuid.uuid4().hex[:10]}
    with Fisproxy(tmp_path, moto).running() as proxy:
        targeted = instances(proxy, 1, tag)
        exp_id = run_experiment(
            proxy, {"stop": {"actionId": "aws:ec2:stop-instances", "targets": {"Instances": "vms"},
                             "parameters": {"startInstancesAfterDuration": "PT30S"}}},
            {"vms": by_tags("aws:ec2:instance", tag)})
        exp = wait_for_state(proxy.fis(), exp_id, "running")
        wait_until(lambda: states(proxy, targeted)[targeted[0]] == "stopped", 20, "instance stopped")
        started = proxy.fis().get_experiment(id=exp_id)["experiment"]["actions"]["stop"]["startTime"].timestamp()
        time.sleep(1)
        proxy.kill9()
        down = time.monotonic()
        time.sleep(2)
        proxy.start()
        downtime = time.monotonic() - down
        wait_until(lambda: states(proxy, targeted)[targeted[0]] == "running", 90, "instance started again")
        took = time.time() - started
        print(f"\n[durability] stop-instances for 30 s, proxy down {downtime:.1f} s: started again after {took:.1f} s")
        assert 30 - 1 <= took < 30 + downtime - 1
        exp = wait_for_state(proxy.fis(), exp_id, "completed", timeout=30)
        assert exp["actions"]["stop"]["state"]["status"] == "completed"
