"""Does control-plane work stall traffic? Latency of unrelated calls through fisproxy, side by side.

    .venv/bin/python bench/stall.py [--requests 2000] [--records 1000000]

One fisproxy process, one upstream, one client sending pass-through calls (SigV4 DynamoDB
GetItem that no experiment targets) over a keep-alive connection, one at a time, timing each.
The same client runs while fisproxy is:

  idle          doing nothing else
  report        building the report of an experiment over `--records` recorded requests, again
                and again (a second client asks for it in a loop)
  experiments   running 100 experiments (on services the client does not call)
  control       answering 50 control calls a second (create + get + delete a template)

and prints p50, p99 and max of each, and p99 minus idle's p99, measured in the same run. The goal
is p99 within 2 ms of idle: nothing on mitmproxy's event loop waits on storage.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import BODY, HEADERS, UPSTREAM, VENV_BIN, free_port, start, wait_port  # noqa: E402

STARTED = 1_764_000_000.0  # the long experiment's window, in the past


def fis_client(control: int):  # type: ignore[no-untyped-def]
    import boto3
    from botocore.config import Config

    return boto3.client("fis", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{control}",
                        aws_access_key_id="x", aws_secret_access_key="x",
                        config=Config(proxies={}, retries={"total_max_attempts": 1}))


def seed_records(state: Path, n: int) -> str:
    """A finished experiment spanning `n` recorded requests, written into the state file before
    fisproxy starts (as a long experiment would leave it)."""
    from fisproxy.fis.models import Experiment
    from fisproxy.fis.runstate import RunState
    from fisproxy.store import Store

    store = Store(state)
    exp = Experiment.model_validate({
        "id": "EXPbenchreport", "arn": "arn:aws:fis:us-east-1:123456789012:experiment/EXPbenchreport",
        "experimentTemplateId": "EXTbench", "roleArn": "arn:aws:iam::123456789012:role/fis",
        "state": {"status": "completed", "reason": "Experiment completed."},
        "targets": {}, "stopConditions": [{"source": "none"}],
        "actions": {"throttle": {"actionId": "aws:fis:inject-api-throttle-error",
                                 "parameters": {"service": "dynamodb", "operations": "PutItem"},
                                 "state": {"status": "completed", "reason": "Action was completed."},
                                 "startTime": STARTED, "endTime": STARTED + n / 100}},
        "creationTime": STARTED, "startTime": STARTED, "endTime": STARTED + n / 100,
    })
    store.put_experiment(exp, RunState(region="us-east-1"))
    store.close()
    db = sqlite3.connect(state)
    with db:
        db.executemany(
            "INSERT INTO requests (time, duration_ms, service, operation, region, faults, status, "
            "invocation_id, attempt) VALUES (?, 2.0, 'dynamodb', 'PutItem', 'us-east-1', ?, ?, ?, ?)",
            ((STARTED + i / 100, '["EXPbenchreport/throttle/error"]' if i % 3 else "[]",
              400 if i % 3 else 200, f"inv-{i // 3}", i % 3 + 1) for i in range(n)))
    db.close()
    return "EXPbenchreport"


def latencies(proxy: int, upstream: int, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", proxy)
    target = f"http://127.0.0.1:{upstream}/"
    headers = {**HEADERS, "Host": f"127.0.0.1:{upstream}"}
    out = []
    for i in range(n + 50):
        t0 = time.perf_counter()
        conn.request("POST", target, BODY, headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"unexpected status {resp.status}")
        if i >= 50:  # warm-up
            out.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return out


@contextmanager
def background(work: Callable[[threading.Event], None]) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=work, args=(stop,), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(60)


def report_loop(control: int, experiment_id: str) -> Callable[[threading.Event], None]:
    def work(stop: threading.Event) -> None:
        while not stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", control, timeout=300)
            conn.request("GET", f"/_fisproxy/experiments/{experiment_id}/report")
            body = conn.getresponse().read()
            json.loads(body)
            conn.close()
    return work


def control_calls(control: int, per_second: float) -> Callable[[threading.Event], None]:
    def work(stop: threading.Event) -> None:
        fis = fis_client(control)
        interval = 3 / per_second  # three calls per round
        next_at = time.monotonic()
        while not stop.is_set():
            t = fis.create_experiment_template(
                description="bench control", roleArn="arn:aws:iam::123456789012:role/fis",
                stopConditions=[{"source": "none"}],
                actions={"w": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1M"}}},
            )["experimentTemplate"]["id"]
            fis.get_experiment_template(id=t)
            fis.delete_experiment_template(id=t)
            next_at += interval
            stop.wait(max(0.0, next_at - time.monotonic()))
    return work


def run_experiments(control: int, count: int) -> list[str]:
    fis = fis_client(control)
    ids = []
    for i in range(count):
        t = fis.create_experiment_template(
            description=f"bench {i}", roleArn="arn:aws:iam::123456789012:role/fis",
            stopConditions=[{"source": "none"}],
            actions={"a": {"actionId": "fisproxy:api:latency",
                           "parameters": {"service": "sqs", "latencyMilliseconds": "1"}}},
        )["experimentTemplate"]["id"]
        ids.append(fis.start_experiment(experimentTemplateId=t)["experiment"]["id"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pages = fis.get_paginator("list_experiments").paginate()
        if sum(e["state"]["status"] == "running" for p in pages for e in p["experiments"]) >= count:
            return ids
        time.sleep(0.5)
    raise RuntimeError("experiments did not start")


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def start_fisproxy(workdir: Path, extra: list[str]) -> tuple[subprocess.Popen, int, int]:
    port, control = free_port(), free_port()
    proc = start([str(VENV_BIN / "fisproxy"), "run", "--quiet", "--port", str(port),
                  "--control-port", str(control), "--state", str(workdir / "state.sqlite"),
                  "--certs", str(workdir / "certs"), *extra], port)
    wait_port(control)
    return proc, port, control


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="timed calls per scenario per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=1_000_000, help="recorded requests in the report")
    parser.add_argument("--experiments", type=int, default=100)
    parser.add_argument("--control-rate", type=float, default=50.0, help="control calls per second")
    args = parser.parse_args()

    procs: list[subprocess.Popen] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            up = free_port()
            procs.append(start([sys.executable, "-c", UPSTREAM, str(up)], up))
            # One fisproxy per scenario, measured in interleaved rounds: machine noise hits all
            # alike, and each scenario's background work runs only while it is measured.
            dirs = {name: Path(tmp) / name for name in ("idle", "report", "experiments", "control")}
            for d in dirs.values():
                d.mkdir()
            print(f"writing {args.records} request records ...", flush=True)
            experiment_id = seed_records(dirs["report"] / "state.sqlite", args.records)
            quota = ["--set", f"fisproxy_max_active_experiments={args.experiments}"]
            ports: dict[str, tuple[int, int]] = {}
            for name, d in dirs.items():
                proc, port, control = start_fisproxy(d, quota)
                procs.append(proc)
                ports[name] = (port, control)
            run_experiments(ports["experiments"][1], args.experiments)
            loads: dict[str, Callable[[threading.Event], None] | None] = {
                "idle": None,
                "report": report_loop(ports["report"][1], experiment_id),
                "experiments": None,  # 100 running experiments: their engine works all along
                "control": control_calls(ports["control"][1], args.control_rate),
            }
            results: dict[str, list[list[float]]] = {name: [] for name in loads}
            for r in range(args.rounds):
                for name, work in loads.items():
                    port = ports[name][0]
                    if work is None:
                        results[name].append(latencies(port, up, args.requests))
                    else:
                        with background(work):
                            time.sleep(0.5)
                            results[name].append(latencies(port, up, args.requests))
                print(f"round {r + 1}: " + ", ".join(f"{n} p99 {p99(v[-1]):.2f} ms" for n, v in results.items()),
                      flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)

    print(f"\n{args.requests} sequential pass-through calls per scenario per round, {args.rounds} rounds "
          "(keep-alive, http.client):")
    for name, rounds in results.items():
        values = [v for round_values in rounds for v in round_values]
        line = (f"  {name:12} p50 {statistics.median(values):6.2f} ms   p99 {p99(values):6.2f} ms   "
                f"max {max(values):7.2f} ms")
        if name != "idle":
            deltas = [p99(a) - p99(b) for a, b in zip(rounds, results["idle"], strict=True)]
            line += f"   p99 - idle p99 (median of rounds) {statistics.median(deltas):+6.2f} ms"
        print(line)


if __name__ == "__main__":
    main()
