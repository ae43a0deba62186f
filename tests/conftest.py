"""Suite-wide: a test session leaves no process running; tests marked `slow` run with `--slow`;
the `no_backoff` fixture.

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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
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
