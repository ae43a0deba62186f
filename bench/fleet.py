"""A fleet of N proxies on one Redis: what it costs Redis at idle, and how fast a start and a
stop reach every proxy.

    .venv/bin/python bench/fleet.py [--sizes 10,100,1000] [--processes 4] [--idle-seconds 30]
                                    [--rounds 10] [--history 300] [--appendfsync always]

Each simulated proxy is fisproxy's own store and engine layers, as `fisproxy run` starts them
without mitmproxy: a `RedisStore` (its own connections and change listener thread), an `Engine`
following the change feed, the proxy's `Housekeeping` (heartbeat in the fleet listing,
shared metrics, resync, Chaos rules) and its `ReportDelivery` (FIS's report queue). Many run in each of `--processes` worker processes (so
both cores are used), against one real redis-server started here with `--history` finished
experiments in it. What `EngineLoops` runs on four threads per proxy (tick, persist, upstream,
housekeeping), and the report delivery on a fifth, runs here on five threads per process, each
calling the same method of every proxy of the process at the same interval: a thousand proxies
with six threads each would measure the scheduling of six thousand threads on two cores, not
Redis. The proxy through which experiments start (it runs their schedule) has a process and
threads of its own, as it would in a fleet.

For each N it prints:
- idle: Redis's commands/s and bytes/s (in + out) over `--idle-seconds`, from the deltas of
  INFO's `total_commands_processed` and `total_net_input_bytes`/`total_net_output_bytes`, with
  Redis's own `instantaneous_ops_per_sec`; Redis's CPU (`used_cpu_sys` + `used_cpu_user` deltas,
  percent of one core); and the same per proxy;
- running: the same with one experiment running (every proxy applies it, one renews its lease,
  the others ask for it about when it would expire);
- reach: `--rounds` times, an experiment started through one proxy's engine (as its control API
  does) and stopped through another's: the time from the call until each proxy's rule index
  (what a request reads) has the fault, then no longer has it, p50 and p99 over every proxy of
  every round; when the notice left Redis (a probe subscribed after every proxy); Redis's CPU
  and bytes out per start and stop, and each simulated proxy's own CPU.

The load of the machine (load average, the workers' own CPU) is printed beside the figures:
the simulation's threads share the cores with Redis, and with whatever else runs there.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import redis

from fisproxy.aws.call import AwsCall
from fisproxy.fis.chaos import ChaosState
from fisproxy.fis.engine import Engine
from fisproxy.fis.fleet import LEASE_TTL_SECONDS
from fisproxy.fis.loops import (
    HOUSEKEEPING_SECONDS,
    PERSIST_SECONDS,
    TICK_SECONDS,
    UPSTREAM_SECONDS,
    EngineLoops,
    drive,
)
from fisproxy.fis.models import ExperimentTemplate
from fisproxy.fis.ports import EXPERIMENT_CHANGES
from fisproxy.housekeeping import Housekeeping
from fisproxy.metrics import Metrics
from fisproxy.reports.delivery import POLL_SECONDS as REPORT_POLL_SECONDS
from fisproxy.reports.delivery import ReportDelivery
from fisproxy.reports.service import ReportBuilder
from fisproxy.store.redis import RedisStore
from fisproxy.store.redis.keys import CHANGES

CALL = AwsCall("dynamodb", "us-east-1", "GetItem", "dynamodb", "json", "AKIAIOSFODNN7EXAMPLE")
THROTTLE_PARAMETERS = {"service": "dynamodb", "operations": "GetItem", "percentage": "100"}
REACH_TIMEOUT_SECONDS = 30.0


def template(duration: str | None = None) -> ExperimentTemplate:
    params = {**THROTTLE_PARAMETERS, **({"duration": duration} if duration else {})}
    return ExperimentTemplate.model_validate({
        "id": "EXTbench", "description": "bench", "roleArn": "arn:aws:iam::123456789012:role/fis",
        "targets": {}, "stopConditions": [{"source": "none"}],
        "actions": {"throttle": {"actionId": "aws:fis:inject-api-throttle-error", "parameters": params}}})


# ---- one simulated proxy ----------------------------------------------------------------------

class Proxy:
    """fisproxy's store and engine layers, started as `proxy/runtime.py` starts them."""

    def __init__(self, url: str, proxy_id: str, state_dir: Path) -> None:
        self.id = proxy_id
        self.store = store = RedisStore(url)
        self.engine = engine = Engine(store, state_dir=state_dir, rng=random.Random(proxy_id), proxy_id=proxy_id)
        chaos = ChaosState(load=lambda: store.get_doc("chaos", "config"))
        self.subscriptions = [engine.follower.subscribe(), store.subscribe(("chaos",), lambda kind, key: chaos.reload())]
        metrics = Metrics(engine.active_count, shared=store)
        describe = {"id": proxy_id, "version": "bench", "pid": os.getpid(), "placement": {}, "store": "redis"}
        engine.resume()
        self.housekeeping = Housekeeping(store, engine, proxy_id, lambda: describe, metrics=metrics, chaos=chaos)
        self.reports = ReportDelivery(store, ReportBuilder(url, str(state_dir / "unused.sqlite")), holder=proxy_id)
        self.loops = EngineLoops(engine, housekeeping=self.housekeeping)  # or driven by `Driver`
        # When this proxy's rule index (what a request reads) gets or loses the watched fault.
        self.watch: tuple[str | None, bool] | None = None  # (experiment id or any, wanted: on)
        self.reached: float | None = None
        rules, publish = engine.rules, engine.rules.publish

        def published() -> None:
            before = rules.index
            publish()
            if rules.index is not before:
                self._check()

        rules.publish = published  # type: ignore[method-assign]

    def _check(self) -> None:
        watch, now = self.watch, time.time()
        if watch is None or self.reached is not None:
            return
        exp_id, on = watch
        if any(exp_id in (None, r.experiment_id) for r in self.engine.rules.candidates(CALL)) == on:
            self.reached = now

    def watch_for(self, experiment_id: str | None, on: bool) -> None:
        self.reached = None
        self.watch = (experiment_id, on)
        self._check()  # it may already be so

    def close(self) -> None:
        for sub in self.subscriptions:
            sub.close()
        self.engine.close()
        self.store.close()


