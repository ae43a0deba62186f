"""fisproxy's own work per request: each addon's HTTP hooks, timed in-process.

    .venv/bin/python bench/hooks_cost.py [--requests 20000]

Builds the production addon list (`proxy/addons.py`) in mitmproxy's test context with a real
SQLite store, then runs signed DynamoDB GetItem flows (made beforehand, outside the timing)
through every addon's `requestheaders`, `request`, `responseheaders` and `response` in list
order, as mitmproxy calls them, timing each addon. Twice: with no experiment, and with 5
experiments running on services the flows do not call (what `bench/overhead.py` calls loaded).
Prints microseconds per request, per addon (the median of 10 rounds) and in total: the part of a request's CPU that is
fisproxy's, next to mitmproxy's own (`bench/overhead.py` measures the whole).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from mitmproxy import http
from mitmproxy.test import taddons, tflow

from fisproxy.fis.loops import drive
from fisproxy.fis.models import ExperimentTemplate
from fisproxy.proxy.addons import make_addons
from fisproxy.proxy.runtime import Runtime

HOOKS = ("requestheaders", "request", "responseheaders", "response")
OTHER_SERVICES = ("sqs", "sns", "kinesis", "lambda", "ec2")
AUTH = ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20250101/us-east-1/dynamodb/aws4_request, "
        "SignedHeaders=host;x-amz-date;x-amz-target, Signature=" + "0" * 64)


def get_item() -> http.HTTPFlow:
    flow = tflow.tflow(resp=True)
    req = flow.request
    req.method, req.scheme, req.host, req.port, req.path = "POST", "https", "dynamodb.us-east-1.amazonaws.com", 443, "/"
    req.headers.clear()
    req.headers.update({
        "host": req.host, "authorization": AUTH, "x-amz-date": "20250101T000000Z",
        "x-amz-target": "DynamoDB_20120810.GetItem", "content-type": "application/x-amz-json-1.0",
        "user-agent": "Boto3/1.35.0 md/Botocore#1.35.0 ua/2.0 os/linux", "amz-sdk-invocation-id": "x",
        "amz-sdk-request": "attempt=1; max=3"})
    req.content = b'{"TableName":"t","Key":{"pk":{"S":"a"}}}'
    assert flow.response is not None
    flow.response.status_code = 200
    flow.response.headers.clear()
    flow.response.headers.update({"content-type": "application/x-amz-json-1.0", "x-amzn-requestid": "r"})
    flow.response.content = b"{}"
    return flow


def start_other_experiments(runtime: Runtime, n: int) -> None:
    engine = runtime.engine
    assert engine is not None
    for i in range(n):
        template = ExperimentTemplate.model_validate({
            "id": f"EXTbench{i}", "description": "bench", "roleArn": "arn:aws:iam::123456789012:role/fis",
            "stopConditions": [{"source": "none"}], "targets": {},
            "actions": {"a": {"actionId": "aws:fis:inject-api-throttle-error", "parameters": {
                "service": OTHER_SERVICES[i % len(OTHER_SERVICES)], "percentage": "100", "duration": "PT1H"}}}})
        engine.start_experiment(template, region="us-east-1", tags={}, actions_mode="run-all")
    drive(engine)
    drive(engine)


async def run_flows(addons: list[Any], n: int) -> dict[str, float]:
    """Microseconds per request spent in each addon's hooks."""
    flows = [get_item() for _ in range(n)]
    phases = [[(type(a).__name__, m) for a in addons if (m := getattr(a, h, None)) is not None] for h in HOOKS]
    spent: dict[str, int] = defaultdict(int)
    for flow in flows:
        answer, flow.response = flow.response, None  # the upstream answers after the request hooks
        for i, calls in enumerate(phases):
            if i == 2:
                assert flow.response is None, f"fisproxy answered the call itself: {flow.response.status_code} {flow.response.content[:300]!r}"
                flow.response = answer
            for name, hook in calls:
                t0 = time.perf_counter_ns()
                result = hook(flow)
                if inspect.isawaitable(result):
                    await result
                spent[name] += time.perf_counter_ns() - t0
    return {name: ns / n / 1000 for name, ns in spent.items()}


async def median_of_rounds(addons: list[Any], n: int, rounds: int = 10) -> dict[str, float]:
    """Each addon's median over `rounds` rounds of n / rounds requests: a busy machine's
    bursts move a round, not the figure."""
    runs = [await run_flows(addons, max(1, n // rounds)) for _ in range(rounds)]
    return {name: statistics.median(r[name] for r in runs) for name in runs[0]}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    addons = make_addons()
    runtime = addons[1]
    assert isinstance(runtime, Runtime)
    # A port that accepts connections, standing for the upstream (nothing is forwarded).
    endpoint = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = endpoint.sockets[0].getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp, taddons.context(*addons) as tctx:
        tctx.configure(runtime, fisproxy_state=str(Path(tmp) / "state.sqlite"), fisproxy_control_port=0,
                       fisproxy_aws_endpoint=f"http://127.0.0.1:{port}", fisproxy_seed=1)
        assert runtime.settings is not None and tctx.master is not None
        runtime._open(runtime.settings, asyncio.get_running_loop())
        assert runtime.sink is not None
        await runtime.sink.start()
        runtime.ready = True
        try:
            await run_flows(addons, 2000)  # warm-up: models loaded, caches filled
            results = {"no experiment": await median_of_rounds(addons, args.requests)}
            start_other_experiments(runtime, 5)
            await run_flows(addons, 2000)
            results["5 experiments on other services"] = await median_of_rounds(addons, args.requests)
        finally:
            runtime.ready = False
            runtime.sink.stop()
            runtime._close()
            endpoint.close()
    names = list(results["no experiment"])
    print(f"fisproxy's hooks per DynamoDB GetItem, µs ({args.requests} requests each):")
    print(f"  {'addon':<18}" + "".join(f"{k:>34}" for k in results))
    for name in names:
        print(f"  {name:<18}" + "".join(f"{r.get(name, 0.0):>34.2f}" for r in results.values()))
    print(f"  {'total':<18}" + "".join(f"{sum(r.values()):>34.2f}" for r in results.values()))


if __name__ == "__main__":
    asyncio.run(main())
