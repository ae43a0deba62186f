"""Coordination between the processes on one store, on both backends: leases (one holder at
a time, renewal, expiry, a killed holder's lease expiring), change notices (latency measured
and printed), the proxy registry and the shared counters."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from fisproxy.store import StoreBackend
from fisproxy.store.base import MAX_COUNTER_SERIES
from tests.helpers import clean_env
from tests.store.conftest import OpenStore

ROOT = Path(__file__).resolve().parents[2]


# ---- leases ---------------------------------------------------------------------------------

def test_lease_has_one_holder_at_a_time(open_backend: OpenStore) -> None:
    a, b = open_backend(), open_backend()
    assert a.lease_holder("run/EXP1") is None
    assert a.acquire_lease("run/EXP1", "proxy-a", 30)
    assert not b.acquire_lease("run/EXP1", "proxy-b", 30)
    assert b.lease_holder("run/EXP1") == "proxy-a"
    assert a.acquire_lease("run/EXP1", "proxy-a", 30)  # the holder renews
    b.release_lease("run/EXP1", "proxy-b")  # not the holder: nothing happens
    assert a.lease_holder("run/EXP1") == "proxy-a"
    assert b.acquire_lease("run/EXP2", "proxy-b", 30)  # another name is another lease
    a.release_lease("run/EXP1", "proxy-a")
    assert b.lease_holder("run/EXP1") is None
    assert b.acquire_lease("run/EXP1", "proxy-b", 30)
    assert a.lease_holder("run/EXP1") == "proxy-b"


def test_lease_expires_unless_renewed(open_backend: OpenStore) -> None:
    """Every check holds however slowly the machine runs: a lease is asserted held only within a
    TTL of 30 s, and free only after sleeping past its TTL (a sleep is never shorter)."""
    a, b = open_backend(), open_backend()
    assert a.acquire_lease("L", "a", 0.3)
    assert a.acquire_lease("L", "a", 30)  # renewed, for longer
    time.sleep(0.45)  # past the first TTL: the renewal holds it
    assert not b.acquire_lease("L", "b", 0.3)
    assert b.lease_holder("L") == "a"
    assert a.acquire_lease("L", "a", 0.3)  # renewed, for less: a renewal sets the expiry anew
    time.sleep(0.45)
    assert a.lease_holder("L") is None
    assert b.acquire_lease("L", "b", 30)
    assert not a.acquire_lease("L", "a", 30)  # the old holder cannot renew what it lost
    a.release_lease("L", "a")  # nor release it
    assert b.lease_holder("L") == "b"


def test_lease_race_between_many_threads_has_one_winner(open_backend: OpenStore) -> None:
    stores = [open_backend(), open_backend()]
    start = threading.Barrier(8)
    won: list[str] = []

    def contend(i: int) -> None:
        start.wait()
        if stores[i % 2].acquire_lease("race", f"h{i}", 30):
            won.append(f"h{i}")

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert stores[0].lease_holder("race") == won[0]


def test_lease_ttl_must_be_positive(store: StoreBackend) -> None:
    with pytest.raises(ValueError, match="TTL"):
        store.acquire_lease("L", "a", 0)


HOLDER_TTL = 2.0

_HOLDER = textwrap.dedent(f"""
    import sys, time
    from pathlib import Path
    from fisproxy.store import open_store
    s = open_store(sys.argv[1] or None, Path(sys.argv[2]))
    before = time.time()
    assert s.acquire_lease("run/EXP1", "doomed", {HOLDER_TTL})
    print("held", before, flush=True)
    time.sleep(600)