class Driver:
    """The engine loops of every proxy of a process: one thread per loop, calling that loop's
    body for each proxy at the loop's interval (`fis/loops.py`)."""

    def __init__(self, proxies: list[Proxy]) -> None:
        self.proxies = proxies
        self.stopping = threading.Event()
        bodies: list[tuple[str, float, Callable[[Proxy], None]]] = [
            ("tick", TICK_SECONDS, lambda p: p.engine.step()),
            ("store", PERSIST_SECONDS, lambda p: p.engine.persist()),
            ("upstream", UPSTREAM_SECONDS, lambda p: p.loops.upstream_round()),
            ("housekeeping", HOUSEKEEPING_SECONDS, lambda p: p.housekeeping()),
            ("reports", REPORT_POLL_SECONDS, lambda p: p.reports.step()),
        ]
        self.threads = [threading.Thread(target=self._run, args=(seconds, body), name=f"bench-{name}", daemon=True)
                        for name, seconds, body in bodies]
        for thread in self.threads:
            thread.start()

    def _run(self, seconds: float, body: Callable[[Proxy], None]) -> None:
        while not self.stopping.is_set():
            began = time.monotonic()
            for proxy in self.proxies:
                try:
                    body(proxy)
                except Exception as e:  # as EngineLoops: one failure stops nothing
                    print(f"    ! {proxy.id}: {e!r}", file=sys.stderr)
            self.stopping.wait(max(0.0, seconds - (time.monotonic() - began)))

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)


