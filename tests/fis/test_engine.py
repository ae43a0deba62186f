"""The experiment engine, driven by a fake clock through `tick()`, on the real SQLite store.

Stop conditions and log delivery run against a real moto server."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fisproxy.aws.call import AwsCall
from fisproxy.fis import upstream
from fisproxy.fis.engine import Engine, SaveError
from fisproxy.fis.loops import EngineLoops, drive
from fisproxy.fis.models import ExperimentTemplate
from fisproxy.store import Store

T0 = 1_700_000_000.0
ROLE_ARN = "arn:aws:iam::123456789012:role/fis"
APP_ROLE = "arn:aws:iam::123456789012:role/app/app-role"
OTHER_ROLE = "arn:aws:iam::123456789012:role/other"


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state.sqlite")
    yield s
    s.close()


def make_engine(store: Store, tmp_path: Path, clock: Clock, seed: int = 1, **kw: Any) -> Engine:
    return Engine(store, state_dir=tmp_path, rng=random.Random(seed), clock=clock, **kw)


@pytest.fixture
def engine(store: Store, tmp_path: Path, clock: Clock) -> Engine:
    return make_engine(store, tmp_path, clock)


def template(actions: dict, targets: dict | None = None, **extra: Any) -> ExperimentTemplate:
    return ExperimentTemplate.model_validate({
        "id": "EXTtest", "description": "test", "roleArn": ROLE_ARN, "actions": actions,
        "targets": targets or {}, "stopConditions": [{"source": "none"}], **extra,
    })


def latency(service: str = "dynamodb", duration: str | None = None, **params: str) -> dict:
    p = {"service": service, "latencyMilliseconds": "100", **params}
    if duration:
        p["duration"] = duration
    return {"actionId": "fisproxy:api:latency", "parameters": p}


def error(service: str = "dynamodb", duration: str | None = None, **params: str) -> dict:
    p = {"service": service, **params}
    if duration:
        p["duration"] = duration
    return {"actionId": "fisproxy:api:error", "parameters": p}


def wait(duration: str) -> dict:
    return {"actionId": "aws:fis:wait", "parameters": {"duration": duration}}


def call(service: str = "dynamodb", operation: str = "GetItem", region: str = "us-east-1",
         access_key: str | None = "AKIADEFAULT", api: str | None = None) -> AwsCall:
    return AwsCall(service=service, region=region, operation=operation, api=api, access_key=access_key)


def start(engine: Engine, t: ExperimentTemplate, actions_mode: str = "run-all") -> str:
    return engine.start_experiment(t, region="us-east-1", tags={"k": "v"}, actions_mode=actions_mode).id


def states(engine: Engine, store: Store, exp_id: str) -> tuple[str, dict[str, str]]:
    e = store.get_experiment(exp_id)
    assert e is not None
    return e.state.status, {n: a.state.status for n, a in e.actions.items()}


def log_types(store: Store, exp_id: str) -> list[str]:
    return [r["log_type"] for r in store.logs(exp_id)]


# ---- lifecycle ----------------------------------------------------------------------------


def test_full_lifecycle_with_start_after_and_wait(engine, store, clock, tmp_path):
    t = template({"pause": wait("PT2S"), "slow": {**latency(duration="PT3S"), "startAfter": ["pause"]}})
    e = engine.start_experiment(t, region="eu-west-1", tags={"k": "v"}, actions_mode="run-all")
    assert e.id.startswith("EXP") and e.arn == f"arn:aws:fis:eu-west-1:123456789012:experiment/{e.id}"
    assert (e.state.status, e.state.reason) == ("initiating", "Experiment is initiating.")
    assert {n: (a.state.status, a.state.reason) for n, a in e.actions.items()} == {
        "pause": ("pending", "Initial state."), "slow": ("pending", "Initial state.")}
    assert e.tags == {"k": "v"} and e.experiment_template_id == "EXTtest" and e.role_arn == ROLE_ARN
    assert store.get_experiment(e.id).state.status == "initiating"  # persisted at once
    assert engine.active_count() == 1

    drive(engine)
    got = store.get_experiment(e.id)
    assert (got.state.status, got.state.reason) == ("running", "Experiment is running.")
    assert states(engine, store, e.id)[1] == {"pause": "running", "slow": "pending"}
    assert got.start_time.timestamp() == pytest.approx(T0)
    assert engine.match(call()) == []  # wait has no effect

    clock.advance(1.9)
    drive(engine)
    assert states(engine, store, e.id)[1] == {"pause": "running", "slow": "pending"}
    clock.advance(0.1)
    drive(engine)
    assert states(engine, store, e.id)[1] == {"pause": "completed", "slow": "running"}
    faults = engine.match(call())
    assert [(f.source, f.spec.kind, f.latency_ms) for f in faults] == [(f"{e.id}/slow", "latency", 100.0)]
    assert not faults[0].stopped.is_set()

    clock.advance(3)
    drive(engine)
    got = store.get_experiment(e.id)
    assert (got.state.status, got.state.reason) == ("completed", "Experiment completed.")
    assert {n: (a.state.status, a.state.reason) for n, a in got.actions.items()} == {
        "pause": ("completed", "Action was completed."), "slow": ("completed", "Action was completed.")}
    assert got.actions["slow"].start_time.timestamp() == pytest.approx(T0 + 2)
    assert got.actions["slow"].end_time.timestamp() == pytest.approx(T0 + 5)
    assert got.end_time.timestamp() == pytest.approx(T0 + 5)
    assert faults[0].stopped.is_set()  # the proxy cuts waits short on it
    assert engine.match(call()) == []
    assert engine.active_count() == 0

    types = log_types(store, e.id)
    assert types == ["experiment-start", "action-start", "action-end", "action-start", "action-end",
                     "experiment-end"]
    records = store.logs(e.id)
    assert all(r["version"] == "2" and r["id"] == e.id for r in records)
    assert records[-1]["details"]["experiment_state"] == {"status": "completed", "reason": "Experiment completed."}
    lines = (tmp_path / "logs" / f"{e.id}.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == records


def test_parallel_actions_and_action_without_duration_runs_until_stop(engine, store, clock):
    t = template({"a": latency(duration="PT1S"), "forever": error(service="s3"),
                  "after": {**wait("PT1S"), "startAfter": ["forever"]}})
    exp_id = start(engine, t)
    drive(engine)
    assert states(engine, store, exp_id)[1] == {"a": "running", "forever": "running", "after": "pending"}
    clock.advance(3600)
    drive(engine)
    assert states(engine, store, exp_id) == ("running", {"a": "completed", "forever": "running",
                                                         "after": "pending"})
    assert [f.spec.kind for f in engine.match(call("s3", "GetObject"))] == ["error"]


def test_stop_midway(engine, store, clock):
    t = template({"inject": error(), "next": {**wait("PT1S"), "startAfter": ["inject"]}})
    exp_id = start(engine, t)
    drive(engine)
    fault = engine.match(call())[0]
    clock.advance(5)
    stopped = engine.stop_experiment(exp_id)
    assert (stopped.state.status, stopped.state.reason) == ("stopping", "Stopping Experiment.")
    assert {n: a.state.status for n, a in stopped.actions.items()} == {"inject": "running", "next": "pending"}
    assert fault.stopped.is_set() and engine.match(call()) == []  # faults end at once
    assert store.get_experiment(exp_id).state.status == "stopping"
    drive(engine)
    got = store.get_experiment(exp_id)
    assert got.state.status == "stopped"
    assert {n: a.state.status for n, a in got.actions.items()} == {"inject": "stopped", "next": "cancelled"}
    assert got.actions["inject"].end_time.timestamp() == pytest.approx(T0 + 5)
    assert got.actions["next"].start_time is None
    assert engine.active_count() == 0
    # Stopping again, or an experiment that ended: returned as it is.
    assert engine.stop_experiment(exp_id).state.status == "stopped"
    with pytest.raises(KeyError):
        engine.stop_experiment("EXPnope")


def test_stop_while_initiating_cancels_every_action(store, tmp_path, clock):
    engine = make_engine(store, tmp_path, clock, max_action_workers=1)
    busy = threading.Event()
    engine.runner._pool.submit(busy.wait, 30)  # the one worker is busy: targets not resolved yet
    exp_id = start(engine, template({"a": latency()}))
    assert engine.stop_experiment(exp_id).state.status == "stopping"
    busy.set()
    drive(engine)
    assert states(engine, store, exp_id) == ("stopped", {"a": "cancelled"})


AGENT_TEMPLATE = dict(
    actions={"cpu": {"actionId": "aws:ecs:task-cpu-stress", "targets": {"Tasks": "tasks"},
                     "parameters": {"duration": "PT1M"}},
             "lat": latency()},
    targets={"tasks": {"resourceType": "aws:ecs:task", "selectionMode": "ALL",
                       "resourceArns": ["arn:aws:ecs:us-east-1:123456789012:task/c/0123456789"]}},
)


def test_an_action_that_needs_an_agent_is_skipped_saying_so_and_the_rest_runs(engine, store):
    exp_id = start(engine, template(**AGENT_TEMPLATE))
    drive(engine)
    e = store.get_experiment(exp_id)
    assert e.state.status == "running"
    assert {n: a.state.status for n, a in e.actions.items()} == {"cpu": "skipped", "lat": "running"}
    reason = e.actions["cpu"].state.reason
    assert reason.startswith("Skipped: aws:ecs:task-cpu-stress cannot run in fisproxy: it needs the SSM agent")
    assert reason.endswith("The experiment runs on without this action's effect.")
    assert engine.match(call())  # the latency runs
    # The tasks target only the skipped action uses is not resolved (no upstream was needed).
    logs = store.logs(exp_id)
    detail = next(r for r in logs if r["log_type"] == "target-resolution-detail")
    assert detail["details"]["status"] == "skipped" and "only by actions fisproxy skips" in detail["details"]["error_information"]
    ended = next(r for r in logs if r["log_type"] == "action-end" and r["details"]["action_name"] == "cpu")
    assert ended["details"]["action_state"] == {"status": "skipped", "reason": reason}
    assert "action-error" not in log_types(store, exp_id)


def test_fail_unperformable_fails_the_experiment_saying_so(store, tmp_path, clock):
    engine = make_engine(store, tmp_path, clock, fail_unperformable=True)
    t = template(**AGENT_TEMPLATE)
    exp_id = start(engine, t)
    drive(engine)
    e = store.get_experiment(exp_id)
    assert e.state.status == "failed"
    assert e.state.reason.startswith('Action "cpu": aws:ecs:task-cpu-stress cannot run in fisproxy: it needs ')
    assert "agent" in e.state.reason
    assert (e.state.error.code, e.state.error.location) == ("ConfigurationFailure", "cpu")
    assert {n: a.state.status for n, a in e.actions.items()} == {"cpu": "failed", "lat": "cancelled"}
    assert "action-error" in log_types(store, exp_id)
    assert engine.match(call()) == [] and engine.active_count() == 0


def test_skip_all_resolves_targets_and_skips_actions(engine, store):
    t = template({"throttle": {"actionId": "aws:fis:inject-api-throttle-error",
                               "parameters": {"service": "ec2"}, "targets": {"Roles": "app"}}},
                 {"app": {"resourceType": "aws:iam:role", "resourceArns": [APP_ROLE], "selectionMode": "ALL"}})
    exp_id = start(engine, t, actions_mode="skip-all")
    drive(engine)
    e = store.get_experiment(exp_id)
    assert e.state.status == "completed" and e.experiment_options.actions_mode == "skip-all"
    assert e.actions["throttle"].state.status == "skipped"
    assert [(r.target_name, r.target_information) for r in engine.resolved_targets(exp_id)] == [
        ("app", {"arn": APP_ROLE})]
    assert "target-resolution-end" in log_types(store, exp_id) and "action-start" not in log_types(store, exp_id)


def test_cancel_all(store, tmp_path, clock):
    engine = make_engine(store, tmp_path, clock, max_action_workers=1)
    a = start(engine, template({"x": latency()}))
    drive(engine)
    busy = threading.Event()
    engine.runner._pool.submit(busy.wait, 30)  # b's targets not resolved yet: b is initiating
    b = start(engine, template({"y": error()}))
    engine.cancel_all("Safety lever engaged.")
    busy.set()
    assert engine.match(call()) == [] and engine.active_count() == 0
    for exp_id in (a, b):
        e = store.get_experiment(exp_id)
        assert (e.state.status, e.state.reason) == ("cancelled", "Safety lever engaged.")
    assert store.get_experiment(a).actions["x"].state.status == "stopped"
    assert store.get_experiment(b).actions["y"].state.status == "cancelled"
    # Ended ones stay ended: a stop or a second lever changes nothing, logs are not repeated.
    logged = len(store.logs(a))
    assert engine.stop_experiment(a).state.status == "cancelled"
    engine.cancel_all("again")
    drive(engine)
    assert store.get_experiment(a).state.reason == "Safety lever engaged." and len(store.logs(a)) == logged


# ---- targets ------------------------------------------------------------------------------


def role_template(selection: str = "ALL", arns: list[str] | None = None, mode: str | None = None,
                  **target: Any) -> ExperimentTemplate:
    tgt = {"resourceType": "aws:iam:role", "selectionMode": selection, **target}
    if arns is not None:
        tgt["resourceArns"] = arns
    extra = {"experimentOptions": {"emptyTargetResolutionMode": mode}} if mode else {}
    return template({"throttle": {"actionId": "aws:fis:inject-api-throttle-error",
                                  "parameters": {"service": "dynamodb"}, "targets": {"Roles": "app"}}},
                    {"app": tgt}, **extra)


ROLES5 = [f"arn:aws:iam::123456789012:role/r{i}" for i in range(5)]


def resolved_arns(engine: Engine, exp_id: str) -> list[str]:
    return [r.target_information["arn"] for r in engine.resolved_targets(exp_id)]


@pytest.mark.parametrize("selection, count", [("COUNT(2)", 2), ("PERCENT(50)", 2), ("PERCENT(80)", 4), ("ALL", 5)])
def test_selection_modes_reproducible_with_a_seed(store, tmp_path, clock, selection, count):
    picks = []
    for seed in (3, 3, 4, 5, 6):
        eng = make_engine(store, tmp_path, clock, seed=seed)
        exp_id = start(eng, role_template(selection, ROLES5))
        drive(eng)
        assert store.get_experiment(exp_id).state.status == "running"
        picks.append(resolved_arns(eng, exp_id))
        eng.stop_experiment(exp_id)
        drive(eng)
        assert resolved_arns(eng, exp_id) == picks[-1]  # still readable from the store
    assert all(len(p) == count and set(p) <= set(ROLES5) for p in picks)
    assert picks[0] == picks[1]
    if count < 5:
        assert len({tuple(p) for p in picks}) > 1


def test_empty_arn_target_fails_even_in_skip_mode(engine, store):
    exp_id = start(engine, role_template("PERCENT(10)", ROLES5[:2], mode="skip"))
    drive(engine)
    e = store.get_experiment(exp_id)
    assert e.state.status == "failed" and e.state.error.code == "InvalidTarget"
    assert e.state.error.location == "app" and "app" in e.state.reason


def test_empty_tag_target_fail_or_skip(store, tmp_path, clock, moto_url):
    iam = upstream.client("iam", "us-east-1", moto_url)
    dev = iam.create_role(RoleName="tagged-dev", AssumeRolePolicyDocument="{}",
                          Tags=[{"Key": "stage", "Value": "dev"}])["Role"]["Arn"]
    eng = make_engine(store, tmp_path, clock, upstream_endpoint=moto_url)
    failed = start(eng, role_template(resourceTags={"stage": "prod"}))
    skipped = start(eng, role_template(resourceTags={"stage": "prod"}, mode="skip"))
    found = start(eng, role_template(resourceTags={"stage": "dev"}, mode="skip"))
    drive(eng)
    assert states(eng, store, failed) == ("failed", {"throttle": "cancelled"})
    assert states(eng, store, skipped) == ("completed", {"throttle": "skipped"})
    assert states(eng, store, found) == ("running", {"throttle": "running"})
    assert resolved_arns(eng, found) == [dev]


def test_an_unreachable_upstream_fails_the_experiment_naming_the_role(engine, store):
    # No --aws-endpoint and no network: tags can only be resolved by asking AWS, as the role.
    exp_id = start(engine, role_template(resourceTags={"env": "prod"}))
    drive(engine)
    e = store.get_experiment(exp_id)
    assert e.state.status == "failed"
    assert e.state.reason.startswith(f"Cannot assume the experiment role {ROLE_ARN} on the upstream: ")
    assert (e.state.error.code, e.state.error.location) == ("DependentServiceFailure", "roleArn")


# ---- matching -----------------------------------------------------------------------------


def test_role_targeting_through_learned_identities(engine, store, tmp_path, clock):
    exp_id = start(engine, role_template(arns=[APP_ROLE], parameters={"accessKeyIds": "AKIAEXPLICIT"}))
    drive(engine)
    assert engine.match(call(access_key="ASIAAPP")) == []  # unknown key
    assert engine.match(call(access_key=None)) == []
    engine.identities.learn("ASIAAPP", "arn:aws:sts::123456789012:assumed-role/app-role/session-1")
    engine.identities.learn("ASIAOTHER", "arn:aws:sts::123456789012:assumed-role/other/s")
    engine.identities.learn("ASIAELSEWHERE", "arn:aws:sts::999999999999:assumed-role/app-role/s")
    faults = engine.match(call(access_key="ASIAAPP"))
    assert [(f.source, f.spec.kind, f.spec.error_kind) for f in faults] == [(f"{exp_id}/throttle", "error", "throttle")]
    assert engine.match(call(access_key="ASIAOTHER")) == []
    assert engine.match(call(access_key="ASIAELSEWHERE")) == []  # same name, other account
    assert len(engine.match(call(access_key="AKIAEXPLICIT"))) == 1
    # Learned identities are saved by the engine's next step (off the event loop) and survive
    # a restart.
    drive(engine)
    again = make_engine(store, tmp_path, clock)
    again.resume()
    assert len(again.match(call(access_key="ASIAAPP"))) == 1


def test_actions_without_targets_apply_to_every_caller(engine):
    start(engine, template({"a": error()}))
    drive(engine)
    assert len(engine.match(call(access_key="ANY"))) == 1
    assert len(engine.match(call(access_key=None))) == 1


def test_service_operation_and_region_filters(engine):
    start(engine, template({"a": error(service="dynamodb", operations="PutItem,GetItem", region="eu-west-1"),
                            "b": error(service="monitoring")}))
    drive(engine)
    assert len(engine.match(call(region="eu-west-1"))) == 1
    assert engine.match(call(region="us-east-1")) == []
    assert engine.match(call(operation="Query", region="eu-west-1")) == []
    assert engine.match(call(operation=None, region="eu-west-1")) == []
    assert engine.match(call("s3")) == []
    # A rule written with the signing name matches calls whose botocore name differs.
    assert len(engine.match(call("monitoring", "PutMetricData", api="cloudwatch"))) == 1


def test_latency_first_then_only_the_first_error(engine):
    exp_id = start(engine, template({
        "err": error(), "lat": latency(latencyMilliseconds="50", jitterMilliseconds="10"),
        "drop": {"actionId": "fisproxy:api:disconnect", "parameters": {"service": "dynamodb"}},
        "all": {"actionId": "fisproxy:api:latency", "parameters": {"latencyMilliseconds": "7"}},
    }))
    drive(engine)
    faults = engine.match(call())
    kinds = [f.spec.kind for f in faults]
    assert kinds == ["latency", "latency", "error"]
    assert faults[2].source == f"{exp_id}/err"  # the first error-like rule wins, the disconnect is dropped
    lat = {f.source: f.latency_ms for f in faults if f.spec.kind == "latency"}
    assert lat[f"{exp_id}/all"] == 7.0
    assert 50.0 <= lat[f"{exp_id}/lat"] <= 60.0
    assert [f.spec.kind for f in engine.match(call("sqs"))] == ["latency"]  # any-service rule


def run_sampling(store: Store, tmp_path: Path, clock: Clock, seed: int, n: int) -> list[bool]:
    eng = make_engine(store, tmp_path, clock, seed=seed)
    exp_id = start(eng, template({"a": error(percentage="30")}))
    drive(eng)
    hits = [bool(eng.match(call())) for _ in range(n)]
    eng.stop_experiment(exp_id)
    drive(eng)
    return hits


def test_percentage_sampling_reproducible_and_roughly_right(store, tmp_path, clock):
    a = run_sampling(store, tmp_path, clock, 42, 2000)
    b = run_sampling(store, tmp_path, clock, 42, 2000)
    c = run_sampling(store, tmp_path, clock, 43, 2000)
    assert a == b and a != c
    assert 0.25 * 2000 <= sum(a) <= 0.35 * 2000
    assert 0.25 * 2000 <= sum(c) <= 0.35 * 2000


def test_stopped_event_set_when_action_ends(engine, clock):
    start(engine, template({"a": error(duration="PT1S"), "b": latency()}))
    drive(engine)
    by_action = {f.source.split("/")[1]: f.stopped for f in engine.match(call())}
    assert not any(ev.is_set() for ev in by_action.values())
    clock.advance(1)
    drive(engine)
    assert by_action["a"].is_set() and not by_action["b"].is_set()
    assert [f.spec.kind for f in engine.match(call())] == ["latency"]


# ---- durability ---------------------------------------------------------------------------


def test_resume_keeps_the_planned_times(store, tmp_path, clock):
    """A restart keeps every planned end (issue 20, point 10): the downtime counts, as it does
    for the instances a resource action keeps stopped."""
    eng = make_engine(store, tmp_path, clock)
    exp_id = start(eng, template({"a": latency(duration="PT10S"), "b": {**wait("PT5S"), "startAfter": ["a"]}}))
    done = start(eng, template({"w": wait("PT1S")}))
    for _ in range(4):
        drive(eng)
        clock.advance(1)
    drive(eng)  # t = 4; then the process dies without close()
    assert states(eng, store, done)[0] == "completed"

    clock.advance(3)  # downtime: t = 7
    eng2 = make_engine(store, tmp_path, clock)
    assert eng2.match(call()) == []  # nothing active before resume
    eng2.resume()
    assert eng2.active_count() == 1
    assert states(eng2, store, done)[0] == "completed"  # terminal ones read as they ended
    faults = eng2.match(call())
    assert [f.source for f in faults] == [f"{exp_id}/a"]  # applied at once, before the lease is ours
    clock.advance(2.9)  # t = 9.9
    drive(eng2)
    assert states(eng2, store, exp_id)[1] == {"a": "running", "b": "pending"}
    clock.advance(0.2)  # t = 10.1: a's planned end, not shifted by the downtime
    drive(eng2)
    assert states(eng2, store, exp_id)[1] == {"a": "completed", "b": "running"}
    assert faults[0].stopped.is_set()
    clock.advance(5)
    drive(eng2)
    assert states(eng2, store, exp_id) == ("completed", {"a": "completed", "b": "completed"})


def test_resume_after_a_long_downtime_ends_what_is_past_its_end(store, tmp_path, clock):
    eng = make_engine(store, tmp_path, clock)
    exp_id = start(eng, template({"a": latency(duration="PT10S")}))
    drive(eng)
    clock.advance(100)
    eng2 = make_engine(store, tmp_path, clock)
    eng2.resume()
    assert eng2.match(call()) == []  # past its planned end: not applied again, even for a moment
    drive(eng2)
    assert states(eng2, store, exp_id) == ("completed", {"a": "completed"})


def test_resume_finishes_a_stop(store, tmp_path, clock):
    eng = make_engine(store, tmp_path, clock)
    exp_id = start(eng, template({"a": latency()}))
    drive(eng)
    eng.stop_experiment(exp_id)
    eng2 = make_engine(store, tmp_path, clock)
    eng2.resume()
    assert eng2.match(call()) == []
    drive(eng2)
    assert states(eng2, store, exp_id) == ("stopped", {"a": "stopped"})


# ---- stop conditions and log delivery (moto) -----------------------------------------------


def alarm(url: str, name: str) -> str:
    cw = upstream.client("cloudwatch", "us-east-1", url)
    cw.put_metric_alarm(AlarmName=name, MetricName="Errors", Namespace="App", Statistic="Sum", Period=60,
                        EvaluationPeriods=1, Threshold=1.0, ComparisonOperator="GreaterThanThreshold")
    return cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]["AlarmArn"]


def set_alarm(url: str, name: str, state: str) -> None:
    upstream.client("cloudwatch", "us-east-1", url).set_alarm_state(
        AlarmName=name, StateValue=state, StateReason="test")


def poll_stop_conditions(eng: Engine) -> None:
    """What the engine's upstream loop does every few seconds."""
    eng.on_alarms(eng.poller.firing({a for arns in eng.watched_alarms().values() for a in arns}))


