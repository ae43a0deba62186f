"""What an idle proxy costs its Redis, end to end: real `fisproxy run` proxies on one real
redis-server holding hundreds of finished experiments, counted with Redis's own INFO.

Issue 17: a proxy's steady cost on the store must not grow with history (it was 32 commands/s
and 28 KB/s per proxy with 300 finished experiments: every resync read them all). The bound is
a count of commands and bytes over a window that holds every periodic task of a proxy (two
resyncs, a report-queue sweep): a slower machine fires its timers later, so it can only count
fewer."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from fisproxy.fis.engine import Engine
from fisproxy.fis.loops import drive
from fisproxy.fis.models import ExperimentTemplate
from fisproxy.housekeeping import RESYNC_SECONDS
from fisproxy.reports.delivery import SWEEP_SECONDS
from fisproxy.store.redis import RedisStore
from tests.e2e.test_fleet import start_fleet
from tests.helpers import redis_server_binary, start_redis, stop, wait_until

pytestmark = pytest.mark.skipif(redis_server_binary() is None,
                                reason="redis-server is not installed (.ci/run installs it with apt)")

FINISHED = 300
PROXIES = 3
WINDOW_SECONDS = max(2 * RESYNC_SECONDS, SWEEP_SECONDS) + 2  # every periodic task, at least once
# Issue 17's goal for an idle proxy, whatever the history.
MAX_COMMANDS_PER_SECOND = 5
MAX_BYTES_PER_SECOND = 4096


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    proc, port = start_redis(tmp_path / "redis")
    yield port
    stop(proc)


def fill(url: str, state_dir: Path, n: int) -> None:
    """`n` experiments run and stopped through the real engine (one action each, logs and
    runtime as a proxy writes them), in a few seconds."""
    template = ExperimentTemplate.model_validate({
        "id": "EXTfill", "description": "history", "roleArn": "arn:aws:iam::123456789012:role/fis",
        "targets": {}, "stopConditions": [{"source": "none"}],
        "actions": {"throttle": {"actionId": "aws:fis:inject-api-throttle-error",
                                 "parameters": {"service": "dynamodb", "operations": "GetItem,PutItem",
                                                "percentage": "50", "duration": "PT10M"}}}})
    store = RedisStore(url)
    engine = Engine(store, state_dir=state_dir, rng=random.Random(0), proxy_id="history")
    try:
        for _ in range(n):
            exp = engine.start_experiment(template, region="us-east-1", tags={"run": "history"},
                                          actions_mode="run-all")
            drive(engine)
            engine.stop_experiment(exp.id)
        drive(engine)
    finally:
        engine.close()
        store.close()


def stats(r: redis.Redis) -> dict[str, int]:
    info: dict[str, Any] = r.info("stats")
    return {k: int(info[k]) for k in ("total_commands_processed", "total_net_input_bytes",
                                      "total_net_output_bytes")}


def commands_by_name(r: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in r.info("commandstats").items()}


def test_an_idle_proxy_costs_redis_a_few_commands_whatever_the_history(
    tmp_path: Path, moto: str, redis_port: int,
) -> None:
    url = f"redis://127.0.0.1:{redis_port}/0"
    began = time.monotonic()
    fill(url, tmp_path, FINISHED)
    r = redis.Redis(port=redis_port, decode_responses=True)
    try:
        experiments = r.hvals("fisproxy:experiment")
        assert len(experiments) == FINISHED and all('"status":"stopped"' in e for e in experiments)
        print(f"\n[fleet cost] {FINISHED} finished experiments written in {time.monotonic() - began:.1f} s "
              f"({r.memory_usage('fisproxy:experiment') or 0} bytes of experiments)")
        proxies = start_fleet(tmp_path, moto, url, [None] * PROXIES)
        try:
            wait_until(lambda: r.zcard("fisproxy:proxies") == PROXIES, 30, "every proxy registered")
            time.sleep(1)  # start-up reads done
            before, calls_before, t0 = stats(r), commands_by_name(r), time.monotonic()
            time.sleep(WINDOW_SECONDS)
            after, calls_after, seconds = stats(r), commands_by_name(r), time.monotonic() - t0
        finally:
            for proxy in proxies:
                proxy.stop()
    finally:
        r.close()
    commands = after["total_commands_processed"] - before["total_commands_processed"] - 2  # our INFOs
    traffic = (after["total_net_input_bytes"] - before["total_net_input_bytes"]
               + after["total_net_output_bytes"] - before["total_net_output_bytes"])
    per_proxy = commands / PROXIES
    by_name = {n: c - calls_before.get(n, 0) for n, c in calls_after.items() if c - calls_before.get(n, 0)}
    print(f"[fleet cost] {PROXIES} idle proxies, {FINISHED} finished experiments, {seconds:.1f} s: "
          f"{per_proxy:.0f} commands per proxy ({per_proxy / seconds:.2f}/s), "
          f"{traffic / PROXIES / seconds:.0f} bytes/s per proxy; commands: {by_name}")
    assert per_proxy <= MAX_COMMANDS_PER_SECOND * WINDOW_SECONDS, by_name
    assert traffic / PROXIES <= MAX_BYTES_PER_SECOND * WINDOW_SECONDS
    # Nothing read the history: no HGETALL/HVALS of experiments, no per-experiment HGET storm.
    assert by_name.get("hget", 0) <= 2 * PROXIES * (WINDOW_SECONDS / RESYNC_SECONDS + 1), by_name
