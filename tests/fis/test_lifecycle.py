"""The experiment lifecycle (`fis/lifecycle.py`) as table tests: events in, state and effects out.

No store, thread, lock or clock: each row is a template, a script of (seconds, event) and what
the experiment and the last step's effects must be. Every way an experiment ends is a row, and
each one that has a resource action under way must undo it (an `Undo` effect) before it ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from fisproxy.fis import lifecycle
from fisproxy.fis.failure import Failure
from fisproxy.fis.lifecycle import (
    ActionEnded,
    ActionProgress,
    Activate,
    Cancel,
    Deactivate,
    DeliverLogs,
    Log,
    Perform,
    QueueReport,
    Resolve,
    Resolved,
    Save,
    Stop,
    TakeOver,
    Tick,
    Undo,
)
from fisproxy.fis.models import ExperimentTemplate
from fisproxy.fis.resources.targets import ResolvedTarget, TargetResource
from fisproxy.fis.runstate import StopRequest

T0 = 1_700_000_000.0
ACCOUNT = "123456789012"
STOPPED = StopRequest(status="stopped", reason="Experiment stopped.")

LATENCY = {"actionId": "fisproxy:api:latency", "parameters": {"latencyMilliseconds": "5", "duration": "PT10S"}}
FOREVER = {"actionId": "fisproxy:api:error", "parameters": {"service": "dynamodb"}}
WAIT = {"actionId": "aws:fis:wait", "parameters": {"duration": "PT2S"}}
STOP_VMS = {"actionId": "aws:ec2:stop-instances", "targets": {"Instances": "vms"},
            "parameters": {"startInstancesAfterDuration": "PT1H"}}
REBOOT = {"actionId": "aws:ec2:reboot-instances", "targets": {"Instances": "vms"}}
AGENT = {"actionId": "aws:ecs:task-cpu-stress", "targets": {"Tasks": "tasks"}, "parameters": {"duration": "PT1M"}}
VMS = {"resourceType": "aws:ec2:instance", "resourceTags": {"app": "x"}, "selectionMode": "ALL"}
TASKS = {"resourceType": "aws:ecs:task", "selectionMode": "ALL",
         "resourceArns": ["arn:aws:ecs:us-east-1:123456789012:task/c/0123456789"]}
VM = ResolvedTarget("vms", "aws:ec2:instance", (TargetResource("arn:aws:ec2:us-east-1:123456789012:instance/i-1", "i-1"),))
NO_VM = ResolvedTarget("vms", "aws:ec2:instance", ())
TASK = ResolvedTarget("tasks", "aws:ecs:task", (TargetResource(TASKS["resourceArns"][0], "0123456789"),))
ONLY_SKIPPED = 'Target "tasks" is used only by actions fisproxy skips: not resolved.'
LACKS = 'Target "vms": the upstream does not implement ec2 DescribeInstances: it answered HTTP 501'
UNIMPLEMENTED = Failure("the upstream does not implement ec2 RebootInstances: it answered HTTP 501", skippable=True)


def new(actions: dict[str, Any], targets: dict[str, Any] | None = None, strict: bool = False,
        **extra: Any) -> lifecycle.Step:
    template = ExperimentTemplate.model_validate({
        "id": "EXTt", "description": "t", "roleArn": "arn:aws:iam::123456789012:role/fis",
        "actions": actions, "targets": targets or {}, "stopConditions": [{"source": "none"}], **extra})
    return lifecycle.create(template, experiment_id="EXPt", arn="arn:aws:fis:us-east-1:123456789012:experiment/EXPt",
                            now=T0, region="us-east-1", tags={}, actions_mode=extra.pop("mode", "run-all"),
                            fail_unperformable=strict)


@dataclass
class Row:
    name: str
    actions: dict[str, Any]
    script: list[tuple[float, lifecycle.Event]]
    status: str
    action_status: dict[str, str]
    effects: list[Any]  # the last step's effects, in order (Log by its type)
    targets: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    error_code: str | None = None
    strict: bool = False  # fisproxy_fail_unperformable


def effects(step: lifecycle.Step) -> list[Any]:
    return [e.log_type if isinstance(e, Log) else e for e in step.effects]


ROWS = [
    Row("resolved: running, first actions start", {"a": LATENCY, "w": WAIT, "b": {**LATENCY, "startAfter": ["w"]}},
        [(0, Resolved({}))], "running", {"a": "running", "w": "running", "b": "pending"},
        ["experiment-start", Save(), "action-start", Activate("a"), "action-start", Activate("w"), Save()]),
    Row("a wait ends, the next starts", {"w": WAIT, "b": {**LATENCY, "startAfter": ["w"]}},
        [(0, Resolved({})), (2, Tick())], "running", {"w": "completed", "b": "running"},
        [Deactivate("w"), "action-end", "action-start", Activate("b"), Save()]),
    Row("all done: completed", {"a": LATENCY},
        [(0, Resolved({})), (10, Tick())], "completed", {"a": "completed"},
        [Deactivate("a"), "action-end", Save(), "experiment-end", Save()], reason="Experiment completed."),
    Row("stop: stopping, faults off now", {"a": FOREVER, "b": {**WAIT, "startAfter": ["a"]}},
        [(0, Resolved({})), (5, Stop(STOPPED))], "stopping", {"a": "running", "b": "pending"},
        [Deactivate("a"), Save()], reason="Stopping Experiment."),
    Row("stop: stopped at the next step", {"a": FOREVER, "b": {**WAIT, "startAfter": ["a"]}},
        [(0, Resolved({})), (5, Stop(STOPPED)), (5.1, Tick())], "stopped", {"a": "stopped", "b": "cancelled"},
        [Deactivate("a"), "action-end", "action-end", "experiment-end", Save()], reason="Experiment stopped."),
    Row("stop while initiating: every action cancelled", {"a": LATENCY},
        [(0, Stop(STOPPED)), (0.1, Resolved({})), (0.2, Tick())], "stopped", {"a": "cancelled"},
        ["action-end", "experiment-end", Save()]),
    Row("stop condition", {"a": FOREVER},
        [(0, Resolved({})), (1, Stop(StopRequest(status="stopped", reason="Experiment halted by stop condition."),
                                     "Experiment halted by stop condition.", condition="alarm X")), (1.1, Tick())],
        "stopped", {"a": "stopped"}, [Deactivate("a"), "action-end", "experiment-end", Save()],
        reason="Experiment halted by stop condition."),
    Row("safety lever: cancelled at once", {"a": FOREVER, "b": {**WAIT, "startAfter": ["a"]}},
        [(0, Resolved({})), (1, Cancel("Safety lever engaged."))], "cancelled", {"a": "stopped", "b": "cancelled"},
        [Deactivate("a"), Deactivate("a"), "action-end", "action-end", "experiment-end", Save()],
        reason="Safety lever engaged."),
    Row("an action that needs an agent is skipped, the rest runs", {"cpu": AGENT, "lat": LATENCY},
        [(0, Resolved({}, unresolved={"tasks": ONLY_SKIPPED}))], "running", {"cpu": "skipped", "lat": "running"},
        ["experiment-start", "target-resolution-start", "target-resolution-detail", Save(),
         "action-end", "action-start", Activate("lat"), Save()], targets={"tasks": TASKS}),
    Row("fail_unperformable: an action that needs an agent fails the experiment", {"cpu": AGENT, "lat": LATENCY},
        [(0, Resolved({"tasks": TASK}))], "failed", {"cpu": "failed", "lat": "cancelled"},
        ["experiment-start", "action-error", "action-end", "action-end", "experiment-end", Save()],
        targets={"tasks": TASKS}, error_code="ConfigurationFailure", strict=True),
    Row("a target the upstream cannot list: its actions skipped, the rest runs", {"vm": REBOOT, "lat": LATENCY},
        [(0, Resolved({}, unresolved={"vms": LACKS}))], "running", {"vm": "skipped", "lat": "running"},
        ["experiment-start", "target-resolution-start", "target-resolution-detail", Save(),
         "action-end", "action-start", Activate("lat"), Save()], targets={"vms": VMS}),
    Row("an API the upstream lacks: the action skipped (undone), the rest runs", {"stop": STOP_VMS, "boot": REBOOT},
        [(0, Resolved({"vms": VM})), (1, ActionEnded("boot", UNIMPLEMENTED))], "running",
        {"stop": "running", "boot": "skipped"}, [Deactivate("boot"), "action-end", Save()], targets={"vms": VMS}),
    Row("fail_unperformable: an API the upstream lacks fails it", {"stop": STOP_VMS, "boot": REBOOT},
        [(0, Resolved({"vms": VM})), (1, ActionEnded("boot", UNIMPLEMENTED))], "stopping",
        {"stop": "running", "boot": "failed"},
        [Deactivate("boot"), "action-error", "action-end", Deactivate("stop"), Undo("stop"), Save()],
        targets={"vms": VMS}, strict=True),
    Row("a role that cannot be assumed fails it at roleArn", {"vm": REBOOT},
        [(0, Resolved(Failure("Cannot assume the experiment role", "AuthorizationFailure", "roleArn")))],
        "failed", {"vm": "cancelled"},
        ["experiment-start", "target-resolution-start", "action-end", "experiment-end", Save()],
        targets={"vms": VMS}, error_code="AuthorizationFailure"),
    Row("a target resolving to nothing fails it", {"vm": REBOOT},
        [(0, Resolved({"vms": NO_VM}))], "failed", {"vm": "cancelled"},
        ["experiment-start", "target-resolution-start", "target-resolution-detail", "target-resolution-end",
         "action-end", "experiment-end", Save()], targets={"vms": VMS}, error_code="InvalidTarget"),
    Row("a resource action starts on a worker", {"stop": STOP_VMS},
        [(0, Resolved({"vms": VM}))], "running", {"stop": "running"},
        ["experiment-start", "target-resolution-start", "target-resolution-detail", "target-resolution-end",
         Save(), "action-start", Perform("stop"), Save()], targets={"vms": VMS}),
    Row("its intent is recorded", {"stop": STOP_VMS},
        [(0, Resolved({"vms": VM})), (0.1, ActionProgress("stop", "intent", {}))], "running", {"stop": "running"},
        [Save()], targets={"vms": VMS}),
    Row("a stop undoes the resource action", {"stop": STOP_VMS},
        [(0, Resolved({"vms": VM})), (1, Stop(STOPPED))], "stopping", {"stop": "running"},
        [Deactivate("stop"), Undo("stop"), Save()], targets={"vms": VMS}),
    Row("... and waits for the undo before it ends", {"stop": STOP_VMS},
        [(0, Resolved({"vms": VM})), (1, Stop(STOPPED)), (1.1, Tick())], "stopping", {"stop": "running"},
        [], targets={"vms": VMS}),
    Row("... then ends stopped", {"stop": STOP_VMS},
        [(0, Resolved({"vms": VM})), (1, Stop(STOPPED)), (2, ActionEnded("stop"))], "stopped", {"stop": "stopped"},
        [Deactivate("stop"), "action-end", Save(), "experiment-end", Save()], targets={"vms": VMS}),
    Row("an undo that failed is logged, the experiment still ends", {"stop": STOP_VMS},
        [(0, Resolved({"vms": VM})), (1, Stop(STOPPED)),
         (2, ActionEnded("stop", Failure("ec2 StartInstances failed on the upstream: Unavailable")))],
        "stopped", {"stop": "failed"},
        [Deactivate("stop"), "action-error", "action-end", Save(), "experiment-end", Save()], targets={"vms": VMS}),
    Row("a failed action undoes the other resource actions at once", {"stop": STOP_VMS, "boot": REBOOT},
        [(0, Resolved({"vms": VM})), (3, ActionEnded("boot", Failure("RebootInstances: AccessDenied", "AccessDenied")))],
        "stopping", {"stop": "running", "boot": "failed"},
        [Deactivate("boot"), "action-error", "action-end", Deactivate("stop"), Undo("stop"), Save()],
        targets={"vms": VMS}, reason="RebootInstances: AccessDenied"),
    Row("... and ends failed once they are undone", {"stop": STOP_VMS, "boot": REBOOT},
        [(0, Resolved({"vms": VM})), (3, ActionEnded("boot", Failure("RebootInstances: AccessDenied", "AccessDenied"))),
         (4, ActionEnded("stop"))], "failed", {"stop": "stopped", "boot": "failed"},
        [Deactivate("stop"), "action-end", Save(), "experiment-end", Save()], targets={"vms": VMS},
        error_code="AccessDenied"),
    Row("the safety lever undoes them too", {"stop": STOP_VMS},
        [(0, Resolved({"vms": VM})), (1, Cancel("Safety lever engaged."))], "stopping", {"stop": "running"},
        [Deactivate("stop"), Undo("stop"), Save()], targets={"vms": VMS}),
    Row("a resource action done completes", {"boot": REBOOT},
        [(0, Resolved({"vms": VM})), (1, ActionEnded("boot"))], "completed", {"boot": "completed"},
        [Deactivate("boot"), "action-end", Save(), "experiment-end", Save()], targets={"vms": VMS}),
    Row("a takeover resumes resource actions where they were", {"stop": STOP_VMS},
        [(0, Resolved({"vms": VM})), (1, ActionProgress("stop", "started", {"stopped": ["i-1"]})), (7, TakeOver())],
        "running", {"stop": "running"}, [Perform("stop", resumed=True), Save()], targets={"vms": VMS}),
    Row("a takeover of an experiment ending undoes at once", {"stop": STOP_VMS},
        [(0, Resolved({"vms": VM})), (1, Stop(STOPPED)), (7, TakeOver())], "stopping", {"stop": "running"},
        [Perform("stop", resumed=True), Undo("stop"), Save()], targets={"vms": VMS}),
    Row("a takeover while initiating resolves again", {"a": LATENCY},
        [(0, TakeOver())], "initiating", {"a": "pending"}, [Resolve(), Save()]),
    Row("a takeover past a planned end ends the action", {"a": LATENCY, "b": FOREVER},
        [(0, Resolved({})), (60, TakeOver())], "running", {"a": "completed", "b": "running"},
        [Deactivate("a"), "action-end", Save(), Save()]),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_lifecycle(row: Row) -> None:
    step = new(row.actions, row.targets, row.strict)
    assert step.effects == (Save(), Resolve())
    experiment, state = step.experiment, step.state
    for seconds, event in row.script:
        step = lifecycle.step(experiment, state, T0 + seconds, event, ACCOUNT)
        experiment, state = step.experiment, step.state
    assert experiment.state.status == row.status
    assert {n: a.state.status for n, a in experiment.actions.items()} == row.action_status
    assert effects(step) == row.effects
    if row.reason is not None:
        assert experiment.state.reason == row.reason
    if row.error_code is not None:
        assert experiment.state.error is not None and experiment.state.error.code == row.error_code


def test_ends_of_the_same_run_never_miss_an_undo() -> None:
    """Whatever ends an experiment with a resource action under way, an Undo of it comes out."""
    endings: list[lifecycle.Event] = [
        Stop(STOPPED), Cancel("lever"), ActionEnded("boot", Failure("boom")),
        Stop(StopRequest(status="stopped", reason="halted"), "halted", condition="alarm"),
    ]
    for ending in endings:
        step = new({"stop": STOP_VMS, "boot": REBOOT}, {"vms": VMS})
        step = lifecycle.step(step.experiment, step.state, T0, Resolved({"vms": VM}), ACCOUNT)
        after = lifecycle.step(step.experiment, step.state, T0 + 1, ending, ACCOUNT)
        assert Undo("stop") in after.effects, ending
        assert after.experiment.state.status == "stopping", ending


def test_a_step_never_changes_its_inputs() -> None:
    step = new({"a": LATENCY})
    before = (step.experiment.model_dump_json(), step.state.model_dump_json())
    after = lifecycle.step(step.experiment, step.state, T0, Resolved({}), ACCOUNT)
    assert after.experiment.state.status == "running"
    assert (step.experiment.model_dump_json(), step.state.model_dump_json()) == before


def test_a_tick_with_nothing_due_returns_the_same_objects() -> None:
    step = new({"a": LATENCY})
    running = lifecycle.step(step.experiment, step.state, T0, Resolved({}), ACCOUNT)
    idle = lifecycle.step(running.experiment, running.state, T0 + 1, Tick(), ACCOUNT)
    assert idle.experiment is running.experiment and idle.state is running.state and not idle.changed


def test_skip_all_completes_with_every_action_skipped() -> None:
    template = ExperimentTemplate.model_validate({
        "id": "EXTt", "description": "t", "roleArn": "arn:aws:iam::123456789012:role/fis",
        "actions": {"boot": REBOOT}, "targets": {"vms": VMS}, "stopConditions": [{"source": "none"}]})
    step = lifecycle.create(template, experiment_id="EXPs", arn="arn", now=T0, region="us-east-1", tags={},
                            actions_mode="skip-all")
    done = lifecycle.step(step.experiment, step.state, T0, Resolved({"vms": VM}), ACCOUNT)
    assert done.experiment.state.status == "completed"
    assert done.experiment.actions["boot"].state.status == "skipped"
    assert not any(isinstance(e, Perform) for e in done.effects)


def test_log_delivery_is_asked_for_when_the_template_wants_logs() -> None:
    template = ExperimentTemplate.model_validate({
        "id": "EXTt", "description": "t", "roleArn": "arn:aws:iam::123456789012:role/fis",
        "actions": {"w": WAIT}, "stopConditions": [{"source": "none"}],
        "logConfiguration": {"s3Configuration": {"bucketName": "logs-bucket"}, "logSchemaVersion": 2}})
    step = lifecycle.create(template, experiment_id="EXPl", arn="arn", now=T0, region="us-east-1", tags={},
                            actions_mode="run-all")
    step = lifecycle.step(step.experiment, step.state, T0, Resolved({}), ACCOUNT)
    done = lifecycle.step(step.experiment, step.state, T0 + 2, Tick(), ACCOUNT)
    assert done.experiment.state.status == "completed" and DeliverLogs() in done.effects


@pytest.mark.parametrize("end", ["completed", "stopped", "cancelled"])
def test_every_end_queues_the_report_when_the_template_asks_for_one(end: str) -> None:
    with_report = {"experimentReportConfiguration": {
        "outputs": {"s3Configuration": {"bucketName": "reports", "prefix": "r"}}}}
    for extra, wanted in ((with_report, True), ({}, False)):
        step = new({"a": WAIT}, **extra)
        step = lifecycle.step(step.experiment, step.state, T0, Resolved({}), ACCOUNT)
        event: lifecycle.Event = {"completed": Tick(), "stopped": Stop(STOPPED),
                                  "cancelled": Cancel("Safety lever engaged.")}[end]
        done = lifecycle.step(step.experiment, step.state, T0 + 2, event, ACCOUNT)
        if end == "stopped":
            done = lifecycle.step(done.experiment, done.state, T0 + 2.1, Tick(), ACCOUNT)
        assert done.experiment.state.status == end
        assert (QueueReport() in done.effects) is wanted


def test_planned_ends_are_absolute_times() -> None:
    step = new({"a": LATENCY})
    running = lifecycle.step(step.experiment, step.state, T0, Resolved({}), ACCOUNT)
    assert running.state.ends == {"a": T0 + 10}


def test_a_skipped_action_says_what_fisproxy_cannot_do_and_the_log_keeps_it() -> None:
    step = new({"cpu": AGENT, "vm": REBOOT}, {"tasks": TASKS, "vms": VMS})
    step = lifecycle.step(step.experiment, step.state, T0, Resolved({}, unresolved={"tasks": ONLY_SKIPPED, "vms": LACKS}),
                          ACCOUNT)
    cpu, vm = step.experiment.actions["cpu"].state, step.experiment.actions["vm"].state
    assert cpu.reason.startswith("Skipped: aws:ecs:task-cpu-stress cannot run in fisproxy: it needs the SSM agent")
    assert vm.reason == f"Skipped: {LACKS}"
    ends = [e.details for e in step.effects if isinstance(e, Log) and e.log_type == "action-end"]
    assert [d["action_state"] for d in ends] == [{"status": "skipped", "reason": cpu.reason},
                                                {"status": "skipped", "reason": vm.reason}]
    assert step.experiment.state.status == "completed"  # nothing else to run


def test_a_network_action_says_at_start_what_it_drops_and_what_never_passes_a_proxy() -> None:
    cut = {"actionId": "aws:network:disrupt-connectivity", "targets": {"Subnets": "net"},
           "parameters": {"duration": "PT1M", "scope": "availability-zone"}}
    net = {"resourceType": "aws:ec2:subnet", "resourceTags": {"a": "b"}, "selectionMode": "ALL"}
    subnet = ResolvedTarget("net", "aws:ec2:subnet", (TargetResource("arn:aws:ec2:us-east-1:123456789012:subnet/s-1", "s-1"),))
    step = new({"cut": cut}, {"net": net})
    step = lifecycle.step(step.experiment, step.state, T0, Resolved({"net": subnet}, facts={"cut": {"subnets": []}}),
                          ACCOUNT)
    start = next(e.details for e in step.effects if isinstance(e, Log) and e.log_type == "action-start")
    assert "AWS API calls go to Regional endpoints outside the VPC" in start["notes"][0]
    assert step.state.facts == {"cut": {"subnets": []}}