def test_alarm_stop_condition_stops_the_experiment(store, tmp_path, clock, moto_url):
    arn = alarm(moto_url, "orders-errors")
    eng = make_engine(store, tmp_path, clock, upstream_endpoint=moto_url)
    t = template({"a": error()}, stopConditions=[{"source": "aws:cloudwatch:alarm", "value": arn}])
    exp_id = start(eng, t)
    drive(eng)
    poll_stop_conditions(eng)
    assert states(eng, store, exp_id)[0] == "running"
    set_alarm(moto_url, "orders-errors", "ALARM")
    poll_stop_conditions(eng)
    e = store.get_experiment(exp_id)
    assert (e.state.status, e.state.reason) == ("stopping", "Experiment halted by stop condition.")
    assert eng.match(call()) == []
    drive(eng)
    e = store.get_experiment(exp_id)
    assert (e.state.status, e.state.reason) == ("stopped", "Experiment halted by stop condition.")
    end = store.logs(exp_id)[-1]
    assert end["log_type"] == "experiment-end" and arn in end["details"]["error_information"]


def wait_for(check: Any, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_background_loops_poll_alarms_on_their_own_thread_and_stop_the_experiment(store, tmp_path, moto_url):
    arn = alarm(moto_url, "latency-alarm")
    eng = Engine(store, state_dir=tmp_path, rng=random.Random(1), upstream_endpoint=moto_url)
    polled_on: set[str] = set()
    firing = eng.poller.firing

    def spy(arns: Any) -> set[str]:
        polled_on.add(threading.current_thread().name)
        return firing(arns)

    eng.poller.firing = spy  # type: ignore[method-assign]
    t = template({"a": latency(), "w": wait("PT1H")},
                 stopConditions=[{"source": "aws:cloudwatch:alarm", "value": arn}])
    exp_id = start(eng, t)
    loops = EngineLoops(eng, alarm_poll_seconds=0.2)
    loops.start()
    try:
        wait_for(lambda: len(eng.match(call())) == 1, "the latency action to run")
        set_alarm(moto_url, "latency-alarm", "ALARM")
        wait_for(lambda: store.get_experiment(exp_id).state.status == "stopped", "stopped")
        assert states(eng, store, exp_id)[1] == {"a": "stopped", "w": "stopped"}
        assert polled_on == {"fisproxy-upstream"}
    finally:
        loops.stop()
        eng.close()


def ended_with_s3_logs(store, tmp_path, moto_url, bucket):
    """An engine whose one-second experiment, logging to S3 `bucket`, has just ended."""
    s3 = upstream.client("s3", "us-east-1", moto_url)
    s3.create_bucket(Bucket=bucket)
    clock = Clock(time.time())
    eng = make_engine(store, tmp_path, clock, upstream_endpoint=moto_url)
    t = template({"w": wait("PT1S")},
                 logConfiguration={"s3Configuration": {"bucketName": bucket, "prefix": "fis"},
                                   "logSchemaVersion": 2})
    exp_id = start(eng, t)
    drive(eng)
    clock.advance(1)
    drive(eng)
    return eng, exp_id, s3, clock


def test_logs_delivered_to_s3_at_the_end(store, tmp_path, moto_url):
    eng, exp_id, s3, _ = ended_with_s3_logs(store, tmp_path, moto_url, "engine-logs")
    assert eng.deliveries.pending() == [exp_id]
    assert eng.deliveries.deliver(exp_id) == []
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="engine-logs")["Contents"]]
    assert len(keys) == 1 and keys[0].startswith(f"fis/AWSLogs/123456789012/fis/us-east-1/{exp_id}/")
    body = s3.get_object(Bucket="engine-logs", Key=keys[0])["Body"].read().decode().splitlines()
    assert [json.loads(line) for line in body] == store.logs(exp_id)