def worker(url: str, ids: list[str], state_dir: Path, pipe: Connection, alone: bool) -> None:
    """A process of simulated proxies, driven by the commands of `pipe`. `alone`: one proxy
    with its own `EngineLoops` threads, as `fisproxy run` has them."""
    proxies = []
    for proxy_id in ids:
        proxies.append(Proxy(url, proxy_id, state_dir))
        time.sleep(random.uniform(0, 0.002))  # not all in step (as proxies started one by one)
    if alone:
        for proxy in proxies:
            proxy.loops.start()
            proxy.reports.start()
        driver: Driver | None = None
    else:
        driver = Driver(proxies)
    pipe.send(("ready", len(proxies)))
    while True:
        command, *args = pipe.recv()
        if command == "cpu":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            pipe.send(usage.ru_utime + usage.ru_stime)
        elif command == "watch":
            experiment_id, on = args
            for proxy in proxies:
                proxy.watch_for(experiment_id, on)
            pipe.send("watching")
        elif command == "start":
            began = time.time()
            exp = proxies[args[0]].engine.start_experiment(template(), region="us-east-1", tags={},
                                                            actions_mode="run-all")
            pipe.send((began, exp.id))
        elif command == "stop":
            began = time.time()
            proxies[args[0]].engine.stop_experiment(args[1])
            pipe.send(began)
        elif command == "reached":
            deadline = time.monotonic() + REACH_TIMEOUT_SECONDS
            while any(p.reached is None for p in proxies) and time.monotonic() < deadline:
                time.sleep(0.01)
            pipe.send([p.reached for p in proxies])
        elif command == "settled":  # the experiment ended and is forgotten everywhere
            deadline = time.monotonic() + REACH_TIMEOUT_SECONDS
            while any(p.engine.active_count() for p in proxies) and time.monotonic() < deadline:
                time.sleep(0.02)
            pipe.send(sum(p.engine.active_count() for p in proxies))
        elif command == "quit":
            for proxy in proxies:
                proxy.loops.stop()
                proxy.reports.stop()
            if driver is not None:
                driver.stop()
            for proxy in proxies:
                proxy.close()
            pipe.send("bye")
            return


class Fleet:
    """N simulated proxies: sim-0, through which experiments start (it runs their schedule),
    alone in a process with its own threads, as a real proxy is; the others in `processes`
    worker processes (forked: the imports are done)."""

    def __init__(self, url: str, n: int, processes: int, state_dir: Path) -> None:
        ctx = multiprocessing.get_context("fork")
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        self.sizes: list[int] = []
        processes = min(processes, n - 1)
        groups = [["sim-0"]] + [[f"sim-{i}" for i in range(1, n) if i % processes == w] for w in range(processes)]
        for w, ids in enumerate(groups):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=worker, args=(url, ids, state_dir, there, w == 0), daemon=True)
            proc.start()
            self.pipes.append(here)
            self.procs.append(proc)
            self.sizes.append(len(ids))
        for pipe in self.pipes:
            assert pipe.recv()[0] == "ready"

    def ask(self, w: int, *command: Any) -> Any:
        self.pipes[w].send(command)
        return self.pipes[w].recv()

    def ask_all(self, *command: Any) -> list[Any]:
        for pipe in self.pipes:
            pipe.send(command)
        return [pipe.recv() for pipe in self.pipes]

    def close(self) -> None:
        try:
            self.ask_all("quit")
        finally:
            for proc in self.procs:
                proc.join(30)
                if proc.is_alive():
                    proc.kill()


# ---- Redis ------------------------------------------------------------------------------------

