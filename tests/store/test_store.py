"""The store contract, run on both backends (SQLite and a real Redis): models round-trip in
creation order, runtime kept beside experiments, docs, logs and request records; and both
classes implement every method of `StoreBackend` with the same signature."""

from __future__ import annotations

import inspect
import threading
import time

import pytest

from fisproxy.fis.models import ExperimentState
from fisproxy.fis.runstate import RunState
from fisproxy.store import StoreBackend
from fisproxy.store.redis import RedisStore
from fisproxy.store.sqlite import SqliteStore
from tests.store.conftest import OpenStore
from tests.store.samples import T0, T, make_experiment, make_template, rec


def _protocol_methods() -> dict[str, inspect.Signature]:
    names = {n for cls in StoreBackend.__mro__ if cls is not object
             for n, v in vars(cls).items() if callable(v) and not n.startswith("_")}
    return {n: inspect.signature(getattr(StoreBackend, n)) for n in sorted(names)}


@pytest.mark.parametrize("cls", [SqliteStore, RedisStore])
def test_backend_implements_every_method_of_the_interface(cls: type) -> None:
    methods = _protocol_methods()
    assert {"put_template", "acquire_lease", "subscribe", "append_requests", "register_proxy",
            "incr_counters", "close"} <= set(methods)
    for name, signature in methods.items():
        assert hasattr(cls, name), f"{cls.__name__} lacks {name}"
        assert inspect.signature(getattr(cls, name)) == signature, name


def test_templates_round_trip_in_creation_order(store: StoreBackend) -> None:
    a, b, c = make_template("EXTa"), make_template("EXTb"), make_template("EXTc")
    for t in (b, a, c):
        store.put_template(t)
    assert [t.id for t in store.list_templates()] == ["EXTb", "EXTa", "EXTc"]
    assert store.get_template("EXTa") == a
    assert store.get_template("EXTa").creation_time == T  # type: ignore[union-attr]
    store.put_template(make_template("EXTb", "changed"))  # an update keeps its place
    assert [t.id for t in store.list_templates()] == ["EXTb", "EXTa", "EXTc"]
    assert store.get_template("EXTb").description == "changed"  # type: ignore[union-attr]
    store.delete_template("EXTa")
    assert store.get_template("EXTa") is None
    assert [t.id for t in store.list_templates()] == ["EXTb", "EXTc"]
    store.put_template(a)  # deleted and created again: last
    assert [t.id for t in store.list_templates()] == ["EXTb", "EXTc", "EXTa"]


def test_experiments_and_runtime(store: StoreBackend) -> None:
    e = make_experiment("EXP1")
    store.put_experiment(e, RunState(region="us-east-1", stop_condition="x"))
    assert store.get_experiment("EXP1") == e
    assert store.get_runtime("EXP1") == RunState(region="us-east-1", stop_condition="x")
    e.state = ExperimentState(status="completed", reason="Experiment completed.")
    store.put_experiment(e)  # no runtime: the stored one stays
    assert store.get_runtime("EXP1") == RunState(region="us-east-1", stop_condition="x")
    assert store.get_experiment("EXP1").state.status == "completed"  # type: ignore[union-attr]
    store.put_experiment(e, RunState(region="eu-west-1"))
    assert store.get_runtime("EXP1") == RunState(region="eu-west-1")
    store.put_experiment(make_experiment("EXP0"))
    assert [x.id for x in store.list_experiments()] == ["EXP1", "EXP0"]
    assert store.get_runtime("EXP0") is None
    assert store.get_experiment("nope") is None and store.get_runtime("nope") is None


def test_docs_and_logs(store: StoreBackend) -> None:
    store.put_doc("client-token", "a", {"id": "EXT1"})
    store.put_doc("client-token", "b", {"id": "EXT2"})
    store.put_doc("other", "a", {"x": 1})
    store.put_doc("client-token", "a", {"id": "EXT3"})
    assert store.get_doc("client-token", "a") == {"id": "EXT3"}
    assert store.list_docs("client-token") == {"a": {"id": "EXT3"}, "b": {"id": "EXT2"}}
    store.delete_doc("client-token", "a")
    assert store.get_doc("client-token", "a") is None and store.list_docs("nothing") == {}
    for i in range(3):
        store.append_log("EXP1", {"n": i})
    store.append_log("EXP2", {"n": 9})
    assert store.logs("EXP1") == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert store.logs("EXP3") == []