""")


def test_killed_holder_loses_its_lease_when_it_expires(
    open_backend: OpenStore, request: pytest.FixtureRequest, tmp_path: Path,
) -> None:
    """A holder killed with -9 never releases: its lease is free once its TTL has run out, not
    before. Neither bound depends on how fast the machine is: the lease was taken after
    `before`, so it cannot be free before `before + TTL`; the upper bound only catches a lease
    that never expires (or lives a TTL in the wrong unit)."""
    url = request.getfixturevalue("redis_url") if request.node.callspec.params["open_backend"] == "redis" else ""
    survivor = open_backend()
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url, str(tmp_path / "deep" / "dir" / "state.sqlite")],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env=clean_env(PYTHONPATH=str(ROOT)),
    )
    try:
        assert proc.stdout is not None
        word, before = proc.stdout.readline().split()
        assert word == "held"
        assert not survivor.acquire_lease("run/EXP1", "survivor", 5)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    killed = time.time()
    while not survivor.acquire_lease("run/EXP1", "survivor", 5):
        assert time.time() - killed < HOLDER_TTL + 10, "the dead holder's lease never expired"
        time.sleep(0.02)
    taken = time.time()
    print(f"lease taken over {taken - float(before):.2f} s after its holder took it (ttl {HOLDER_TTL} s), "
          f"{taken - killed:.2f} s after kill -9")
    assert taken >= float(before) + HOLDER_TTL - 0.01  # Redis keeps whole milliseconds
    assert survivor.lease_holder("run/EXP1") == "survivor"


# ---- change notices -------------------------------------------------------------------------

def _collector() -> tuple[queue.Queue[tuple[str, str | None, float, str]], object]:
    got: queue.Queue[tuple[str, str | None, float, str]] = queue.Queue()

    def callback(kind: str, key: str | None) -> None:
        got.put((kind, key, time.perf_counter(), threading.current_thread().name))

    return got, callback


def _next_change(got: queue.Queue, timeout: float = 2.0) -> tuple[str, str | None, float, str]:
    """The next notice that names a key (resync notices right after subscribing are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        kind, key, at, thread = got.get(timeout=max(0.01, deadline - time.monotonic()))
        if key is not None:
            return kind, key, at, thread


def test_changes_reach_another_store_in_order_on_a_background_thread(
    open_backend: OpenStore, request: pytest.FixtureRequest,
) -> None:
    backend = request.node.callspec.params["open_backend"]
    publisher, subscriber = open_backend(), open_backend()
    got, callback = _collector()
    subscriber.subscribe(["experiment", "chaos"], callback)  # type: ignore[arg-type]
    latencies = []
    for i in range(20):
        sent = time.perf_counter()
        publisher.publish_change("experiment" if i % 2 else "chaos", f"K{i}")
        kind, key, at, thread = _next_change(got)
        assert (kind, key) == ("experiment" if i % 2 else "chaos", f"K{i}")
        assert thread != threading.main_thread().name
        latencies.append(at - sent)
        time.sleep(0.01)
    latencies.sort()
    # A figure, not a pass/fail bound (timings belong in benchmarks: bench/fleet.py).
    print(f"{backend}: change notice latency p50 {latencies[10] * 1000:.1f} ms, "
          f"max {latencies[-1] * 1000:.1f} ms over 20 notices")


def test_changes_of_other_kinds_are_not_delivered_and_closing_stops_delivery(
    open_backend: OpenStore,
) -> None:
    publisher, subscriber = open_backend(), open_backend()
    got, callback = _collector()
    sub = subscriber.subscribe({"experiment"}, callback)  # type: ignore[arg-type]
    publisher.publish_change("template", "EXT1")
    publisher.publish_change("experiment", "EXP1")
    assert _next_change(got)[:2] == ("experiment", "EXP1")  # the template notice was skipped
    sub.close()
    publisher.publish_change("experiment", "EXP2")
    time.sleep(0.3)
    assert [c for c in list(got.queue) if c[1] is not None] == []


def test_publisher_sees_its_own_changes_and_a_failing_callback_stops_nothing(
    store: StoreBackend,
) -> None:
    got, callback = _collector()

    def broken(kind: str, key: str | None) -> None:
        raise RuntimeError("subscriber bug")

    store.subscribe(["chaos"], broken)
    store.subscribe(["chaos"], callback)  # type: ignore[arg-type]
    for i in range(3):
        store.publish_change("chaos", f"config{i}")
    assert [_next_change(got)[1] for _ in range(3)] == ["config0", "config1", "config2"]


def test_subscribing_needs_a_kind(store: StoreBackend) -> None:
    with pytest.raises(ValueError, match="kind"):
        store.subscribe([], lambda kind, key: None)


# ---- proxy registry -------------------------------------------------------------------------

def test_proxies_register_and_expire(open_backend: OpenStore) -> None:
    a, b = open_backend(), open_backend()
    before = time.time()
    a.register_proxy("p-a", {"placement": {"az": "us-east-1a"}, "version": "0.1.0"}, 30)
    b.register_proxy("p-b", {"placement": {}, "version": "0.1.0"}, 30)
    listed = a.list_proxies()
    assert [p["id"] for p in listed] == ["p-a", "p-b"] and b.count_proxies() == 2
    assert listed[0]["placement"] == {"az": "us-east-1a"} and listed[0]["version"] == "0.1.0"
    assert all(before - 0.5 <= p["last_seen"] <= time.time() + 0.5 for p in listed)
    a.register_proxy("p-a", {"placement": {"az": "us-east-1b"}, "version": "0.2.0"}, 30)
    assert b.list_proxies()[0]["placement"] == {"az": "us-east-1b"}
    b.register_proxy("p-b", {"placement": {}, "version": "0.1.0"}, 0.3)  # its last beat
    time.sleep(0.4)  # p-b stopped beating
    assert [p["id"] for p in b.list_proxies()] == ["p-a"]
    assert a.count_proxies() == b.count_proxies() == 1


# ---- counters -------------------------------------------------------------------------------

def test_counters_add_up_across_stores(open_backend: OpenStore) -> None:
    a, b = open_backend(), open_backend()
    assert a.read_counters() == {}
    assert a.incr_counters({("fisproxy_requests", "dynamodb", "PutItem"): 3,
                            ("fisproxy_faults", "EXP1", "throttle", "error"): 1}) == 0
    b.incr_counters({("fisproxy_requests", "dynamodb", "PutItem"): 2,
                     ("fisproxy_requests", "s3", "GetObject"): 1,
                     ("fisproxy_requests", "sqs", "SendMessage"): 0})
    assert b.read_counters() == {
        ("fisproxy_requests", "dynamodb", "PutItem"): 5,
        ("fisproxy_requests", "s3", "GetObject"): 1,
        ("fisproxy_faults", "EXP1", "throttle", "error"): 1,
    }
    with pytest.raises(ValueError, match="metric"):
        a.incr_counters({(): 1})


def test_counters_keep_a_bounded_number_of_label_sets(store: StoreBackend) -> None:
    """A client inventing services cannot grow the shared counters without bound."""
    store.incr_counters({("m", f"svc{i}"): 1 for i in range(MAX_COUNTER_SERIES)})
    dropped = store.incr_counters({("m", "svc0"): 1, ("m", "new1"): 1, ("m", "new2"): 1, ("other", "x"): 1})
    assert dropped == 2
    counters = store.read_counters()
    assert counters[("m", "svc0")] == 2 and ("m", "new1") not in counters
    assert counters[("other", "x")] == 1
    assert sum(1 for key in counters if key[0] == "m") == MAX_COUNTER_SERIES