def start_redis(directory: Path, appendfsync: str) -> tuple[subprocess.Popen, int]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("bench/fleet.py needs redis-server (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
         "--appendfsync", appendfsync, "--maxclients", "10000", "--dir", str(directory),
         "--logfile", str(directory / "redis.log")], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            redis.Redis(port=port).ping()
            return proc, port
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.05)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fill(url: str, state_dir: Path, n: int) -> None:
    """`n` finished experiments, run and stopped through the real engine."""
    store = RedisStore(url)
    engine = Engine(store, state_dir=state_dir, rng=random.Random(0), proxy_id="history")
    try:
        for _ in range(n):
            exp = engine.start_experiment(template("PT10M"), region="us-east-1", tags={}, actions_mode="run-all")
            drive(engine)
            engine.stop_experiment(exp.id)
        drive(engine)
    finally:
        engine.close()
        store.close()


def server_stats(r: redis.Redis) -> dict[str, float]:
    info: dict[str, Any] = {**r.info("stats"), **r.info("cpu")}
    return {k: float(info[k]) for k in ("total_commands_processed", "total_net_input_bytes", "total_net_output_bytes",
                                        "used_cpu_sys", "used_cpu_user", "instantaneous_ops_per_sec")}


# ---- measurements ------------------------------------------------------------------------------

class Probe:
    """A plain subscriber of the change channel, subscribed after every proxy (so Redis writes
    to it last): when a notice left Redis, as near as a client can tell."""

    def __init__(self, r: redis.Redis) -> None:
        self.pubsub = r.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(CHANGES)
        self.seen: list[tuple[float, str, str]] = []  # (time, experiment id, "running" or "stop")
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            message = self.pubsub.get_message(timeout=0.25)
            if message is None:
                continue
            at = time.time()
            kind, key, *data = json.loads(message["data"])
            if kind == EXPERIMENT_CHANGES and data:
                if "stop" in data[0]:
                    self.seen.append((at, key, "stop"))
                elif data[0].get("experiment", {}).get("state", {}).get("status") == "running":
                    self.seen.append((at, key, "running"))

    def first(self, experiment_id: str, what: str) -> float | None:
        return next((t for t, key, w in self.seen if key == experiment_id and w == what), None)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.pubsub.close()


def measure_idle(r: redis.Redis, fleet: Fleet, seconds: float) -> dict[str, float]:
    """Redis's figures over `seconds` from INFO (our own INFO calls taken out)."""
    cpu0, t0, a = sum(fleet.ask_all("cpu")), time.monotonic(), server_stats(r)
    samples = []
    end = t0 + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(5.0, left))
        samples.append(float(r.info("stats")["instantaneous_ops_per_sec"]))
    b, elapsed, cpu1 = server_stats(r), time.monotonic() - t0, sum(fleet.ask_all("cpu"))
    calls = b["total_commands_processed"] - a["total_commands_processed"] - 2 - len(samples)  # ours
    return {
        "seconds": elapsed,
        "ops": calls / elapsed,
        "instantaneous": statistics.mean(samples),
        "bytes": (b["total_net_input_bytes"] - a["total_net_input_bytes"]
                  + b["total_net_output_bytes"] - a["total_net_output_bytes"]) / elapsed,
        "redis_cpu": (b["used_cpu_sys"] + b["used_cpu_user"] - a["used_cpu_sys"] - a["used_cpu_user"]) / elapsed,
        "workers_cpu": (cpu1 - cpu0) / elapsed,
    }


def measure_running(r: redis.Redis, fleet: Fleet, seconds: float) -> dict[str, float]:
    """The same with one experiment running: every proxy applies it, one renews its lease,
    the others ask for the lease about when it would expire."""
    fleet.ask_all("watch", None, True)
    _, exp_id = fleet.ask(0, "start", 0)
    fleet.ask_all("reached")
    time.sleep(LEASE_TTL_SECONDS * 1.2)  # past the mirrors' first claims: the steady state
    figures = measure_idle(r, fleet, seconds)
    fleet.ask(0, "stop", 0, exp_id)
    fleet.ask_all("settled")
    return figures


Reach = dict[str, list[float]]


