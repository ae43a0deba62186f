"""Resource actions at most once (issue 20, point 3), driven through the real engine on the real
SQLite store against the suite's real moto server.

A proxy that dies after an action's upstream call but before it recorded that the call was
made leaves the action's intent in the store (`RunState.action_phase` = `intent`). The proxy
that resumes it must look at the upstream before acting again: these tests leave the store in
that state (the intent recorded, the call made upstream, nothing else) and resume it."""

from __future__ import annotations

import json
import random
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from fisproxy.fis.engine import Engine
from fisproxy.fis.lifecycle import ActionProgress
from fisproxy.fis.loops import drive
from fisproxy.fis.models import ExperimentTemplate
from fisproxy.fis.resources.base import ActionContext
from fisproxy.fis.runner import ActionRunner, _Job
from fisproxy.fis.upstream import RoleSessions
from fisproxy.store import Store
from tests.fis.resources.conftest import ROLE_ARN, boto, run_instances, states
from tests.helpers import wait_until

DOC = "arn:aws:ssm:us-east-1::document/AWS-RunShellScript"


def engine(store: Store, tmp_path: Path, moto_url: str, name: str) -> Engine:
    return Engine(store, state_dir=tmp_path, rng=random.Random(1), upstream_endpoint=moto_url, proxy_id=name,
                  lease_ttl_seconds=0.6)


def experiment(tag: dict[str, str], action: dict[str, Any]) -> ExperimentTemplate:
    return ExperimentTemplate.model_validate({
        "id": "EXTonce", "description": "once", "roleArn": ROLE_ARN, "stopConditions": [{"source": "none"}],
        "targets": {"vms": {"resourceType": "aws:ec2:instance", "resourceTags": tag, "selectionMode": "ALL"}},
        "actions": {"act": {**action, "targets": {"Instances": "vms"}}}})


def dies_after_the_upstream_call(eng: Engine) -> None:
    """Make `eng` die right after an action's upstream call, before it records that the call
    was made: its worker stops there, undoing nothing and recording nothing more."""
    record = eng.runner._record

    def die(job: _Job, phase: Any) -> None:
        if phase == "started":
            job.ctx.abandoned.set()
            job.ctx.cancelled.set()
            return
        record(job, phase)

    eng.runner._record = die  # type: ignore[method-assign]


def crashed(eng: Engine, store: Store, exp_id: str) -> None:
    wait_until(lambda: not eng.runner.running(exp_id), 30, "the worker to stop")
    eng.close()
    state = store.get_runtime(exp_id)
    assert state is not None and state.phase("act") == "intent", state


def run_until(eng: Engine, check: Any, what: str) -> None:
    wait_until(lambda: (drive(eng), check())[1], 30, what)


@pytest.fixture
def tag() -> dict[str, str]:
    return {"fis-once": uuid.uuid4().hex[:12]}


def test_a_resumed_send_command_that_went_out_is_followed_not_sent_again(tmp_path, moto_url, tag):
    [instance] = run_instances(moto_url, 1, tag)
    store = Store(tmp_path / "state.sqlite")
    first = engine(store, tmp_path, moto_url, "first")
    dies_after_the_upstream_call(first)
    exp_id = first.start_experiment(experiment(tag, {
        "actionId": "aws:ssm:send-command",
        "parameters": {"documentArn": DOC, "documentParameters": json.dumps({"commands": ["uptime"]}),
                       "duration": "PT1M"}}), region="us-east-1", tags={}, actions_mode="run-all").id
    marker = f"fisproxy experiment {exp_id}, action act"
    ssm = boto(moto_url, "ssm")

    def sent() -> list[dict[str, Any]]:
        return [c for c in ssm.list_commands(InstanceId=instance)["Commands"] if c.get("Comment") == marker]

    run_until(first, lambda: len(sent()) == 1, "the command to go out")
    crashed(first, store, exp_id)

    second = engine(Store(tmp_path / "state.sqlite"), tmp_path, moto_url, "second")
    second.resume()
    run_until(second, lambda: store.get_experiment(exp_id).state.status == "completed", "completion")
    assert len(sent()) == 1  # followed to its end, not sent again
    log = [r for r in store.logs(exp_id) if r["log_type"] == "action-end"]
    assert log[-1]["details"]["action_state"]["status"] == "completed"
    second.close()


def test_a_resumed_stop_instances_that_went_out_is_not_repeated_and_is_undone(tmp_path, moto_url, tag):
    ids = run_instances(moto_url, 2, tag)
    store = Store(tmp_path / "state.sqlite")
    first = engine(store, tmp_path, moto_url, "first")
    dies_after_the_upstream_call(first)
    exp_id = first.start_experiment(experiment(tag, {
        "actionId": "aws:ec2:stop-instances", "parameters": {"startInstancesAfterDuration": "PT3S"}}),
        region="us-east-1", tags={}, actions_mode="run-all").id
    run_until(first, lambda: set(states(moto_url, ids).values()) == {"stopped"}, "the instances to stop")
    crashed(first, store, exp_id)

    stops: list[Any] = []
    second = engine(Store(tmp_path / "state.sqlite"), tmp_path, moto_url, "second")
    sessions = second.runner._sessions
    made = sessions.session

    def spying(*args: Any, **kwargs: Any) -> Any:  # count the StopInstances calls of the resumed action
        session = made(*args, **kwargs)
        session.client("ec2").meta.events.register("provide-client-params.ec2.StopInstances",
                                                     lambda params, **_: stops.append(params))
        return session

    sessions.session = spying  # type: ignore[method-assign]
    second.resume()
    run_until(second, lambda: store.get_experiment(exp_id).state.status == "completed", "completion")
    assert stops == []  # found stopped upstream: not stopped again
    assert set(states(moto_url, ids).values()) == {"running"}  # and started again at the end
    second.close()


class _Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def worker_event(self, experiment_id: str, event: Any) -> None:
        self.events.append(event)


class _Reboot:
    """An action the upstream cannot tell about afterwards (a reboot leaves no trace)."""

    def __init__(self) -> None:
        self.starts = 0

    def start(self, ctx: ActionContext) -> None:
        self.starts += 1

    def stop(self, ctx: ActionContext) -> None:
        return None


def test_an_action_the_upstream_cannot_tell_about_is_not_started_again():
    events = _Recorder()
    runner = ActionRunner(events, RoleSessions(None), clock=lambda: 0.0)
    try:
        ctx = ActionContext(experiment_id="EXPr", action_name="boot", action_id="aws:ec2:reboot-instances",
                            clients=None, targets={}, parameters={}, region="us-east-1",
                            log=lambda message: events.events.append(message), cancelled=threading.Event())
        reboot = _Reboot()
        assert runner._where_to_start(_Job("EXPr", "boot", ROLE_ARN, "intent", ctx), reboot) is True
        assert reboot.starts == 0
        assert any(isinstance(e, str) and "not run again (at most once)" in e for e in events.events)
        assert [e.phase for e in events.events if isinstance(e, ActionProgress)] == ["started"]
        # A fresh action records its intent before anything else.
        fresh = _Job("EXPr", "boot", ROLE_ARN, None, ctx)
        assert runner._where_to_start(fresh, reboot) is False
        assert [e.phase for e in events.events if isinstance(e, ActionProgress)] == ["started", "intent"]
    finally:
        runner.close()