def test_background_loops_resolve_tagged_roles_through_upstream_iam(store, tmp_path, moto_url):
    iam = upstream.client("iam", "us-east-1", moto_url)
    arn = iam.create_role(RoleName="checkout", AssumeRolePolicyDocument="{}",
                          Tags=[{"Key": "team", "Value": "checkout"}])["Role"]["Arn"]
    eng = Engine(store, state_dir=tmp_path, rng=random.Random(1), upstream_endpoint=moto_url)
    exp_id = start(eng, role_template(resourceTags={"team": "checkout"}))
    loops = EngineLoops(eng)
    loops.start()
    try:
        wait_for(lambda: store.get_experiment(exp_id).state.status != "initiating", "resolution")
        assert store.get_experiment(exp_id).state.status == "running"
        assert resolved_arns(eng, exp_id) == [arn]
    finally:
        loops.stop()
        eng.close()


def test_log_delivery_survives_a_crash(store, tmp_path, moto_url):
    """An experiment that ended but whose logs had not gone upstream yet when the proxy died
    gets them delivered after the restart, once."""
    eng, exp_id, s3, clock = ended_with_s3_logs(store, tmp_path, moto_url, "crash-logs")
    assert eng.deliveries.pending() == [exp_id]
    # "crash": this engine never delivers; a new one on the same store takes over.
    again = make_engine(store, tmp_path, clock, upstream_endpoint=moto_url)
    again.resume()
    assert again.deliveries.pending() == [exp_id]
    loops = EngineLoops(again)
    loops.start()
    try:
        wait_for(lambda: not again.deliveries.pending() and store.get_doc("log-delivery", exp_id) is None,
                 "log delivery")
    finally:
        loops.stop()
    assert len(s3.list_objects_v2(Bucket="crash-logs")["Contents"]) == 1
    third = make_engine(store, tmp_path, clock, upstream_endpoint=moto_url)
    third.resume()
    assert third.deliveries.pending() == []  # delivered once, forgotten