def measure_reach(r: redis.Redis, fleet: Fleet, probe: Probe, rounds: int) -> Reach:
    """Per-proxy start and stop latencies of every round, each round's slowest proxy, and when
    the notice that carried them left Redis (at the probe)."""
    out: Reach = {k: [] for k in ("start", "stop", "slowest_start", "slowest_stop", "probe_start", "probe_stop")}
    last = len(fleet.pipes) - 1
    cpu, began_all, redis_before = sum(fleet.ask_all("cpu")), time.monotonic(), server_stats(r)
    for _ in range(rounds):
        fleet.ask_all("watch", None, True)  # the fault of any experiment (only this one runs)
        began, exp_id = fleet.ask(0, "start", 0)  # through sim-0: it runs the schedule
        times = [t for worker_times in fleet.ask_all("reached") for t in worker_times]
        missed = sum(t is None for t in times)
        out["start"] += [t - began for t in times if t is not None]
        out["slowest_start"].append(max(t - began for t in times if t is not None))
        if (seen := probe.first(exp_id, "running")) is not None:
            out["probe_start"].append(seen - began)
        fleet.ask_all("watch", exp_id, False)
        began = fleet.ask(last, "stop", fleet.sizes[last] - 1, exp_id)  # through another proxy
        times = [t for worker_times in fleet.ask_all("reached") for t in worker_times]
        missed += sum(t is None for t in times)
        out["stop"] += [t - began for t in times if t is not None]
        out["slowest_stop"].append(max(t - began for t in times if t is not None))
        if (seen := probe.first(exp_id, "stop")) is not None:
            out["probe_stop"].append(seen - began)
        if missed:
            print(f"    ! {missed} proxies not reached within {REACH_TIMEOUT_SECONDS:.0f} s")
        if left := sum(fleet.ask_all("settled")):
            print(f"    ! {left} proxies still hold the experiment")
    out["cpu"] = [sum(fleet.ask_all("cpu")) - cpu, time.monotonic() - began_all]
    redis_after = server_stats(r)
    out["redis_cpu"] = [sum(redis_after[k] - redis_before[k] for k in ("used_cpu_sys", "used_cpu_user"))]
    out["redis_out"] = [redis_after["total_net_output_bytes"] - redis_before["total_net_output_bytes"]]
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


Row = tuple[int, dict[str, float], dict[str, float], Reach]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000", help="numbers of simulated proxies")
    parser.add_argument("--processes", type=int, default=4, help="worker processes for the proxies")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--history", type=int, default=300, help="finished experiments in the store")
    parser.add_argument("--appendfsync", default="always", choices=("always", "everysec", "no"))
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop Redis and the workers on the way out
    sizes = [int(s) for s in args.sizes.split(",")]
    need = 2 * max(sizes) + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))

    with tempfile.TemporaryDirectory(prefix="fisproxy-fleet-") as tmp:
        work = Path(tmp)
        (work / "redis").mkdir()
        proc, port = start_redis(work / "redis", args.appendfsync)
        url = f"redis://127.0.0.1:{port}/0"
        r = redis.Redis(port=port)
        rows: list[Row] = []
        try:
            began = time.monotonic()
            fill(url, work, args.history)
            print(f"redis-server {r.info('server')['redis_version']} (appendonly yes, appendfsync "
                  f"{args.appendfsync}); {args.history} finished experiments written in "
                  f"{time.monotonic() - began:.1f} s; {os.cpu_count()} cores, load {load()}")
            for n in sizes:
                rows.append(measure(url, r, n, args, work))
        finally:
            r.close()
            proc.terminate()
            proc.wait(30)
    print_table(rows, args)


