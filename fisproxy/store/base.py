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

from fisproxy.fis.models import Experiment
from fisproxy.fis.ports import ChangeCallback, FleetStore, SavedCallback, StoreUnavailable
from fisproxy.fis.runstate import RunState
from fisproxy.requestlog import RequestRecord

logger = logging.getLogger(__name__)

# What a store call may raise when storage fails (rather than a bug): catch these around
# background writes, keep the batch and retry.
STORE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, StoreUnavailable)

# Label sets kept per counter metric; increments of further new label sets are dropped (and
# reported), so nothing a client sends can grow the shared counters without bound.
MAX_COUNTER_SERIES = 10_000

CounterKey = tuple[str, ...]
"""(metric name, label value, ...): `("fisproxy_requests", "dynamodb", "PutItem")`."""


class RequestStore(Protocol):
    def append_requests(self, records: list[RequestRecord]) -> None:
        """Store `records`, all or none."""
        ...

    def requests_between(self, start: float, end: float) -> list[RequestRecord]:
        """Records with `start <= time <= end`, oldest first (ties in the order written)."""
        ...

    def delete_requests_before(self, t: float, *, batch: int = 5000) -> int:
        """Drop records with `time < t` (retention), in batches; how many went."""
        ...


class ProxyRegistry(Protocol):
    def register_proxy(self, proxy_id: str, info: Mapping[str, Any], ttl_seconds: float) -> None:
        """Say `proxy_id` is alive, with `info` (placement, version, ports...), for the next
        `ttl_seconds`: a heartbeat. A proxy that stops calling it drops out of the listing."""
        ...

    def list_proxies(self) -> list[dict[str, Any]]:
        """Live proxies, by id: each its `info` plus `id` and `last_seen` (epoch seconds)."""
        ...


class CounterStore(Protocol):
    def incr_counters(self, counts: Mapping[CounterKey, int]) -> int:
        """Add `counts` (a batch) to the shared counters; returns how many increments were
        dropped because their metric already has MAX_COUNTER_SERIES label sets."""
        ...

    def read_counters(self) -> dict[CounterKey, int]:
        """Every counter of every process on the store."""
        ...


class StoreBackend(FleetStore, RequestStore, ProxyRegistry, CounterStore, Protocol):
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
                 saved: SavedCallback | None) -> None:
        self.kinds = kinds
        self.callback = callback
        self.saved = saved
        self.closed = False
        self._owner = owner

    def close(self) -> None:
        self.closed = True
        self._owner.remove(self)


class SavedRecord:
    """The experiment a save notice carries (its JSON as the store holds it), parsed once for
    every subscriber that takes it."""

    def __init__(self, experiment: Any, runtime: Any) -> None:
        self._raw = (experiment, runtime)
        self._parsed: tuple[Experiment, RunState | None] | None = None

    def parse(self) -> tuple[Experiment, RunState | None]:
        """ValueError (pydantic's) if it is not an experiment this version can read."""
        if self._parsed is None:
            experiment, runtime = self._raw
            self._parsed = (Experiment.model_validate(experiment),
                            RunState.model_validate(runtime) if runtime is not None else None)
        return self._parsed


class Subscribers:
    """The subscriptions of one store and their delivery, shared by both backends. Delivery
    runs on the store's one notifier thread; a failing callback is logged and skipped."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: list[_Subscription] = []

    def add(self, kinds: Iterable[str], callback: ChangeCallback,
            saved: SavedCallback | None = None) -> _Subscription:
        kinds = frozenset([kinds] if isinstance(kinds, str) else kinds)
        if not kinds:
            raise ValueError("subscribe to at least one kind")
        sub = _Subscription(self, kinds, callback, saved)
        with self._lock:
            self._subs = [*self._subs, sub]
        return sub

    def remove(self, sub: _Subscription) -> None:
        with self._lock:
            self._subs = [s for s in self._subs if s is not sub]

    def __bool__(self) -> bool:
        return bool(self._subs)

    def deliver(self, kind: str, key: str | None, record: SavedRecord | None = None) -> None:
        """One notice to the subscribers of `kind`: the saved `record` it carries to those
        that take it (`saved`), (kind, key) to the others (and to all if it cannot be read)."""
        for sub in self._subs:  # a snapshot: the list is replaced, never changed in place
            if kind in sub.kinds:
                if record is not None and sub.saved is not None and not sub.closed:
                    try:
                        parsed = record.parse()
                    except ValueError as e:
                        logger.warning("fisproxy: a saved experiment in a change notice could not "
                                       "be read (%s); reading it from the store", str(e)[:200])
                    else:
                        _call(sub, sub.saved, *parsed)
                        continue
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
    except Exception:  # one subscriber's bug must not stop the notices of the others
        logger.exception("fisproxy: a change subscriber failed on %.200r", args[:2])


__all__ = [
    "MAX_COUNTER_SERIES", "STORE_ERRORS", "CounterKey", "CounterStore", "ProxyRegistry",
    "RequestStore", "SavedRecord", "StoreBackend", "StoreUnavailable", "Subscribers", "counter_field",
]
