"""Suite-wide: a test session leaves no process running; tests marked `slow` run with `--slow`;
the longest files run first (`LONGEST_FIRST`); the `no_backoff` fixture.

Every subprocess a test starts inherits a mark in its environment (clean_env copies it too), so
a process that outlives the session is found even after its parent died and it was re-parented.
At the end of the session, after every other fixture has stopped what it started, anything
still alive is listed with its command line, killed, and reported as an error. Under
pytest-xdist each worker is a session of its own, with its own mark: a worker checks what it
started, never what another worker is still running.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator

import psutil
import pytest

from tests.helpers import (
    SESSION_MARK,
    SkippedBackoff,
    backoff_skipped,
    describe,
    leftover_processes,
)

GRACE_SECONDS = 5  # for processes that were told to stop and are still exiting

os.environ[SESSION_MARK] = uuid.uuid4().hex  # at import, before any test module starts anything
# The suite's proxies record themselves in a runtime folder of the session's own, never where a
# user's shell looks (fisproxy/cli/runtimefile.py): `fisproxy env` there must not find them.
RUNTIME_DIR = os.environ["FISPROXY_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="fisproxy-tests-run-")

SLOW_REASON = "slow (memory peaks, 200 MiB bodies): run with --slow (make test SLOW=1; CI does)"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true",
                     help="also run the tests marked slow (memory peaks, 200 MiB bodies)")


# The files that take longest, longest first (seconds of wall on 3 workers, a busy 2-core machine,
# December 2026). `make test` runs files whole on xdist workers (`--dist loadfile`) in collection
# order (`--no-loadscope-reorder`): these start first, so none of them is left running alone at
# the end while the other workers idle. (xdist's default order, most tests first, put exactly
# these, with one to five tests each, last.) A file not listed keeps its place after them.
LONGEST_FIRST = (
    "tests/e2e/test_fleet.py",  # 127
    "tests/e2e/test_az_scenario.py",  # 94
    "tests/e2e/test_cli_login.py",  # 85
    "tests/e2e/test_rate_limit.py",  # 80
    "tests/e2e/test_durability.py",  # 75
    "tests/e2e/test_experiment_reports.py",  # 72
    "tests/fis/test_fuzz_control_api.py",  # 65
    "tests/e2e/test_mitmproxy_options.py",  # 63
    "tests/test_one_ca.py",  # 57
    "tests/e2e/test_fleet_cost.py",  # 48
    "tests/e2e/test_resources.py",  # 47
    "tests/cli/test_main.py",  # 44
    "tests/e2e/test_malformed.py",  # 41
    "tests/aws/test_identify.py",  # 36
    "tests/e2e/test_workers.py",  # 36
    "tests/e2e/test_console.py",  # 33
    "tests/e2e/test_network.py",  # 32
    "tests/proxy/test_auth.py",  # 29
    "tests/e2e/test_faults.py",  # 26
    "tests/aws/test_errors.py",  # 25
    "tests/e2e/test_log_delivery_role.py",  # 25
    "tests/e2e/test_fis_cli.py",  # 24
    "tests/e2e/test_walkthrough.py",  # 23
    "tests/e2e/test_secrets.py",  # 23
    "tests/e2e/test_auth.py",  # 20
    "tests/e2e/test_slow_clients.py",  # 20
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    if config.getoption("--slow"):  # the files with slow tests are the longest then: before all
        for item in items:
            if "slow" in item.keywords:
                rank[item.nodeid.partition("::")[0]] = -1
    items.sort(key=lambda item: rank.get(item.nodeid.partition("::")[0], len(LONGEST_FIRST)))  # stable
    if config.getoption("--slow"):
        return
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=SLOW_REASON))


@pytest.fixture(scope="session", autouse=True)
def no_leftover_processes() -> Iterator[None]:
    mark = os.environ[SESSION_MARK]
    spared = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    deadline = time.monotonic() + GRACE_SECONDS
    while (leftovers := leftover_processes(mark, spared)) and time.monotonic() < deadline:
        time.sleep(0.2)
    shutil.rmtree(RUNTIME_DIR, ignore_errors=True)
    if leftovers:
        report = "\n".join(describe(p) for p in leftovers)
        for p in leftovers:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        pytest.fail(f"the tests left {len(leftovers)} process(es) running (now killed):\n{report}",
                    pytrace=False)


@pytest.fixture
def no_backoff() -> Iterator[SkippedBackoff]:
    """boto3 clients in this test retry without sleeping: for tests that check which attempts an
    SDK makes, not how long it waits between them. `.delays` lists the back-off each retry would
    have slept. (test_dynamodb_throttle_retried_like_a_real_one keeps the real back-off.)"""
    with backoff_skipped() as skipped:
        yield skipped