def measure(url: str, r: redis.Redis, n: int, args: argparse.Namespace, work: Path) -> Row:
    began = time.monotonic()
    fleet = Fleet(url, n, args.processes, work)
    probe = Probe(r)
    try:
        print(f"N={n}: {len(fleet.pipes)} processes, started in {time.monotonic() - began:.1f} s")
        time.sleep(3)  # start-up reads and registrations done
        idle = measure_idle(r, fleet, args.idle_seconds)
        print(f"    idle: {idle['ops']:.0f} commands/s, {idle['bytes'] / 1024:.1f} KB/s, Redis CPU "
              f"{100 * idle['redis_cpu']:.1f}%; workers' CPU {100 * idle['workers_cpu']:.0f}% (of one core), "
              f"load {load()}")
        running = measure_running(r, fleet, args.idle_seconds)
        print(f"    one experiment running: {running['ops']:.0f} commands/s, {running['bytes'] / 1024:.1f} KB/s, "
              f"Redis CPU {100 * running['redis_cpu']:.1f}%, load {load()}")
        reach = measure_reach(r, fleet, probe, args.rounds)
        cpu, seconds = reach["cpu"]
        per_round = (cpu - idle["workers_cpu"] * seconds) / args.rounds / n  # the proxies' own CPU
        reach["cpu_per_proxy"] = [per_round]
        redis_per_round = (reach["redis_cpu"][0] - idle["redis_cpu"] * seconds) / args.rounds
        reach["redis_per_round"] = [redis_per_round, reach["redis_out"][0] / args.rounds]
        print(f"    start p50 {pct(reach['start'], 0.5):.2f} s p99 {pct(reach['start'], 0.99):.2f} s "
              f"(left Redis {pct(reach['probe_start'], 0.5):.2f} s), stop p50 {pct(reach['stop'], 0.5):.2f} s "
              f"p99 {pct(reach['stop'], 0.99):.2f} s (left Redis {pct(reach['probe_stop'], 0.5):.2f} s), "
              f"each proxy's CPU for a start and a stop {per_round * 1000:.1f} ms, Redis's "
              f"{redis_per_round * 1000:.0f} ms and {reach['redis_out'][0] / args.rounds / 1024:,.0f} KB out, "
              f"load {load()}")
        return n, idle, running, reach
    finally:
        probe.close()
        fleet.close()


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    print(f"\nIdle: over {args.idle_seconds:.0f} s, {args.history} finished experiments in the store. "
          f"Running: the same with one experiment running. Start and stop: {args.rounds} rounds, p50 / p99 "
          f"over every proxy of every round, and (in brackets) p50 of when the notice left Redis (at a "
          f"subscriber after all the proxies).")
    print("| proxies | idle: Redis commands/s (per proxy) | idle: Redis bytes/s (per proxy) | idle: Redis CPU "
          "| running: commands/s (per proxy) | start reaches each proxy | stop reaches each proxy "
          "| a proxy's CPU per start and stop | Redis's CPU (and bytes out) per start and stop |")
    print("|---:|---:|---:|---:|---:|---|---|---:|---:|")
    for n, idle, running, reach in rows:
        print(f"| {n:,} | {idle['ops']:,.0f} ({idle['ops'] / n:.2f}) | {idle['bytes'] / 1024:,.1f} KB/s "
              f"({idle['bytes'] / n:,.0f} B/s) | {100 * idle['redis_cpu']:.1f}% "
              f"| {running['ops']:,.0f} ({running['ops'] / n:.2f}) "
              f"| {pct(reach['start'], 0.5):.2f} / {pct(reach['start'], 0.99):.2f} s "
              f"({pct(reach['probe_start'], 0.5):.2f} s) "
              f"| {pct(reach['stop'], 0.5):.2f} / {pct(reach['stop'], 0.99):.2f} s "
              f"({pct(reach['probe_stop'], 0.5):.2f} s) | {reach['cpu_per_proxy'][0] * 1000:.1f} ms "
              f"| {reach['redis_per_round'][0] * 1000:.0f} ms ({reach['redis_per_round'][1] / 1024:,.0f} KB) |")


if __name__ == "__main__":
    main()
