"""What keeps a proxy's steady cost on the store independent of history, on both backends: the
index of active experiments, the data version, each save announced with what was saved,
leases that say when they expire, heartbeats that only move an expiry, and a store written by
an earlier version brought up to date at open (issue 17)."""

from __future__ import annotations

import json
import queue
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from fisproxy.fis.ports import EXPERIMENT_CHANGES
from fisproxy.fis.runstate import RunState
from fisproxy.store import SqliteStore, StoreBackend
from fisproxy.store.redis import RedisStore
from tests.store.conftest import OpenStore
from tests.store.samples import T0, make_experiment, make_template, rec


def backend_of(request: pytest.FixtureRequest) -> str:
    return str(request.node.callspec.params["open_backend"])


def test_active_experiments_come_from_the_index_and_leave_it_when_they_end(store: StoreBackend) -> None:
    for i, status in enumerate(["running", "completed", "initiating", "stopped", "stopping", "pending"]):
        store.put_experiment(make_experiment(f"EXP{i}", status), RunState())
    assert sorted(e.id for e in store.list_active_experiments()) == ["EXP0", "EXP2", "EXP4", "EXP5"]
    store.put_experiment(make_experiment("EXP0", "stopped"))
    store.put_experiment(make_experiment("EXP2", "failed"))
    assert sorted(e.id for e in store.list_active_experiments()) == ["EXP4", "EXP5"]
    assert len(store.list_experiments()) == 6  # history is kept, only not read by a resync


def test_the_data_version_moves_with_experiments_and_documents_only(store: StoreBackend) -> None:
    versions = [store.data_version()]

    def moved() -> bool:
        versions.append(store.data_version())
        return versions[-1] != versions[-2]

    store.put_template(make_template("EXT1"))
    store.append_log("EXP1", {"n": 1})
    store.append_requests([rec(T0)])
    store.acquire_lease("experiment/EXP1", "a", 5)
    store.register_proxy("p", {"version": "1"}, 5)
    store.incr_counters({("m", "x"): 1})
    store.publish_change("chaos", "config")
    assert not moved()  # none of these is what a resync reads
    store.put_experiment(make_experiment("EXP1"), RunState())
    assert moved()
    store.put_doc("stop-request", "EXP1", {"status": "stopped", "reason": "r"})
    assert moved()
    store.delete_doc("stop-request", "EXP1")
    assert moved()
    assert not moved()  # and it stays put while nothing is written
    written = [versions[0], *versions[2:5]]
    assert len(set(written)) == len(written)  # never a token seen before


def test_claim_lease_says_when_the_holders_lease_expires(open_backend: OpenStore) -> None:
    a, b = open_backend(), open_backend()
    assert a.claim_lease("experiment/EXP1", "a", 2.0) == 0.0
    assert a.claim_lease("experiment/EXP1", "a", 2.0) == 0.0  # renewed
    left = b.claim_lease("experiment/EXP1", "b", 2.0)
    assert 1.0 < left <= 2.0
    assert not b.acquire_lease("experiment/EXP1", "b", 2.0)
    assert b.lease_holder("experiment/EXP1") == "a"
    assert a.claim_lease("short", "a", 0.2) == 0.0
    time.sleep(0.3)
    assert b.claim_lease("short", "b", 5) == 0.0 and a.lease_holder("short") == "b"


def _subscribe(store: StoreBackend) -> queue.Queue[tuple[Any, ...]]:
    got: queue.Queue[tuple[Any, ...]] = queue.Queue()
    store.subscribe([EXPERIMENT_CHANGES, "identity"], lambda kind, key: got.put(("read", kind, key)),
                    lambda kind, key, data: got.put(("data", kind, key, data)))
    return got


def _next(got: queue.Queue[tuple[Any, ...]]) -> tuple[Any, ...]:
    while (notice := got.get(timeout=2))[2] is None:
        pass  # the resync notices of subscribing
    return notice


def test_a_save_is_announced_with_what_was_saved(open_backend: OpenStore, request: pytest.FixtureRequest) -> None:
    writer, reader = open_backend(), open_backend()
    got = _subscribe(reader)
    e = make_experiment("EXP1")
    writer.put_experiment(e, RunState(region="eu-west-1", revision=3))  # no publish_change: the save says it
    notice = _next(got)
    if backend_of(request) == "redis":  # one message carries it: nobody reads it back
        assert notice[:3] == ("data", EXPERIMENT_CHANGES, "EXP1")
        assert notice[3]["experiment"] == json.loads(json.dumps(e.wire(), default=str))
        assert RunState.model_validate(notice[3]["runtime"]) == RunState(region="eu-west-1", revision=3)
    else:  # a change row, written with the save: the subscriber reads the file
        assert notice == ("read", EXPERIMENT_CHANGES, "EXP1")
    writer.publish_change("identity", "AKIA1", {"principalArn": "arn:aws:iam::1:role/r"})
    notice = _next(got)
    assert notice == (("data", "identity", "AKIA1", {"principalArn": "arn:aws:iam::1:role/r"})
                      if backend_of(request) == "redis" else ("read", "identity", "AKIA1"))


