"""Rates for `fisproxy:api:rate-limit`: token buckets read per request; a fleet's bucket lives in
the store and each proxy leases tokens from it ahead, in the background.

Per request (the proxy's event loop) `RateLimits.admit` touches memory only: a call takes a token
or is over the rate. A bucket holds up to `burst` tokens (full at first) and gains `per_second`
of them a second, so over a span T under sustained demand it lets through `per_second x T +
burst` calls and no more; the others get the service's throttling error.

Scope `proxy`: each proxy has its own bucket with the whole rate and burst.

Scope `fleet`: the bucket is in the store, shared by every proxy on it (`TokenStore.take_tokens`:
atomic, refilled by Redis's own clock). Each proxy spends tokens it holds in memory, and every
`SYNC_SECONDS` (a worker thread) takes from the store what its own demand will need for the next
`LEASE_SECONDS`, or two syncs if they come later (demand: calls a second it saw for the rule,
smoothed). A new rule starts with an
advance of `burst / proxies on the store` tokens on each proxy, taken from the store at the first
sync: the fleet's first calls need not wait for it.

Accuracy: every token let through comes out of the store's bucket, so the fleet never lets more
than `per_second x T + burst` calls through, but for advances not yet repaid (a proxy that
starts applying the rule after the bucket ran dry owes its advance, `burst / N` at most, until
refills repay it). It may let fewer through: tokens one proxy holds while the calls arrive at
another (at most a lease's worth, `demand x LEASE_SECONDS`, each), tokens a proxy still holds when
the rule ends. Under sustained demand over the rate the store's bucket is empty at every sync and
proxies hold next to nothing: measured within a few percent (`tests/e2e/test_rate_limit.py`). If
the store is unreachable, each proxy spends what it holds, then throttles until it is back.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from fisproxy.fis.faults import RateLimit

log = logging.getLogger(__name__)

SYNC_SECONDS = 0.1
LEASE_SECONDS = 0.2  # how far ahead of its demand a proxy takes tokens from the fleet's bucket
IDLE_SECONDS = 30.0  # a bucket no call asked for this long is dropped (its rule has ended)
BUCKET_TTL_SECONDS = 600.0  # the store forgets a fleet bucket unused this long
FLEET_SIZE_SECONDS = 2.0  # how often the number of proxies on the store is read while sharing
FLEET_SIZE_IDLE_SECONDS = 30.0  # ...and with no fleet rule (a new rule's first advance uses it)
SMOOTHING = 0.3  # weight of the newest demand measurement (one every SYNC_SECONDS)


class RateStore(Protocol):
    """What the fleet's sharing needs from the store."""

    def take_tokens(self, key: str, per_second: float, burst: float, want: int, ttl_seconds: float) -> int: ...

    def count_proxies(self) -> int: ...


class TokenBucket:
    """`capacity` tokens at most, `rate` more a second; one call takes one."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = now

    def take(self, now: float) -> bool:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


@dataclass
class _Fleet:
    """One fleet rule's tokens on this proxy. `held` and `seen` change on the event loop; the
    sync thread appends what it took from the store to `granted`, which the loop adds in."""

    held: int
    owed: int  # the advance, still to be taken from the store
    created: float
    seen: int = 0
    counted: int = 0  # `seen` at the last sync
    synced: float = 0.0
    demand: float | None = None  # calls a second, smoothed
    granted: deque[int] = field(default_factory=deque)


@dataclass
class _Entry:
    limit: RateLimit
    used: float
    bucket: TokenBucket | None = None  # scope proxy
    fleet: _Fleet | None = None  # scope fleet


class RateLimits:
    """The buckets of the rate-limited rules in force on this proxy, by rule source."""

    def __init__(self, proxy_id: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.proxy_id = proxy_id
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._fleet_size = 1
        self._fleet_size_read = float("-inf")

    # ---- per request (event loop): memory only ------------------------------------------

    def admit(self, source: str, limit: RateLimit) -> bool:
        now = self._clock()
        entry = self._entries.get(source)
        if entry is None or entry.limit != limit:
            entry = self._entries[source] = self._new(limit, now)
        entry.used = now
        fleet = entry.fleet
        if fleet is None:
            assert entry.bucket is not None
            return entry.bucket.take(now)
        while fleet.granted:
            fleet.held += fleet.granted.popleft()
        fleet.seen += 1
        if fleet.held >= 1:
            fleet.held -= 1
            return True
        return False

    def _new(self, limit: RateLimit, now: float) -> _Entry:
        if not limit.fleet:
            return _Entry(limit, now, bucket=TokenBucket(limit.per_second, float(limit.burst), now))
        advance = max(1, limit.burst // self._fleet_size)
        return _Entry(limit, now, fleet=_Fleet(held=advance, owed=advance, created=now, synced=now))

    # ---- background (a worker thread, every SYNC_SECONDS) ----------------------------------

    @property
    def sharing(self) -> bool:
        """Whether some fleet-scoped rule needs the store."""
        return any(e.fleet is not None for e in list(self._entries.values()))

    def due(self) -> bool:
        """Whether `sync` has something to do: fleet rules, or the number of proxies on the store
        to read again (a new fleet rule's advance is the burst over it)."""
        return self.sharing or self._clock() - self._fleet_size_read >= FLEET_SIZE_IDLE_SECONDS

    def sync(self, store: RateStore) -> None:
        """Take from the store's buckets what each fleet rule's demand here will need, repaying
        advances first; drop buckets of rules no call used for IDLE_SECONDS. Blocking."""
        now = self._clock()
        if now - self._fleet_size_read >= (FLEET_SIZE_SECONDS if self.sharing else FLEET_SIZE_IDLE_SECONDS):
            self._fleet_size = max(1, store.count_proxies())
            self._fleet_size_read = now
        for source, entry in list(self._entries.items()):
            if now - entry.used > IDLE_SECONDS:
                self._entries.pop(source, None)
                continue
            fleet = entry.fleet
            if fleet is None:
                continue
            # Ahead by LEASE_SECONDS, or by two syncs when they come late (a busy machine): a
            # proxy must hold what its calls need until its next sync, or its share of the
            # bucket overflows unused.
            horizon = max(LEASE_SECONDS, 2 * (now - fleet.synced))
            demand = _measure(fleet, now)
            stock = fleet.held + sum(fleet.granted.copy())  # copy: the loop pops meanwhile
            want = fleet.owed + max(0, math.ceil(demand * horizon) - stock)
            if want <= 0:
                continue
            taken = store.take_tokens(source, entry.limit.per_second, entry.limit.burst, want, BUCKET_TTL_SECONDS)
            repaid = min(taken, fleet.owed)
            fleet.owed -= repaid
            if taken > repaid:
                fleet.granted.append(taken - repaid)


def _measure(fleet: _Fleet, now: float) -> float:
    seen = fleet.seen
    rate = (seen - fleet.counted) / max(1e-3, now - fleet.synced)
    demand = rate if fleet.demand is None else SMOOTHING * rate + (1 - SMOOTHING) * fleet.demand
    fleet.demand, fleet.counted, fleet.synced = demand, seen, now
    return demand
