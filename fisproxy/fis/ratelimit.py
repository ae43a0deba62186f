"""Rates for `fisproxy:api:rate-limit`: token buckets read per request, shared by a fleet in the
background.

Per request (the proxy's event loop) `RateLimits.admit` touches memory only: the rule's bucket
gives a token or not. A bucket holds up to `burst` tokens and gains `per_second` of them a second,
so over a span T under sustained demand it lets through `per_second x T + burst` calls and no
more; the others get the service's throttling error.

Scope `proxy`: each proxy has its own bucket with the whole rate.

Scope `fleet`: the rate holds across every proxy on the store. Each proxy keeps its own bucket
and gives it a share of the rate and of the burst, decided in the background (`sync`, every
`SYNC_SECONDS` on a worker thread): it publishes the demand it sees for the rule (calls a second,
smoothed) as a small document in the store, reads the others', and takes
`share = (own demand + e) / sum over the fleet of (demand + e)` (e, a hundredth of the rate,
keeps an idle proxy able to let a first call through). The shares add up to one, so the buckets'
rates add up to the fleet's rate. A new rule starts at `1 / proxies on the store` on each proxy, and for its first second
counts the proxies that have not published yet as demanding as much as itself.

Accuracy: with steady demand, exact. When demand moves between proxies, the shares follow within
a sync or two (0.1-0.3 s), and the rate is off by the moved part of the demand for that long.
A bucket's burst share is at least one token, so a fleet of N proxies may let through up to N
calls at once even with a smaller burst. Documents older than `STALE_SECONDS` (a proxy gone) are
ignored and, after a minute, deleted: the proxies' clocks must agree within about a second (NTP).
If the store is unreachable, each proxy keeps its last share.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fisproxy.fis.faults import RateLimit

log = logging.getLogger(__name__)

SYNC_SECONDS = 0.1
STALE_SECONDS = 1.0
FORGET_SECONDS = 60.0  # documents of proxies gone this long are deleted
IDLE_SECONDS = 30.0  # a bucket no call asked for this long is dropped (its rule has ended)
FLEET_SIZE_SECONDS = 2.0  # how often the number of proxies on the store is read
STARTUP_SECONDS = 1.0  # a new fleet bucket waits this long for the other proxies' demand
DOC_KIND = "rate-limit"
SMOOTHING = 0.5  # weight of the newest demand measurement


class RateStore(Protocol):
    """What the fleet's sharing needs from the store (a `DocStore`, and the proxy registry)."""

    def put_doc(self, kind: str, key: str, value: dict[str, Any]) -> None: ...

    def list_docs(self, kind: str) -> dict[str, dict[str, Any]]: ...

    def delete_doc(self, kind: str, key: str) -> None: ...

    def list_proxies(self) -> list[dict[str, Any]]: ...