def test_a_failed_save_is_not_announced(tmp_path: Path) -> None:
    """SQLite: the experiment and its change row are one transaction."""
    store = SqliteStore(tmp_path / "s.sqlite")
    try:
        rows = store._conn.run("SELECT COUNT(*) FROM changes")[0][0]
        store._conn.run("CREATE TRIGGER refuse BEFORE INSERT ON changes BEGIN SELECT RAISE(ABORT, 'full'); END")
        with pytest.raises(sqlite3.IntegrityError):
            store.put_experiment(make_experiment("EXP1"), RunState())
        assert store.get_experiment("EXP1") is None
        assert store._conn.run("SELECT COUNT(*) FROM changes")[0][0] == rows
    finally:
        store.close()


def test_a_sqlite_file_of_an_earlier_version_gets_the_active_index_at_open(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:  # the experiments table as earlier versions made it
        db.execute("CREATE TABLE experiments (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, "
                   "doc TEXT NOT NULL, runtime TEXT)")
        for i, status in enumerate(["running", "completed", "stopping"]):
            db.execute("INSERT INTO experiments (id, doc) VALUES (?, ?)",
                       (f"EXP{i}", json.dumps(make_experiment(f"EXP{i}", status).wire(), default=str)))
    stores = [SqliteStore(path), SqliteStore(path)]  # the second finds it done
    try:
        assert [e.id for e in stores[1].list_active_experiments()] == ["EXP0", "EXP2"]
        plan = " ".join(str(r) for r in stores[0]._conn.run(
            "EXPLAIN QUERY PLAN SELECT doc FROM experiments WHERE active ORDER BY seq"))
        assert "experiments_active" in plan  # the partial index: no scan of the history
    finally:
        for s in stores:
            s.close()


def test_a_redis_store_of_an_earlier_version_gets_the_active_index_at_open(redis_url: str) -> None:
    raw = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        for i, status in enumerate(["running", "completed", "stopping"]):  # as earlier versions wrote them
            raw.hset("fisproxy:experiment", f"EXP{i}", json.dumps(make_experiment(f"EXP{i}", status).wire(),
                                                                   default=str))
            raw.zadd("fisproxy:experiment:order", {f"EXP{i}": i})
        store = RedisStore(redis_url)
        try:
            assert sorted(e.id for e in store.list_active_experiments()) == ["EXP0", "EXP2"]
            assert raw.get("fisproxy:schema") == "2"
        finally:
            store.close()
        raw.srem("fisproxy:experiment:active", "EXP0")  # once done, not read again at open
        RedisStore(redis_url).close()
        assert raw.smembers("fisproxy:experiment:active") == {"EXP2"}
    finally:
        raw.close()


def test_a_heartbeat_only_moves_the_proxys_expiry(redis_url: str) -> None:
    store = RedisStore(redis_url)
    raw = redis.Redis.from_url(redis_url, decode_responses=True)

    def calls() -> dict[str, int]:
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in raw.info("commandstats").items()}

    try:
        store.register_proxy("p1", {"placement": {"az": "us-east-1a"}, "version": "1"}, 30)
        store.register_proxy("p1", {"placement": {"az": "us-east-1a"}, "version": "1"}, 30)  # (loads its script)
        first = store.list_proxies()[0]["last_seen"]
        before = calls()
        time.sleep(0.05)
        store.register_proxy("p1", {"placement": {"az": "us-east-1a"}, "version": "1"}, 30)
        spent = {k: v - before.get(k, 0) for k, v in calls().items() if v != before.get(k, 0)}
        assert spent == {"evalsha": 1, "time": 1, "zadd": 1, "info": 1}  # (info: ours)
        listed = store.list_proxies()
        assert listed[0]["placement"] == {"az": "us-east-1a"} and listed[0]["last_seen"] > first
        raw.delete("fisproxy:proxies", "fisproxy:proxy")  # swept, or a Redis that lost its data
        store.register_proxy("p1", {"placement": {"az": "us-east-1a"}, "version": "1"}, 30)
        assert [p["id"] for p in store.list_proxies()] == ["p1"]  # registered again, whole
        store.register_proxy("p1", {"placement": {"az": "us-east-1b"}, "version": "1"}, 30)
        assert store.list_proxies()[0]["placement"] == {"az": "us-east-1b"}  # new info: written
    finally:
        raw.close()
        store.close()
