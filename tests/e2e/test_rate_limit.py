"""fisproxy:api:rate-limit end to end: a client sending at three times the rate R, through one real
`fisproxy run` and then through three on one real redis-server (scope fleet), gets R calls a
second plus the burst through, within 10 %, and DynamoDB's own ThrottlingException for the rest."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest

from tests.e2e.conftest import Fisproxy, wait_for_state
from tests.e2e.test_fleet import start_fleet
from tests.helpers import redis_server_binary, start_redis, stop, wait_until

ROLE = "arn:aws:iam::123456789012:role/fis"
# Small numbers: eight test sessions share the machine's two cores, and the client must still be
# able to send at three times the rate.
RATE, BURST = 5, 5  # calls a second, and at once (one proxy)
FLEET_RATE, FLEET_BURST = 10, 10  # three proxies share the load: three processes
WINDOW = 12.0  # seconds the client sends, well inside the action's 30 s


class Sent:
    def __init__(self) -> None:
        self.passed = 0
        self.throttled = 0
        self.errors: list[BaseException] = []  # a client thread's failure fails the test
        self.lock = threading.Lock()


def paced(client: Any, per_second: float, seconds: float, sent: Sent) -> None:
    try:
        _paced(client, per_second, seconds, sent)
    except BaseException as e:
        with sent.lock:
            sent.errors.append(e)


def _paced(client: Any, per_second: float, seconds: float, sent: Sent) -> None:
    """ListTables at `per_second` (catching up if a call is slow) until `seconds` have passed;
    throttled calls must be DynamoDB's own error, labelled as the rate limit's."""
    began = time.monotonic()
    end = began + seconds
    n = 0
    while (due := began + n / per_second) < end:
        if (delay := due - time.monotonic()) > 0:
            time.sleep(delay)
        if time.monotonic() >= end:
            break
        try:
            client.list_tables()
            passed = True
        except botocore.exceptions.ClientError as e:
            assert e.response["Error"]["Code"] == "ThrottlingException", e.response["Error"]
            assert e.response["ResponseMetadata"]["HTTPHeaders"]["x-fisproxy-fault"].endswith("/limit/rate-limit")
            passed = False
        with sent.lock:
            if passed:
                sent.passed += 1
            else:
                sent.throttled += 1
        n += 1


def start(proxy: Fisproxy, scope: str, rate: int = RATE, burst: int = BURST) -> str:
    """The rate limit on ListTables, and a probe: DescribeLimits throttled, so a test can see a
    proxy apply the experiment's actions without spending the limit's tokens."""
    fis = proxy.fis()
    template = fis.create_experiment_template(
        description="rate limit", roleArn=ROLE, stopConditions=[{"source": "none"}], targets={},
        actions={
            "limit": {"actionId": "fisproxy:api:rate-limit",
                      "parameters": {"service": "dynamodb", "operations": "ListTables", "requestsPerSecond": str(rate),
                                     "burst": str(burst), "scope": scope, "duration": "PT30S"}},
            "probe": {"actionId": "fisproxy:api:error",
                      "parameters": {"service": "dynamodb", "operations": "DescribeLimits", "duration": "PT30S"}},
        })["experimentTemplate"]
    exp_id = fis.start_experiment(experimentTemplateId=template["id"])["experiment"]["id"]
    wait_for_state(fis, exp_id, "running")
    return exp_id


def applies(proxy: Fisproxy) -> bool:
    try:
        proxy.client("dynamodb", retries={"total_max_attempts": 1}).describe_limits()
    except botocore.exceptions.ClientError:
        return True
    return False


def client(proxy: Fisproxy) -> Any:
    return proxy.client("dynamodb", retries={"mode": "standard", "total_max_attempts": 1})


def expected(rate: int = RATE, burst: int = BURST) -> float:
    return rate * WINDOW + burst


THREADS = 4  # clients per proxy: a slow answer (a busy machine) does not hold the rate back


def send(proxies: list[Fisproxy], per_second: float, seconds: float) -> Sent:
    """Send at `per_second` in all, spread over the proxies, THREADS clients each."""
    sent = Sent()
    each = per_second / (len(proxies) * THREADS)
    threads = [threading.Thread(target=paced, args=(client(p), each, seconds, sent))
               for p in proxies for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not sent.errors, sent.errors
    return sent


def test_one_proxy_lets_through_the_rate_times_the_window_plus_the_burst(fisproxy: Fisproxy) -> None:
    exp_id = start(fisproxy, "proxy")
    try:
        wait_until(lambda: applies(fisproxy), 10, "the proxy to apply the experiment")
        sent = send([fisproxy], 3 * RATE, WINDOW)
        print(f"\n[rate-limit] one proxy: {sent.passed} of {sent.passed + sent.throttled} calls through; "
              f"expected {expected():.0f}")
        assert sent.passed + sent.throttled >= 1.5 * RATE * WINDOW  # the client did send well over the rate
        assert sent.passed == pytest.approx(expected(), rel=0.1)
    finally:
        fisproxy.fis().stop_experiment(id=exp_id)
        wait_for_state(fisproxy.fis(), exp_id, "stopped")
    client(fisproxy).list_tables()  # the limit ended with the experiment


@pytest.fixture
def fleet(tmp_path: Path, moto: str) -> Iterator[list[Fisproxy]]:
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (.ci/run installs it with apt)")
    proc, port = start_redis(tmp_path / "redis")
    proxies: list[Fisproxy] = []
    try:
        proxies = start_fleet(tmp_path, moto, f"redis://127.0.0.1:{port}/0", [None, None, None])
        yield proxies
    finally:
        for proxy in proxies:
            proxy.stop()
        stop(proc)


def test_three_proxies_on_one_redis_share_the_fleet_rate(fleet: list[Fisproxy]) -> None:
    exp_id = start(fleet[0], "fleet", FLEET_RATE, FLEET_BURST)
    try:
        for proxy in fleet:
            wait_until(lambda p=proxy: applies(p), 10, "every proxy to apply the experiment")
        sent = send(fleet, 3 * FLEET_RATE, WINDOW)
        want = expected(FLEET_RATE, FLEET_BURST)
        print(f"\n[rate-limit] three proxies, one Redis: {sent.passed} of {sent.passed + sent.throttled} "
              f"calls through; expected {want:.0f}")
        assert sent.passed + sent.throttled >= 1.5 * FLEET_RATE * WINDOW
        assert sent.passed == pytest.approx(want, rel=0.1)
    finally:
        fleet[1].fis().stop_experiment(id=exp_id)
        wait_for_state(fleet[0].fis(), exp_id, "stopped")


def test_a_proxy_scope_limit_applies_per_proxy_in_a_fleet(fleet: list[Fisproxy]) -> None:
    """With scope proxy, each of the three lets its own rate through: together, about three
    times what the fleet scope lets through (clients at twice the rate on each)."""
    exp_id = start(fleet[0], "proxy")
    try:
        for proxy in fleet:
            wait_until(lambda p=proxy: applies(p), 10, "every proxy to apply the experiment")
        sent = send(fleet, 3 * 2 * RATE, WINDOW / 2)
        one = RATE * WINDOW / 2 + BURST
        print(f"\n[rate-limit] scope proxy, three proxies: {sent.passed} through; {3 * one:.0f} at most")
        assert 2 * one < sent.passed <= 3 * one * 1.1
    finally:
        fleet[0].fis().stop_experiment(id=exp_id)
        wait_for_state(fleet[0].fis(), exp_id, "stopped")
