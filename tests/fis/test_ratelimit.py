"""Rates of `fisproxy:api:rate-limit` (`fis/ratelimit.py`): token buckets driven by a fake clock,
and the fleet's shares computed from the demand each proxy publishes in a (real SQLite) store."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from fisproxy.aws.call import AwsCall
from fisproxy.fis.actions import ACTIONS
from fisproxy.fis.decide import decide
from fisproxy.fis.faults import RateLimit
from fisproxy.fis.ratelimit import DOC_KIND, RateLimits, TokenBucket, fleet_share
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


def test_shares_follow_demand_and_add_up_to_one():
    assert fleet_share(20, [20, 20], 60) == pytest.approx(1 / 3)
    assert fleet_share(0, [30], 30) == pytest.approx(0.3 / 30.6, rel=1e-6)  # idle: a sliver, not zero
    shares = [fleet_share(d, [o for j, o in enumerate((5, 15, 40)) if j != i], 10) for i, d in enumerate((5, 15, 40))]
    assert sum(shares) == pytest.approx(1.0)


def test_three_proxies_on_one_store_share_the_fleet_rate(tmp_path: Path):
    """Three RateLimits (three proxies) on one real SQLite store, each with a third of the
    demand: once they have synced, they let through the fleet's rate together."""
    store = Store(tmp_path / "state.sqlite")
    try:
        clock, wall = Clock(), Clock()
        proxies = [RateLimits(f"p{i}", clock=clock, wall=wall) for i in range(3)]
        for i in range(3):
            store.register_proxy(f"p{i}", {}, 60)
        limit = RateLimit(per_second=30, burst=15, fleet=True)
        total = 0
        for _ in range(100):  # 10 s at 90 calls a second (3x the rate), syncing every 0.1 s
            for _ in range(3):
                for p in proxies:  # one call on each proxy in turn
                    total += p.admit("EXP/limit", limit)
                    clock.t += 1 / 90
                    wall.t += 1 / 90
            for p in proxies:
                p.sync(store)
        assert total == pytest.approx(30 * 10 + 15, rel=0.1)
        assert len(store.list_docs(DOC_KIND)) == 3
        for p in proxies:
            p.forget(store)
        assert store.list_docs(DOC_KIND) == {}
    finally:
        store.close()