# ---- storage failures (a full disk) ---------------------------------------------------------


class FullDisk:
    """The real store, except that writes fail while `full` is set, as SQLite does on a full disk."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.full = False
        self.experiment_writes = 0
        self.doc_writes: list[tuple[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def _check(self) -> None:
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")

    def put_experiment(self, e: Any, runtime: Any = None) -> None:
        self._check()
        self.experiment_writes += 1
        self._store.put_experiment(e, runtime)

    def put_doc(self, kind: str, key: str, value: Any) -> None:
        self._check()
        self.doc_writes.append((kind, key))
        self._store.put_doc(kind, key, value)

    def append_log(self, experiment_id: str, record: Any) -> None:
        self._check()
        self._store.append_log(experiment_id, record)


def test_a_stop_that_cannot_be_saved_ends_the_faults_and_stays_stoppable(store, tmp_path, clock):
    disk = FullDisk(store)
    eng = make_engine(disk, tmp_path, clock)  # type: ignore[arg-type]
    exp_id = start(eng, template({"a": error()}))
    drive(eng)
    faults = eng.match(call())
    assert len(faults) == 1
    disk.full = True
    with pytest.raises(SaveError):
        eng.stop_experiment(exp_id)
    # The user pressed stop: the faults end now, saved or not.
    assert eng.match(call()) == [] and faults[0].stopped.is_set()
    for _ in range(3):
        clock.advance(0.1)
        drive(eng)  # cannot save `stopped` either: the experiment is kept, not forgotten
    assert store.get_experiment(exp_id).state.status == "running"  # what the disk still says
    with pytest.raises(SaveError):
        eng.stop_experiment(exp_id)  # still stoppable; still cannot save
    disk.full = False
    # A second stop saves it: ended meanwhile in memory (the ticks went on), so saved as ended.
    assert eng.stop_experiment(exp_id).state.status == "stopped"
    assert store.get_experiment(exp_id).state.status == "stopped"
    drive(eng)
    assert states(eng, store, exp_id) == ("stopped", {"a": "stopped"})
    # And after a restart its faults do not come back.
    again = make_engine(store, tmp_path, clock)
    again.resume()
    assert again.active_count() == 0 and again.match(call()) == []


def test_an_unsaved_stop_is_saved_by_the_next_tick_once_the_disk_has_room(store, tmp_path, clock):
    disk = FullDisk(store)
    eng = make_engine(disk, tmp_path, clock)  # type: ignore[arg-type]
    exp_id = start(eng, template({"a": latency()}))
    drive(eng)
    disk.full = True
    with pytest.raises(SaveError):
        eng.stop_experiment(exp_id)
    drive(eng)
    disk.full = False
    drive(eng)
    assert states(eng, store, exp_id) == ("stopped", {"a": "stopped"})
    assert eng.active_count() == 0


def test_a_start_that_cannot_be_saved_is_not_kept(store, tmp_path, clock):
    disk = FullDisk(store)
    eng = make_engine(disk, tmp_path, clock)  # type: ignore[arg-type]
    disk.full = True
    with pytest.raises(SaveError):
        start(eng, template({"a": error()}))
    disk.full = False
    drive(eng)
    assert eng.active_count() == 0 and eng.match(call()) == [] and store.list_experiments() == []


def test_nothing_is_written_while_nothing_changes_whatever_the_number_of_experiments(store, tmp_path, clock):
    disk = FullDisk(store)
    eng = make_engine(disk, tmp_path, clock)  # type: ignore[arg-type]
    for i in range(100):
        eng.start_experiment(template({f"a{i}": latency()}), region="us-east-1",
                             tags={}, actions_mode="run-all")
    drive(eng)
    assert eng.active_count() == 100
    disk.experiment_writes = 0
    disk.doc_writes.clear()
    for _ in range(50):  # five seconds of ticks with nothing changing
        clock.advance(0.1)
        drive(eng)
    assert disk.experiment_writes == 0  # no experiment is rewritten to say it is alive
    assert disk.doc_writes == []  # nor a heartbeat: planned ends are absolute, nothing to shift