def test_docs_list_in_creation_order(store: StoreBackend) -> None:
    for key in ("z", "a", "m"):
        store.put_doc("k", key, {"key": key})
    store.put_doc("k", "z", {"key": "z", "again": True})  # an update keeps its place
    assert list(store.list_docs("k")) == ["z", "a", "m"]


def test_concurrent_writers_from_threads(store: StoreBackend) -> None:
    def write(k: int) -> None:
        for i in range(50):
            store.append_log("EXP", {"k": k, "i": i})
            store.put_doc("d", f"{k}-{i}", {"i": i})

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(store.logs("EXP")) == 200 and len(store.list_docs("d")) == 200


def test_two_stores_on_the_same_data_see_each_others_writes(open_backend: OpenStore) -> None:
    a, b = open_backend(), open_backend()
    a.put_template(make_template("EXT1"))
    b.put_experiment(make_experiment("EXP1"), RunState(region="r-1"))
    assert [t.id for t in b.list_templates()] == ["EXT1"]
    assert a.get_runtime("EXP1") == RunState(region="r-1")


# ---- request records ------------------------------------------------------------------------

def test_request_records_round_trip_in_time_order(store: StoreBackend) -> None:
    a = rec(T0 + 2, faults=("EXP1/throttle/error", "chaos/0/latency"), status=400,
            invocation_id="inv-1", attempt=1)
    b = rec(T0 + 1, operation=None, region=None, status=None, duration_ms=0.0)
    c = rec(T0 + 3, service="s3", operation="GetObject", invocation_id="inv-2", attempt=2)
    store.append_requests([a, b, c])
    assert store.requests_between(T0, T0 + 10) == [b, a, c]
    assert store.requests_between(T0 + 1, T0 + 2) == [b, a]  # both ends included
    assert store.requests_between(T0 + 3.5, T0 + 10) == []
    store.append_requests([])  # nothing to do


def test_request_records_at_the_same_time_keep_the_order_written(store: StoreBackend) -> None:
    first = [rec(T0, operation=f"Op{i}") for i in range(5)]
    store.append_requests(first)
    store.append_requests([rec(T0, operation="Later"), rec(T0 - 1, operation="Earlier")])
    got = [r.operation for r in store.requests_between(0, T0 + 1)]
    assert got == ["Earlier", "Op0", "Op1", "Op2", "Op3", "Op4", "Later"]
    # identical records are kept apart, not merged
    store.append_requests([rec(T0 + 5), rec(T0 + 5)])
    assert len(store.requests_between(T0 + 5, T0 + 5)) == 2


def test_many_request_records_read_back_whole_across_ties(store: StoreBackend) -> None:
    """More records than one read returns (Redis reads 10,000 at a time), with long runs of
    equal times across the page boundaries: every record once, in order."""
    records = [rec(T0 + i // 3000, duration_ms=float(i)) for i in range(25_000)]
    store.append_requests(records)
    got = store.requests_between(T0, T0 + 100)
    assert [r.duration_ms for r in got] == [float(i) for i in range(25_000)]
    assert len(store.requests_between(T0 + 2, T0 + 4)) == 9000


def test_old_request_records_are_deleted_in_batches(store: StoreBackend) -> None:
    store.append_requests([rec(T0 + i) for i in range(25)] + [rec(T0 + 100)])
    assert store.delete_requests_before(T0 + 20, batch=7) == 20
    assert [r.time for r in store.requests_between(0, T0 + 1000)] == [T0 + i for i in range(20, 25)] + [T0 + 100]
    assert store.delete_requests_before(T0) == 0
    assert store.delete_requests_before(T0 + 1000) == 6
    assert store.requests_between(0, T0 + 1000) == []


def test_a_shared_token_bucket_starts_full_and_refills_at_its_rate(open_backend: OpenStore) -> None:
    """fisproxy:api:rate-limit's fleet bucket: two stores on the same data take from one bucket,
    never more than the burst, then what the rate refills (capped at the burst)."""
    a, b = open_backend(), open_backend()
    slow = f"EXP{time.time_ns()}/slow"  # a rate too slow to refill anything during the test
    assert a.take_tokens(slow, 0.001, 5, 3, 60) == 3
    assert b.take_tokens(slow, 0.001, 5, 10, 60) == 2  # what was left of the burst
    assert a.take_tokens(slow, 0.001, 5, 10, 60) == 0
    fast = f"EXP{time.time_ns()}/fast"
    assert a.take_tokens(fast, 1000.0, 4, 10, 60) == 4
    time.sleep(0.02)  # 20 tokens' worth at 1000 a second
    assert b.take_tokens(fast, 1000.0, 4, 10, 60) == 4  # capped at the burst
