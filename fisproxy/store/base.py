"""The one interface both stores implement (`StoreBackend`), and what they share.

`StoreBackend` is everything the FIS domain needs (`fisproxy.fis.ports.FleetStore`: templates,
experiments, docs, logs, leases, change notices) plus what the proxy around it needs: request
records for the report, the proxy registry behind `fisproxy proxies`, the counters behind
`/metrics`, and `close()`. Nothing here is called per proxied request: the recorder writes
records in batches about once a second, counters are added the same way.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from fisproxy.fis.outage import log_failure
from fisproxy.fis.ports import ChangeCallback, DataCallback, FleetStore, StoreUnavailable
from fisproxy.requestlog import RequestStore  # the request log's port, declared where it is used

logger = logging.getLogger(__name__)

# What a store call may raise when storage fails (rather than a bug): catch these around
# background writes, keep the batch and retry.
STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, StoreUnavailable)

# Label sets kept per counter metric; increments of further new label sets are dropped (and
# reported), so nothing a client sends can grow the shared counters without bound.
MAX_COUNTER_SERIES = 10_000

CounterKey = tuple[str, ...]
"""(metric name, label value, ...): `("fisproxy_requests", "dynamodb", "PutItem")`."""


class ProxyRegistry(Protocol):
    def register_proxy(self, proxy_id: str, info: Mapping[str, Any], ttl_seconds: float) -> None:
        """Say `proxy_id` is alive, with `info` (placement, version, ports...), for the next
        `ttl_seconds`: a heartbeat. A proxy that stops calling it drops out of the listing."""
        ...

    def list_proxies(self) -> list[dict[str, Any]]:
        """Live proxies, by id: each its `info` plus `id` and `last_seen` (epoch seconds)."""
        ...

    def count_proxies(self) -> int:
        """How many proxies are live: what every proxy reads now and then (fleet rate limits),
        so its cost does not grow with the fleet as a listing's does."""
        ...


class CounterStore(Protocol):
    def incr_counters(self, counts: Mapping[CounterKey, int]) -> int:
        """Add `counts` (a batch) to the shared counters; returns how many increments were
        dropped because their metric already has MAX_COUNTER_SERIES label sets."""
        ...

    def read_counters(self) -> dict[CounterKey, int]:
        """Every counter of every process on the store."""
        ...


class TokenStore(Protocol):
    def take_tokens(self, key: str, per_second: float, burst: float, want: int, ttl_seconds: float) -> int:
        """A token bucket shared by every process on the store (fisproxy:api:rate-limit, scope
        fleet): it holds up to `burst` tokens (full when first used) and gains `per_second` a
        second. Take up to `want` whole tokens at once and return how many were taken. Atomic;
        the bucket is forgotten `ttl_seconds` after its last use."""
        ...


class StoreBackend(FleetStore, RequestStore, ProxyRegistry, CounterStore, TokenStore, Protocol):
    """A store: SQLite (`fisproxy.store.sqlite`) or Redis (`fisproxy.store.redis`)."""

    def close(self) -> None:
        """Stop background threads and release connections. Calls after it are errors."""
        ...


def counter_field(key: CounterKey) -> tuple[str, list[str]]:
    """(metric, labels) of a counter key; ValueError for a key without a metric name."""
    if not key or not all(isinstance(part, str) for part in key):
        raise ValueError(f"a counter key is (metric, label, ...) of strings, not {key!r}")
    return key[0], list(key[1:])


class _Subscription:
    def __init__(self, owner: Subscribers, kinds: frozenset[str], callback: ChangeCallback,
                 with_data: DataCallback | None) -> None:
        self.kinds = kinds
        self.callback = callback
        self.with_data = with_data
        self.closed = False
        self._owner = owner

    def close(self) -> None:
        self.closed = True
        self._owner.remove(self)


class Subscribers:
    """The subscriptions of one store and their delivery, shared by both backends. Delivery
    runs on the store's one notifier thread; a failing callback is logged and skipped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[_Subscription] = []

    def add(self, kinds: Iterable[str], callback: ChangeCallback,
            with_data: DataCallback | None = None) -> _Subscription:
        kinds = frozenset([kinds] if isinstance(kinds, str) else kinds)
        if not kinds:
            raise ValueError("subscribe to at least one kind")
        sub = _Subscription(self, kinds, callback, with_data)
        with self._lock:
            self._subs = [*self._subs, sub]
        return sub

    def remove(self, sub: _Subscription) -> None:
        with self._lock:
            self._subs = [s for s in self._subs if s is not sub]

    def __bool__(self) -> bool:
        return bool(self._subs)

    def deliver(self, kind: str, key: str | None, data: dict[str, Any] | None = None) -> None:
        """One notice to the subscribers of `kind`: with its `data` to those that take it."""
        for sub in self._subs:  # a snapshot: the list is replaced, never changed in place
            if kind in sub.kinds:
                if data is not None and key is not None and sub.with_data is not None:
                    _call(sub, sub.with_data, kind, key, data)
                else:
                    _call(sub, sub.callback, kind, key)

    def resync(self, subs: Iterable[_Subscription] | None = None) -> None:
        """Tell `subs` (default: every subscriber) to read each of its kinds again."""
        for sub in self._subs if subs is None else subs:
            for kind in sorted(sub.kinds):
                _call(sub, sub.callback, kind, None)


def _call(sub: _Subscription, callback: Callable[..., None], *args: Any) -> None:
    if sub.closed:
        return
    try:
        callback(*args)
    except Exception as e:  # one subscriber's bug must not stop the notices of the others
        log_failure(logger, e, "fisproxy: a change subscriber failed on %.200r", args[:2])


__all__ = [
    "MAX_COUNTER_SERIES", "STORE_ERRORS", "CounterKey", "CounterStore", "ProxyRegistry",
    "RequestStore", "StoreBackend", "StoreUnavailable", "Subscribers", "TokenStore", "counter_field",
]
