"""How engines on one store keep in step at a cost that does not grow with history (issue 17):
a resync reads the data version and only what runs, notices carry what changed, saves are
applied in their order, and a proxy that mirrors an experiment asks for its lease about when it
would expire. Real SQLite stores shared by the engines; store calls counted by a wrapper."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fisproxy.fis.engine import Engine
from fisproxy.fis.loops import drive
from fisproxy.fis.ports import EXPERIMENT_CHANGES, StoreUnavailable
from fisproxy.fis.runstate import RunState
from fisproxy.store import SqliteStore
from tests.fis.test_fleet import CALL, TTL, step, template, throttle
from tests.store.samples import make_experiment


class Counted:
    """The real store; every call counted, reads refused while `down` is set."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.calls: Counter[str] = Counter()
        self.down = False
        self.left = 5.0  # what claim_lease answers when another proxy holds the lease

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if self.down and name.startswith(("get_", "list_", "data_version")):
                raise StoreUnavailable("the store is down (test)")
            return attr(*args, **kwargs)
        return call


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Engine, Engine, Counted]]:
    """Engine a, and engine b on a counted store; both on one SQLite file."""
    stores = [SqliteStore(tmp_path / "fleet.sqlite") for _ in range(2)]
    counted = Counted(stores[1])
    a = Engine(stores[0], state_dir=tmp_path, rng=random.Random(0), proxy_id="a", lease_ttl_seconds=TTL)
    b = Engine(counted, state_dir=tmp_path, rng=random.Random(1), proxy_id="b", lease_ttl_seconds=TTL)  # type: ignore[arg-type]
    yield a, b, counted
    for engine in (a, b):
        engine.close()
    for store in stores:
        store.close()


def test_a_resync_reads_only_the_data_version_while_nothing_changed(pair: tuple[Engine, Engine, Counted]) -> None:
    a, b, counted = pair
    for i in range(50):  # history
        a._store.put_experiment(make_experiment(f"OLD{i}", "completed"), RunState())
    running = a.start_experiment(template(throttle()), region="us-east-1", tags={}, actions_mode="run-all")
    step(a)
    b.follower.resync()
    assert b.match(CALL)  # the running one, found by the first resync
    counted.calls.clear()
    for _ in range(3):
        b.follower.resync()
    assert counted.calls == {"data_version": 3}  # nothing changed: one small read each
    a.stop_experiment(running.id)
    step(a)
    b.follower.resync()  # it moved: the active experiments and the one b knew, not the history
    assert b.match(CALL) == []
    assert counted.calls["list_active_experiments"] == 1 and "list_experiments" not in counted.calls
    assert counted.calls["get_experiment"] <= 1


def test_notices_that_carry_what_changed_are_taken_in_without_reading(
    pair: tuple[Engine, Engine, Counted],
) -> None:
    a, b, counted = pair
    exp = a.start_experiment(template(throttle()), region="us-east-1", tags={}, actions_mode="run-all")
    step(a)
    saved = {"experiment": json.loads(json.dumps(a._store.get_experiment(exp.id).wire(), default=str)),
             "runtime": json.loads(a._store.get_runtime(exp.id).model_dump_json())}  # type: ignore[union-attr]
    counted.down = True  # b cannot read anything
    counted.calls.clear()
    b.follower.on_notice(EXPERIMENT_CHANGES, exp.id, saved)  # a save, as Redis carries it
    assert [f.source for f in b.match(CALL)] == [f"{exp.id}/throttle"]
    b.follower.on_notice(EXPERIMENT_CHANGES, exp.id, {"stop": {"status": "stopped", "reason": "asked on c"}})
    assert b.match(CALL) == []  # a stop asked on another proxy: the faults end here too
    b.follower.on_notice("identity", "AKIAEXAMPLE", {"principalArn": "arn:aws:iam::123456789012:role/app"})
    assert b.identities.identities.principal_of("AKIAEXAMPLE") == "arn:aws:iam::123456789012:role/app"
    assert not any(name.startswith(("get_", "list_")) for name in counted.calls), counted.calls


def test_an_older_save_arriving_late_is_ignored_and_an_ended_experiment_stays_ended(
    pair: tuple[Engine, Engine, Counted],
) -> None:
    """A save's notice and a resync's read may cross: what was read last is not always newest."""
    a, b, _ = pair
    exp = a.start_experiment(template(throttle()), region="us-east-1", tags={}, actions_mode="run-all")
    step(a)

    def saved() -> dict[str, Any]:
        return {"experiment": json.loads(json.dumps(a._store.get_experiment(exp.id).wire(), default=str)),
                "runtime": json.loads(a._store.get_runtime(exp.id).model_dump_json())}  # type: ignore[union-attr]

    running = saved()
    a.stop_experiment(exp.id)
    step(a)
    stopped = saved()
    assert stopped["runtime"]["revision"] > running["runtime"]["revision"]
    b.follower.on_notice(EXPERIMENT_CHANGES, exp.id, running)
    assert b.match(CALL)
    b.follower.on_notice(EXPERIMENT_CHANGES, exp.id, stopped)
    assert b.match(CALL) == [] and b.active_count() == 0
    b.follower.on_notice(EXPERIMENT_CHANGES, exp.id, running)  # late: must not bring it back
    assert b.match(CALL) == [] and b.active_count() == 0


class Leases(Counted):
    """Another proxy holds every lease, `left` seconds more each time it is asked."""

    def claim_lease(self, name: str, holder: str, ttl_seconds: float) -> float:
        self.calls["claim_lease"] += 1
        return self.left


def test_a_mirror_asks_for_the_lease_about_when_it_would_expire(tmp_path: Path) -> None:
    """Not every half second: a thousand proxies mirroring one experiment were 2,000 lease
    scripts a second on Redis."""
    clock = [1_000.0]
    store = SqliteStore(tmp_path / "leases.sqlite")
    leases = Leases(store)
    a = Engine(store, state_dir=tmp_path, rng=random.Random(0), proxy_id="a")
    b = Engine(leases, state_dir=tmp_path, rng=random.Random(1), proxy_id="b",  # type: ignore[arg-type]
               clock=lambda: clock[0])
    try:
        exp = a.start_experiment(template(throttle()), region="us-east-1", tags={}, actions_mode="run-all")
        drive(a)
        b.follower.sync()
        assert b.match(CALL) and not b._runs[exp.id].owned
        for _ in range(600):  # a minute of the store thread, every 0.1 s
            clock[0] += 0.1
            b.persist()
        # First after a lease's lifetime (6 s), then every `left` (5 s) seconds: about 11.
        assert 9 <= leases.calls["claim_lease"] <= 13, leases.calls
        leases.left = 0.0  # the holder is gone: b takes the schedule over at its next ask
        for _ in range(60):
            clock[0] += 0.1
            b.persist()
        assert b._runs[exp.id].owned
    finally:
        a.close()
        b.close()
        store.close()


def test_a_restarted_proxy_asks_for_the_lease_at_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "restart.sqlite")
    try:
        a = Engine(store, state_dir=tmp_path, rng=random.Random(0), proxy_id="a", lease_ttl_seconds=TTL)
        exp = a.start_experiment(template(throttle()), region="us-east-1", tags={}, actions_mode="run-all")
        drive(a)
        a.close()  # stopped (its lease given up), the experiment still running
        b = Engine(store, state_dir=tmp_path, rng=random.Random(1), proxy_id="b", lease_ttl_seconds=TTL)
        b.resume()
        b.persist()
        assert b._runs[exp.id].owned
        b.close()
    finally:
        store.close()

