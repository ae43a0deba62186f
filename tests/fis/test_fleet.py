"""Several engines on one store are one FIS: each applies every running action's faults, one runs
each experiment's schedule (its lease), a stop asked anywhere ends it everywhere, and when the
schedule's holder dies another takes over. Real stores (the SQLite file shared by two
connections, as `--workers` does; Redis where redis-server is installed), engines driven by
their own `tick`/`sync` calls, real lease expiry."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fisproxy.aws.call import AwsCall
from fisproxy.fis.engine import Engine
from fisproxy.fis.fleet import lease_name
from fisproxy.fis.loops import drive
from fisproxy.fis.models import ExperimentTemplate
from fisproxy.fis.ports import StoreUnavailable
from fisproxy.fis.proxyfaults import Placement
from fisproxy.store import SqliteStore
from tests.helpers import wait_until

ROLE = "arn:aws:iam::123456789012:role/fis"
TTL = 0.6


def template(*actions: tuple[str, dict[str, Any]]) -> ExperimentTemplate:
    return ExperimentTemplate.model_validate({
        "id": "EXTfleet", "description": "fleet", "roleArn": ROLE, "targets": {},
        "stopConditions": [{"source": "none"}], "actions": dict(actions)})


def throttle(duration: str | None = None, **extra: Any) -> tuple[str, dict[str, Any]]:
    params = {"service": "dynamodb", **({"duration": duration} if duration else {})}
    return "throttle", {"actionId": "aws:fis:inject-api-throttle-error", "parameters": params, **extra}


CALL = AwsCall("dynamodb", "us-east-1", "PutItem", "dynamodb", "json", "AKIAX")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[list[Engine]]:
    """Three engines, each with its own connection to one SQLite file."""
    stores = [SqliteStore(tmp_path / "state.sqlite") for _ in range(3)]
    engines = [Engine(s, state_dir=tmp_path, rng=random.Random(i), proxy_id=f"proxy-{'abc'[i]}",
                      lease_ttl_seconds=TTL) for i, s in enumerate(stores)]
    yield engines
    for engine in engines:
        engine.close()
    for store in stores:
        store.close()


def step(*engines: Engine) -> None:
    for engine in engines:
        engine.follower.sync()
        drive(engine)


def status(engine: Engine, experiment_id: str) -> str:
    e = engine._store.get_experiment(experiment_id)
    assert e is not None
    return e.state.status


def test_a_start_on_one_engine_faults_calls_on_every_engine(fleet: list[Engine]) -> None:
    a, b, c = fleet
    exp = a.start_experiment(template(throttle()), region="us-east-1", tags={}, actions_mode="run-all")
    step(a, b, c)
    assert status(a, exp.id) == "running"
    for engine in fleet:
        assert [f.source for f in engine.match(CALL)] == [f"{exp.id}/throttle"], engine.proxy_id


def test_a_stop_on_any_engine_ends_the_faults_everywhere(fleet: list[Engine]) -> None:
    a, b, c = fleet
    exp = a.start_experiment(template(throttle()), region="us-east-1", tags={}, actions_mode="run-all")
    step(a, b, c)
    faults_on_a = a.match(CALL)
    answer = c.stop_experiment(exp.id)  # c does not run the schedule: it asks a, through the store
    assert answer.state.status == "stopping"
    assert c.match(CALL) == []  # at once where it was asked
    step(a)  # a's change feed would call sync; the tick ends it
    assert status(a, exp.id) == "stopped" and a.match(CALL) == [] and faults_on_a[0].stopped.is_set()
    step(b, c)
    assert b.match(CALL) == [] and c.match(CALL) == []
    assert b.active_count() == 0 and c.active_count() == 0


def test_exactly_one_engine_runs_each_schedule(fleet: list[Engine]) -> None:
    a, b, c = fleet
    exp = a.start_experiment(template(throttle("PT1H")), region="us-east-1", tags={}, actions_mode="run-all")
    for _ in range(3):
        step(a, b, c)
    owners = [e.proxy_id for e in fleet if e._runs[exp.id].owned]
    assert owners == ["proxy-a"]
    assert a._store.lease_holder(f"experiment/{exp.id}") == "proxy-a"


def test_when_the_schedules_holder_dies_another_takes_over_and_finishes_on_time(fleet: list[Engine]) -> None:
    a, b, c = fleet
    exp = a.start_experiment(template(throttle("PT2S")), region="us-east-1", tags={}, actions_mode="run-all")
    step(a, b, c)
    started = time.time()
    assert status(a, exp.id) == "running"
    # a dies: it neither ticks nor renews its lease any more. b and c go on.
    wait_until(lambda: (step(b, c), any(e._runs.get(exp.id) and e._runs[exp.id].owned for e in (b, c)))[1],
               10, "a takeover")
    owner = next(e for e in (b, c) if e._runs[exp.id].owned)
    assert owner.match(CALL)  # the faults never stopped on the survivors
    wait_until(lambda: (step(b, c), status(owner, exp.id) == "completed")[1], 10, "completion")
    took = time.time() - started
    assert 1.5 <= took <= 3.5, took  # on time: the planned end, not restarted from the takeover
    e = owner._store.get_experiment(exp.id)
    assert e.actions["throttle"].state.status == "completed"
    step(b, c)
    assert b.match(CALL) == [] and c.match(CALL) == []


def test_mirrors_end_faults_at_the_planned_end_even_if_the_store_says_nothing(fleet: list[Engine]) -> None:
    a, b, _ = fleet
    exp = a.start_experiment(template(throttle("PT1S")), region="us-east-1", tags={}, actions_mode="run-all")
    step(a, b)
    assert b.match(CALL)
    time.sleep(1.1)
    a._store.acquire_lease(f"experiment/{exp.id}", "proxy-a", 60)  # a holds on, but says nothing
    drive(b)  # no sync: the holder never said it ended (stuck, or the store is unreachable)
    assert status(a, exp.id) == "running"  # nobody has ended it in the store
    assert b.match(CALL) == []  # yet b ended its faults on time


def test_an_availability_zone_outage_hits_only_the_proxies_placed_there(tmp_path: Path) -> None:
    stores = [SqliteStore(tmp_path / "az.sqlite") for _ in range(2)]
    a = Engine(stores[0], state_dir=tmp_path, rng=random.Random(0), proxy_id="in-1a",
               placement=Placement(az="us-east-1a", az_id="use1-az1"))
    b = Engine(stores[1], state_dir=tmp_path, rng=random.Random(1), proxy_id="in-1b",
               placement=Placement(az="us-east-1b", az_id="use1-az2"))
    try:
        outage = ("outage", {"actionId": "fisproxy:api:disconnect",
                             "parameters": {"mode": "reset", "availabilityZones": "use1-az1"}})
        exp = b.start_experiment(template(outage), region="us-east-1", tags={}, actions_mode="run-all")
        step(b, a)
        assert status(b, exp.id) == "running"
        assert [f.spec.mode for f in a.match(CALL)] == ["reset"]  # placed in the zone
        assert b.match(CALL) == []  # elsewhere: calls go through
    finally:
        for engine in (a, b):
            engine.close()
        for store in stores:
            store.close()


def test_a_stop_asked_where_the_schedule_does_not_run_keeps_the_faults_off_there(fleet: list[Engine]) -> None:
    """Issue 20, point 12: the faults a stop ended on a proxy that only mirrors the experiment
    stay off at its next steps, whether or not the holder has ended it yet."""
    a, b, c = fleet
    exp = a.start_experiment(template(throttle()), region="us-east-1", tags={}, actions_mode="run-all")
    step(a, b, c)
    c.stop_experiment(exp.id)
    for _ in range(3):
        step(b, c)  # a (the holder) has not acted yet
        assert c.match(CALL) == [], "the stop was undone by a later step"
        assert b.match(CALL) == [], "b read the stop request: its faults end too"


def test_an_end_saved_by_another_holder_ends_the_faults_of_one_that_still_thinks_it_holds(
        fleet: list[Engine]) -> None:
    """Issue 20, point 12, a Redis restarted without its data: the lease is gone, so another
    proxy takes the schedule over while the first still thinks it holds it; the new holder
    stops the experiment and lets the lease go, and the first takes the free lease again. The
    end in the store is final: the first proxy's faults end too (they went on for the rest of
    the experiment's duration)."""
    a, b, _ = fleet
    exp = a.start_experiment(template(throttle("PT10M")), region="us-east-1", tags={}, actions_mode="run-all")
    step(a, b)
    assert b.match(CALL) and a.match(CALL)
    b._store.release_lease(lease_name(exp.id), a.proxy_id)  # the store lost it
    wait_until(lambda: (drive(b), b._runs[exp.id].owned)[1], 5, "b to take the schedule over")
    b.stop_experiment(exp.id)
    wait_until(lambda: (drive(b), status(b, exp.id) == "stopped")[1], 5, "b to end the experiment")
    for _ in range(3):
        step(a)
    assert a.match(CALL) == [], "the holder that lost its lease kept the faults of an ended experiment"
    assert status(a, exp.id) == "stopped"