class TokenBucket:
    """`capacity` tokens at most, `rate` more a second; one call takes one."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.stamp = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def reshape(self, rate: float, capacity: float, now: float) -> None:
        self._refill(now)
        self.rate, self.capacity = rate, capacity
        self.tokens = min(self.tokens, capacity)

    def _refill(self, now: float) -> None:
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
            self.stamp = now


@dataclass
class _Entry:
    """One rule's bucket on this proxy. `seen` and `used` are written on the event loop and
    read by the sync thread; `share` is written by the sync thread and applied on the loop."""

    limit: RateLimit
    bucket: TokenBucket
    seen: int = 0
    used: float = 0.0
    share: float | None = None  # a new fleet share to apply (None: nothing new)
    applied: float = 1.0
    counted: int = 0  # `seen` at the last sync
    demand: float | None = None  # calls a second, smoothed (None: not measured yet)
    synced: float = 0.0  # when `counted` was taken (at first: when the bucket was made)
    created: float = 0.0


class RateLimits:
    """The buckets of the rate-limited rules in force on this proxy, by rule source."""

    def __init__(self, proxy_id: str, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.proxy_id = proxy_id
        self._clock = clock
        self._wall = wall
        self._entries: dict[str, _Entry] = {}
        self._fleet_size = 1
        self._fleet_size_read = float("-inf")

    # ---- per request (event loop): memory only ------------------------------------------

    def admit(self, source: str, limit: RateLimit) -> bool:
        now = self._clock()
        entry = self._entries.get(source)
        if entry is None or entry.limit != limit:
            first = 1.0 / self._fleet_size if limit.fleet else 1.0
            entry = self._entries[source] = _Entry(
                limit, TokenBucket(limit.per_second * first, _capacity(limit, first), now),
                applied=first, synced=now, created=now)
        share = entry.share
        if share is not None:  # a new share from the fleet: applied here, on the loop
            entry.share = None
            entry.applied = share
            entry.bucket.reshape(limit.per_second * share, _capacity(limit, share), now)
        entry.seen += 1
        entry.used = now
        return entry.bucket.take(now)

    # ---- background (a worker thread, every SYNC_SECONDS) ----------------------------------

    @property
    def sharing(self) -> bool:
        """Whether some fleet-scoped rule needs the store."""
        return any(e.limit.fleet for e in list(self._entries.values()))

    def sync(self, store: RateStore) -> None:
        """Publish this proxy's demand per fleet rule, read the fleet's, set the shares; drop
        buckets whose rule no call used for IDLE_SECONDS. Blocking (store calls)."""
        now, wall = self._clock(), self._wall()
        if now - self._fleet_size_read >= FLEET_SIZE_SECONDS:
            self._fleet_size = max(1, len(store.list_proxies()))
            self._fleet_size_read = now
        for source, entry in list(self._entries.items()):
            if now - entry.used > IDLE_SECONDS:
                self._entries.pop(source, None)
                if entry.limit.fleet:
                    store.delete_doc(DOC_KIND, self._key(source))
                continue
            if not entry.limit.fleet:
                continue
            demand = self._measure(entry, now)
            store.put_doc(DOC_KIND, self._key(source), {"demand": demand, "time": wall})
        docs = store.list_docs(DOC_KIND) if self.sharing else {}
        demands: dict[str, list[float]] = {}
        for key, doc in docs.items():
            source, _, proxy = key.rpartition("@")
            age = wall - float(doc.get("time", 0))
            if age > FORGET_SECONDS:
                store.delete_doc(DOC_KIND, key)
            elif age <= STALE_SECONDS and proxy != self.proxy_id:
                demands.setdefault(source, []).append(float(doc.get("demand", 0.0)))
        for source, entry in list(self._entries.items()):
            if not entry.limit.fleet or entry.demand is None:
                continue
            others = demands.get(source, [])
            if now - entry.created < STARTUP_SECONDS:
                # Proxies that have not published yet are counted as demanding as much as this
                # one: a new rule starts at 1/N of the rate on each, never at all of it.
                others = others + [entry.demand] * max(0, self._fleet_size - 1 - len(others))
            entry.share = fleet_share(entry.demand, others, entry.limit.per_second)

    @staticmethod
    def _measure(entry: _Entry, now: float) -> float:
        seen = entry.seen
        rate = (seen - entry.counted) / max(1e-3, now - entry.synced)
        demand = rate if entry.demand is None else SMOOTHING * rate + (1 - SMOOTHING) * entry.demand
        entry.demand, entry.counted, entry.synced = demand, seen, now
        return demand

    def _key(self, source: str) -> str:
        return f"{source}@{self.proxy_id}"

    def forget(self, store: RateStore) -> None:
        """At shutdown: withdraw this proxy's documents (the others take over its share)."""
        for source, entry in list(self._entries.items()):
            if entry.limit.fleet:
                store.delete_doc(DOC_KIND, self._key(source))
        self._entries.clear()


def fleet_share(own: float, others: list[float], per_second: float) -> float:
    """This proxy's share of a fleet rate: its demand against the fleet's, each smoothed by a
    hundredth of the rate so that every share is above zero and they add up to one."""
    e = max(per_second / 100.0, 1e-6)
    return (own + e) / (own + e + sum(d + e for d in others))


def _capacity(limit: RateLimit, share: float) -> float:
    return max(1.0, math.ceil(limit.burst * share * 1000) / 1000)
