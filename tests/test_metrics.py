"""Prometheus metrics: counts from request records, read back with prometheus_client's own parser."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

from mitmproxy.http import Headers
from prometheus_client.parser import text_string_to_metric_families

from fisproxy.aws.identify import identify, warm
from fisproxy.fis.faults import Fault, FaultSpec
from fisproxy.httpdata import ApiRequest
from fisproxy.metrics import Metrics, split_label
from fisproxy.requestlog import RequestRecord

T0 = 1_700_000_000.0
THROTTLE = Fault("EXPabc/throttle", FaultSpec(kind="error", error_kind="throttle")).label
SLOW = Fault("EXPabc/slow", FaultSpec(kind="latency", latency_ms=250)).label
CHAOS = Fault("chaos/0", FaultSpec(kind="error")).label


def rec(**kw: Any) -> RequestRecord:
    fields: dict[str, Any] = {
        "time": T0, "duration_ms": 5.0, "service": "dynamodb", "operation": "PutItem",
        "region": "us-east-1", "faults": (), "status": 200,
    }
    fields.update(kw)
    return RequestRecord(**fields)


def scrape(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} from the served text."""
    response = metrics.handle(ApiRequest("GET", "/metrics"))
    assert response is not None and response.status == 200
    assert response.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_split_label() -> None:
    assert split_label(THROTTLE) == ("EXPabc", "throttle", "error")
    assert split_label(CHAOS) == ("chaos", "0", "error")
    assert split_label("EXPabc/with/slash/latency") == ("EXPabc", "with/slash", "latency")


def test_requests_faults_retries_and_delays_are_counted() -> None:
    metrics = Metrics()
    metrics.observe(rec(faults=(THROTTLE,), status=400, attempt=1))
    metrics.observe(rec(faults=(THROTTLE,), status=400, attempt=2))
    metrics.observe(rec(attempt=3))
    metrics.observe(rec(service="s3", operation="GetObject", faults=(SLOW,)), delays_ms=[250.0])
    metrics.observe(rec(service="sqs", operation=None, faults=(SLOW, CHAOS), status=None), delays_ms=[1500.0])
    got = scrape(metrics)

    def requests(service: str, operation: str) -> float:
        return got[("fisproxy_requests_total", (("operation", operation), ("service", service)))]

    assert requests("dynamodb", "PutItem") == 3
    assert requests("s3", "GetObject") == 1
    assert requests("sqs", "unknown") == 1
    assert got[("fisproxy_sdk_retries_total", (("operation", "PutItem"), ("service", "dynamodb")))] == 2

    def faults(experiment: str, action: str, kind: str) -> float:
        return got[("fisproxy_faults_total", (("action", action), ("experiment", experiment), ("kind", kind)))]

    assert faults("EXPabc", "throttle", "error") == 2
    assert faults("EXPabc", "slow", "latency") == 2
    assert faults("chaos", "0", "error") == 1
    assert got[("fisproxy_injected_delay_seconds_count", ())] == 2
    assert got[("fisproxy_injected_delay_seconds_sum", ())] == 1.75
    assert got[("fisproxy_injected_delay_seconds_bucket", (("le", "0.25"),))] == 1
    assert got[("fisproxy_injected_delay_seconds_bucket", (("le", "1.0"),))] == 1
    assert got[("fisproxy_injected_delay_seconds_bucket", (("le", "2.5"),))] == 2


def test_active_experiments_is_read_at_scrape_time() -> None:
    active = [0]
    metrics = Metrics(active_experiments=lambda: active[0])
    assert scrape(metrics)[("fisproxy_active_experiments", ())] == 0
    active[0] = 3
    assert scrape(metrics)[("fisproxy_active_experiments", ())] == 3


def test_each_instance_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.observe(rec())
    assert ("fisproxy_requests_total", (("operation", "PutItem"), ("service", "dynamodb"))) in scrape(a)
    assert not any(name == "fisproxy_requests_total" for name, _ in scrape(b))


def test_handle_serves_only_get_metrics() -> None:
    metrics = Metrics()
    assert metrics.handle(ApiRequest("GET", "/experiments")) is None
    assert metrics.handle(ApiRequest("GET", "/metricsx")) is None
    post = metrics.handle(ApiRequest("POST", "/metrics"))
    assert post is not None and post.status == 405
    head = metrics.handle(ApiRequest("HEAD", "/metrics"))
    assert head is not None and head.status == 200 and head.body == b""


# ---- labels come from the models, whatever clients send -------------------------------------

def _hostile_request(i: int) -> tuple[str, str, str, Headers]:
    """The i-th of a stream of requests with invented operations, services and regions, some
    with bytes that are not UTF-8, as mitmproxy hands them to identify()."""
    scope = f"AKID{i}/20240501/eu-west-{i}/{'dynamodb' if i % 2 else f'svc{i}'}/aws4_request"
    auth = f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=00".encode()
    kind = i % 3
    if kind == 0:
        target = b"DynamoDB_20120810.Op%d\xff" % i if i % 4 else b"DynamoDB_20120810.Op%d" % i
        headers = Headers([(b"Authorization", auth), (b"X-Amz-Target", target)])
        return "POST", "dynamodb.eu-west-1.amazonaws.com", "/", headers
    if kind == 1:
        return "GET", "sqs.eu-west-1.amazonaws.com", f"/?Action=Op{i}", Headers([(b"Authorization", auth)])
    return ("POST", "monitoring.eu-west-1.amazonaws.com",
            f"/service/GraniteServiceVersion20100801/operation/Op{i}", Headers([(b"Authorization", auth)]))


def _observe_hostile(metrics: Metrics, start: int, count: int) -> None:
    for i in range(start, start + count):
        call = identify(*_hostile_request(i))
        assert call is not None
        metrics.observe(rec(service=call.service, operation=call.operation, region=call.region))


def test_invented_operations_make_one_label_and_memory_stays_flat() -> None:
    warm()
    metrics = Metrics()
    _observe_hostile(metrics, 0, 300)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        _observe_hostile(metrics, 300, 3000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    samples = scrape(metrics)  # served: every label is valid text
    series = {labels for (name, labels) in samples if name == "fisproxy_requests_total"}
    assert series == {
        (("operation", "unknown"), ("service", service)) for service in ("dynamodb", "sqs", "monitoring")
    }
    assert sum(v for (name, _), v in samples.items() if name == "fisproxy_requests_total") == 3300
    assert grown < 256 * 1024, f"{grown} bytes kept after 3000 invented operations"
