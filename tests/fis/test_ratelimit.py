"""Rates of `fisproxy:api:rate-limit` (`fis/ratelimit.py`): token buckets driven by a fake clock,
and the fleet's shares computed from the demand each proxy publishes in a (real SQLite) store."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from fisproxy.aws.call import AwsCall
from fisproxy.fis.actions import ACTIONS
from fisproxy.fis.decide import decide
from fisproxy.fis.faults import RateLimit
from fisproxy.fis.ratelimit import RateLimits, TokenBucket
from fisproxy.fis.rules import ActiveRule
from fisproxy.store import Store


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def admitted(limits: RateLimits, clock: Clock, limit: RateLimit, per_second: float, seconds: float,
             source: str = "EXP/limit") -> int:
    """Send at `per_second` for `seconds`; how many were let through."""
    n, step = 0, 1.0 / per_second
    end = clock.t + seconds
    while clock.t < end - 1e-9:
        n += limits.admit(source, limit)
        clock.t += step
    return n


def test_a_bucket_lets_through_rate_times_duration_plus_burst():
    clock = Clock()
    limits = RateLimits("p1", clock=clock)
    limit = RateLimit(per_second=20, burst=10)
    assert admitted(limits, clock, limit, per_second=60, seconds=10) == pytest.approx(20 * 10 + 10, abs=1)


def test_a_quiet_spell_refills_the_burst_and_no_more():
    clock = Clock()
    bucket = TokenBucket(rate=5, capacity=3, now=clock.t)
    assert [bucket.take(clock.t) for _ in range(4)] == [True, True, True, False]
    clock.t += 100
    assert [bucket.take(clock.t) for _ in range(4)] == [True, True, True, False]


def test_decide_throttles_only_calls_over_the_rate():
    spec = ACTIONS["fisproxy:api:rate-limit"]
    params = {"service": "sqs", "requestsPerSecond": "2", "burst": "2"}
    spec.validate(params)
    rule = spec.rule(params)
    assert rule is not None and rule.limit == RateLimit(2.0, 2, fleet=False)
    active = ActiveRule("EXP", "limit", rule, stopped=None)  # type: ignore[arg-type]
    clock = Clock()
    limits = RateLimits("p1", clock=clock)
    call = AwsCall("sqs", "us-east-1", "SendMessage", "sqs", "json")
    kinds = [[f.spec.kind for f in decide(call, [active], random.Random(0), None, limits).faults] for _ in range(3)]
    assert kinds == [[], [], ["rate-limit"]]
    assert decide(call, [active], random.Random(0)).faults == ()  # no limiter: nobody is over
    other = AwsCall("dynamodb", "us-east-1", "GetItem", "dynamodb", "json")
    assert not decide(other, [active], random.Random(0), None, limits)  # another service: untouched


def test_the_burst_defaults_to_the_rate_and_the_scope_to_one_proxy():
    rule = ACTIONS["fisproxy:api:rate-limit"].rule({"requestsPerSecond": "2.5"})
    assert rule is not None and rule.limit == RateLimit(2.5, 3, fleet=False)
    fleet = ACTIONS["fisproxy:api:rate-limit"].rule({"requestsPerSecond": "10", "scope": "fleet"})
    assert fleet is not None and fleet.limit is not None and fleet.limit.fleet


def test_three_proxies_on_one_store_share_the_fleet_rate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Three RateLimits (three proxies) on one real SQLite store, each with a third of the
    demand, syncing every 0.1 s: together they let through the fleet's rate and burst."""
    store = Store(tmp_path / "state.sqlite")
    try:
        clock = Clock()
        store_clock = [1000.0]
        proxies = [RateLimits(f"p{i}", clock=clock) for i in range(3)]
        for i in range(3):
            store.register_proxy(f"p{i}", {}, 60)
        limit = RateLimit(per_second=30, burst=15, fleet=True)
        total = 0
        monkeypatch.setattr(time, "time", lambda: store_clock[0])  # the store refills by time.time()
        for _ in range(100):  # 10 s at 90 calls a second (3x the rate)
            for _ in range(3):
                for p in proxies:  # one call on each proxy in turn
                    total += p.admit("EXP/limit", limit)
                    clock.t += 1 / 90
                    store_clock[0] += 1 / 90
            for p in proxies:
                p.sync(store)
        assert total == pytest.approx(30 * 10 + 15, rel=0.05)
    finally:
        store.close()


def test_a_new_fleet_rule_starts_with_an_advance_repaid_from_the_store(tmp_path: Path):
    store = Store(tmp_path / "state.sqlite")
    try:
        for i in range(2):
            store.register_proxy(f"p{i}", {}, 60)
        clock = Clock()
        limits = RateLimits("p0", clock=clock)
        limits.sync(store)  # reads the fleet's size: 2
        limit = RateLimit(per_second=1, burst=10, fleet=True)
        assert [limits.admit("EXP/limit", limit) for _ in range(6)] == [True] * 5 + [False]  # 10 / 2
        limits.sync(store)  # repays the 5 from the store's 10, takes what the demand needs
        left = store.take_tokens("EXP/limit", 1, 10, 100, 60)
        assert left <= 5
    finally:
        store.close()



class CountingStore:
    """Counts what a proxy asks of the store (a unit-test fake: the store's side is tested on
    real stores above and in tests/store)."""

    def __init__(self, proxies: int) -> None:
        self.proxies, self.counts, self.takes = proxies, 0, 0

    def count_proxies(self) -> int:
        self.counts += 1
        return self.proxies

    def take_tokens(self, key: str, per_second: float, burst: float, want: int, ttl_seconds: float) -> int:
        self.takes += 1
        return want


def test_an_idle_proxy_counts_the_fleet_rarely_and_a_sharing_one_every_two_seconds() -> None:
    """The fleet size is read every 30 s with no fleet rule (a proxy's idle cost on Redis), every
    2 s while one is in force (its share of a new rule's burst follows the fleet)."""
    clock, store = Clock(), CountingStore(proxies=4)
    limits = RateLimits("p0", clock=clock)
    for _ in range(600):  # 60 s idle, a sync every 0.1 s when due
        if limits.due():
            limits.sync(store)
        clock.t += 0.1
    assert store.counts == 2 and store.takes == 0
    limits.admit("EXP/limit", RateLimit(per_second=10, burst=8, fleet=True))
    counted = store.counts
    for _ in range(100):  # 10 s sharing
        limits.admit("EXP/limit", RateLimit(per_second=10, burst=8, fleet=True))
        if limits.due():
            limits.sync(store)
        clock.t += 0.1
    assert 5 <= store.counts - counted <= 6 and store.takes > 0
