"""Prometheus metrics, served as `GET /metrics` on the control API.

- `fisproxy_requests_total{service,operation}`: identified AWS requests that went through.
- `fisproxy_sdk_retries_total{service,operation}`: those that were SDK retries (attempt > 1).
- `fisproxy_faults_total{experiment,action,kind}`: faults applied, from each `Fault.label`
  (`<experiment>/<action>/<kind>`; Chaos API rules count as experiment="chaos", action=<index>).
- `fisproxy_active_experiments`: experiments not yet ended, read from a callback at scrape time.
- `fisproxy_injected_delay_seconds`: each injected latency (this proxy's).

The three counters are the fleet's when a store is given: every proxy adds its counts to the
store's shared counters (`flush`, about once a second and before every scrape, off the event
loop), and a scrape reads them back, so any proxy's `/metrics` counts every proxy's requests.
Without a store they are this proxy's own.

Each `Metrics` owns its own registry (never the process-global one), so several proxies or tests
in one process do not collide. `observe` runs per request, on the event loop: it only adds to a
dict of pending counts.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from fisproxy.fis.outage import announced
from fisproxy.httpdata import ApiRequest, ApiResponse
from fisproxy.requestlog import RequestRecord

log = logging.getLogger(__name__)

PATH = "/metrics"
UNKNOWN = "unknown"  # operation label when identification could not name it
DELAY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

CounterKey = tuple[str, ...]  # (metric, label values...), as the store keeps them
COUNTERS: Mapping[str, tuple[str, tuple[str, ...]]] = {
    "fisproxy_requests": ("AWS API requests seen by the proxies.", ("service", "operation")),
    "fisproxy_sdk_retries": ("AWS SDK retries seen (amz-sdk-request attempt > 1).", ("service", "operation")),
    "fisproxy_faults": ("Faults injected, by experiment, action and kind.", ("experiment", "action", "kind")),
}


class CounterStore(Protocol):
    def incr_counters(self, counts: Mapping[CounterKey, int]) -> int: ...

    def read_counters(self) -> dict[CounterKey, int]: ...


def split_label(label: str) -> tuple[str, str, str]:
    """`EXPabc/throttle/error` -> (experiment, action, kind); `chaos/0/error` -> ("chaos", "0", "error")."""
    source, _, kind = label.rpartition("/")
    experiment, _, action = source.partition("/")
    return experiment, action, kind


class Metrics:
    def __init__(self, active_experiments: Callable[[], float] | None = None,
                 shared: CounterStore | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._shared = shared
        self._pending: Tally[CounterKey] = Tally()  # counted, not yet in the store
        self._local: Tally[CounterKey] = Tally()  # everything counted here (no store)
        self._flush_lock = threading.Lock()
        self._count_lock = threading.Lock()  # observe (event loop) against flush (a thread)
        self._delay = Histogram(
            "fisproxy_injected_delay_seconds", "Latency injected into a request.",
            buckets=DELAY_BUCKETS, registry=self.registry,
        )
        active = Gauge(
            "fisproxy_active_experiments", "FIS experiments that have not ended.",
            registry=self.registry,
        )
        if active_experiments is not None:
            active.set_function(active_experiments)
        self.registry.register(_Counters(self._totals))
        self._fault_keys: dict[str, CounterKey] = {}  # labels split once

    def observe(self, r: RequestRecord, delays_ms: Sequence[float] = ()) -> None:
        """Count one finished request: its faults and the delays injected into it."""
        operation = r.operation or UNKNOWN
        with self._count_lock:
            pending = self._pending
            pending["fisproxy_requests", r.service, operation] += 1
            if r.attempt is not None and r.attempt > 1:
                pending["fisproxy_sdk_retries", r.service, operation] += 1
            for label in r.faults:
                key = self._fault_keys.get(label)
                if key is None:
                    key = self._fault_keys[label] = ("fisproxy_faults", *split_label(label))
                pending[key] += 1
        for ms in delays_ms:
            self._delay.observe(ms / 1000.0)

    def flush(self) -> None:
        """Move the pending counts into the store (or this proxy's totals). Blocking; a store
        that cannot take them keeps them pending for the next flush."""
        with self._flush_lock:
            with self._count_lock:
                pending, self._pending = self._pending, Tally()
            if not pending:
                return
            if self._shared is None:
                self._local.update(pending)
                return
            try:
                self._shared.incr_counters(pending)
            except Exception as e:  # store down: keep the counts, try again later
                (log.debug if announced(e) else log.warning)("fisproxy: metrics not shared yet (%s)", e)
                with self._count_lock:
                    self._pending.update(pending)

    def _totals(self) -> Mapping[CounterKey, int]:
        self.flush()
        if self._shared is None:
            return self._local
        try:
            return self._shared.read_counters()
        except Exception as e:
            (log.debug if announced(e) else log.warning)(
                "fisproxy: shared metrics unavailable (%s); showing none", e)
            return {}

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def handle(self, request: ApiRequest) -> ApiResponse | None:
        """`GET /metrics` in the Prometheus text format; None for any other path."""
        if request.path != PATH:
            return None
        if request.method not in ("GET", "HEAD"):
            return ApiResponse.json(405, {"message": "use GET /metrics"}, {"allow": "GET, HEAD"})
        body = b"" if request.method == "HEAD" else self.exposition()
        return ApiResponse(200, {"content-type": CONTENT_TYPE_LATEST}, body)


class _Counters(Collector):
    """The three counters, from the totals at scrape time."""

    def __init__(self, totals: Callable[[], Mapping[CounterKey, int]]) -> None:
        self._totals = totals

    def describe(self) -> Iterator[CounterMetricFamily]:
        for name, (doc, labels) in COUNTERS.items():
            yield CounterMetricFamily(name, doc, labels=labels)

    def collect(self) -> Iterator[CounterMetricFamily]:
        families = {name: CounterMetricFamily(name, doc, labels=labels)
                    for name, (doc, labels) in COUNTERS.items()}
        for key, value in sorted(self._totals().items()):
            family = families.get(key[0])
            if family is not None and len(key) == len(COUNTERS[key[0]][1]) + 1:
                family.add_metric(list(key[1:]), value)
        yield from families.values()