class Outage:
    """The real store, with reads refused while `down` is set (a Redis that is not answering)."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.down = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name.startswith(("get_", "list_")) and callable(attr):
            def call(*args: Any, **kwargs: Any) -> Any:
                if self.down:
                    raise StoreUnavailable("the store is down (test)")
                return attr(*args, **kwargs)
            return call
        return attr


def test_a_change_missed_while_the_store_was_down_is_read_as_soon_as_it_answers(tmp_path: Path) -> None:
    """Issue 20, point 12: a change notice whose read failed (the store was down) is made up for
    by the next persist (0.1 s later in the loops), not by the periodic resync 10 s later."""
    stores = [SqliteStore(tmp_path / "outage.sqlite") for _ in range(2)]
    flaky = Outage(stores[1])
    a = Engine(stores[0], state_dir=tmp_path, rng=random.Random(0), proxy_id="a", lease_ttl_seconds=TTL)
    b = Engine(flaky, state_dir=tmp_path, rng=random.Random(1), proxy_id="b", lease_ttl_seconds=TTL)  # type: ignore[arg-type]
    try:
        exp = a.start_experiment(template(throttle()), region="us-east-1", tags={}, actions_mode="run-all")
        step(a, b)
        assert b.match(CALL)
        a.stop_experiment(exp.id)
        drive(a)  # stopped and saved on a
        flaky.down = True
        b.follower.on_change("experiment", exp.id)  # the notice arrives while b cannot read the store
        assert b.match(CALL)  # b could not know yet
        flaky.down = False
        b.persist()  # what b's store thread does next, 0.1 s later
        assert b.match(CALL) == [] and b.active_count() == 0
    finally:
        for engine in (a, b):
            engine.close()
        for store in stores:
            store.close()


def test_the_store_restarted_without_its_data_gets_the_running_experiment_again(tmp_path: Path) -> None:
    """Issue 20, point 12: an experiment the store lost (a Redis restarted without its data) is
    saved again by the proxy that runs it at the next resync, so a stop asked anywhere finds it."""
    stores = [SqliteStore(tmp_path / "lost.sqlite") for _ in range(2)]
    a = Engine(stores[0], state_dir=tmp_path, rng=random.Random(0), proxy_id="a", lease_ttl_seconds=TTL)
    b = Engine(stores[1], state_dir=tmp_path, rng=random.Random(1), proxy_id="b", lease_ttl_seconds=TTL)
    try:
        exp = a.start_experiment(template(throttle()), region="us-east-1", tags={}, actions_mode="run-all")
        step(a, b)
        stores[0]._conn.run("DELETE FROM experiments")  # the store's data is gone
        a.follower.sync()  # the resync after the store came back
        a.persist()
        assert status(a, exp.id) == "running"
        b.stop_experiment(exp.id)
        step(a, b)
        assert status(a, exp.id) == "stopped"
        assert a.match(CALL) == [] and b.match(CALL) == []
    finally:
        for engine in (a, b):
            engine.close()
        for store in stores:
            store.close()


def test_an_experiment_ended_by_its_holder_is_not_taken_over_by_a_stale_mirror(fleet: list[Engine]) -> None:
    """The holder ends the experiment and lets its lease go; a mirror that has not heard of the
    end yet gets the free lease at its next claim: it must not resume the ended experiment (and
    save its stale copy over the holder's `stopped`)."""
    a, b, _ = fleet
    exp = a.start_experiment(template(throttle()), region="us-east-1", tags={}, actions_mode="run-all")
    step(a, b)  # b mirrors it, running
    a.stop_experiment(exp.id)
    drive(a)  # ended, saved, forgotten: the lease is free
    assert status(a, exp.id) == "stopped" and a._store.lease_holder(f"experiment/{exp.id}") is None
    time.sleep(TTL * 1.1)  # b's first claim is due (a lease's lifetime after it heard of it)
    drive(b)  # before any sync: b takes the free lease, and must see the end
    assert status(b, exp.id) == "stopped"
    assert b.active_count() == 0 and not b.match(CALL)
