"""A Redis outage in a real proxy's log: one warning when it starts, one when it ends (with how
long it lasted), no traceback, whatever the engine's tick, leases, heartbeat and housekeeping
tried meanwhile; and the proxy carries on once Redis is back."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Fisproxy, wait_for_state
from tests.helpers import redis_server_binary, start_redis, stop, wait_until

pytestmark = pytest.mark.skipif(redis_server_binary() is None,
                                reason="redis-server is not installed (.ci/run installs it with apt)")

OUTAGE_SECONDS = 4.0


def test_a_redis_outage_is_two_warnings_not_a_traceback_per_tick(tmp_path: Path, moto: str) -> None:
    redis, port = start_redis(tmp_path / "redis", None, "--appendfsync", "always")
    holder = [redis]
    workdir = tmp_path / "proxy"
    workdir.mkdir()
    proxy = Fisproxy(workdir, moto, extra_args=("--store", f"redis://127.0.0.1:{port}/0"))
    try:
        with proxy.running():
            fis = proxy.fis()
            template = fis.create_experiment_template(
                description="outage", roleArn="arn:aws:iam::123456789012:role/fis",
                stopConditions=[{"source": "none"}],
                actions={"wait": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT10M"}}},
            )["experimentTemplate"]
            exp_id = fis.start_experiment(experimentTemplateId=template["id"])["experiment"]["id"]
            wait_for_state(fis, exp_id, "running")
            before = proxy.log.stat().st_size

            stop(holder[0])  # SIGTERM: Redis saves its AOF and exits
            time.sleep(OUTAGE_SECONDS)
            holder[0], _ = start_redis(tmp_path / "redis", port, "--appendfsync", "always")
            wait_until(lambda: "answers again after" in proxy.log.read_text(errors="replace"), 15,
                       "the end of the outage in the log")

            log = proxy.log.read_bytes()[before:].decode(errors="replace")
            print(f"\n[outage] {OUTAGE_SECONDS:.0f} s without Redis: {len(log)} bytes of log:\n{log}")
            assert "Traceback" not in log, log[:4000]
            warnings = [line for line in log.splitlines()
                        if "WARN" in line or "is unavailable" in line or "answers again after" in line]
            assert len(warnings) == 2, warnings
            assert "is unavailable" in warnings[0] and "answers again after" in warnings[1]
            length = float(re.search(r"after ([0-9.]+) s unavailable", warnings[1])[1])  # type: ignore[index]
            # Measured from the first call that failed to the first that worked: the lease is
            # renewed every 2 s, so the outage is seen within 2 s of Redis going.
            assert OUTAGE_SECONDS - 2.5 <= length < OUTAGE_SECONDS + 15, warnings[1]
            assert len(log) < 4096, f"{len(log)} bytes of log for one outage"

            # Everything works on: the experiment stops, the log stays quiet.
            fis.stop_experiment(id=exp_id)
            wait_for_state(fis, exp_id, "stopped")
    finally:
        stop(holder[0])
