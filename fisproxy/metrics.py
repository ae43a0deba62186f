"""Prometheus metrics, served as `GET /metrics` on the control API.

- `fisproxy_requests_total{service,operation}`: identified AWS requests that went through.
- `fisproxy_sdk_retries_total{service,operation}`: those that were SDK retries (attempt > 1).
- `fisproxy_faults_total{experiment,action,kind}`: faults applied, from each `Fault.label`
  (`<experiment>/<action>/<kind>`; Chaos API rules count as experiment="chaos", action=<index>).
- `fisproxy_active_experiments`: experiments not yet ended, read from a callback at scrape time.
- `fisproxy_injected_delay_seconds`: each injected latency.

Each `Metrics` owns its own registry (never the process-global one), so several proxies or tests
in one process do not collide. `observe` runs per request: label children are cached.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from fisproxy.httpdata import ApiRequest, ApiResponse
from fisproxy.requestlog import RequestRecord

PATH = "/metrics"
UNKNOWN = "unknown"  # operation label when identification could not name it
DELAY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def split_label(label: str) -> tuple[str, str, str]:
    """`EXPabc/throttle/error` -> (experiment, action, kind); `chaos/0/error` -> ("chaos", "0", "error")."""
    source, _, kind = label.rpartition("/")
    experiment, _, action = source.partition("/")
    return experiment, action, kind


class Metrics:
    def __init__(self, active_experiments: Callable[[], float] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "fisproxy_requests", "AWS API requests seen by the proxy.",
            ["service", "operation"], registry=self.registry,
        )
        self._retries = Counter(
            "fisproxy_sdk_retries", "AWS SDK retries seen (amz-sdk-request attempt > 1).",
            ["service", "operation"], registry=self.registry,
        )
        self._faults = Counter(
            "fisproxy_faults", "Faults injected, by experiment, action and kind.",
            ["experiment", "action", "kind"], registry=self.registry,
        )
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
        # labels() validates and locks on every call; the hot path reuses the children.
        self._request_children: dict[tuple[str, str], tuple[Counter, Counter]] = {}
        self._fault_children: dict[str, Counter] = {}

    def observe(self, r: RequestRecord, delays_ms: Sequence[float] = ()) -> None:
        """Count one finished request: its faults and the delays injected into it."""
        requests, retries = self._children_for(r.service, r.operation or UNKNOWN)
        requests.inc()
        if r.attempt is not None and r.attempt > 1:
            retries.inc()
        for label in r.faults:
            child = self._fault_children.get(label)
            if child is None:
                child = self._fault_children[label] = self._faults.labels(*split_label(label))
            child.inc()
        for ms in delays_ms:
            self._delay.observe(ms / 1000.0)

    def _children_for(self, service: str, operation: str) -> tuple[Counter, Counter]:
        key = (service, operation)
        children = self._request_children.get(key)
        if children is None:
            children = (self._requests.labels(service, operation), self._retries.labels(service, operation))
            self._request_children[key] = children
        return children

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
