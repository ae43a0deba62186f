"""Suite-wide guard: a test session leaves no process running.

Every subprocess a test starts inherits a mark in its environment (clean_env copies it too), so
a process that outlives the session is found even after its parent died and it was re-parented.
At the end of the session, after every other fixture has stopped what it started, anything
still alive is listed with its command line, killed, and reported as an error.
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

from tests.helpers import SESSION_MARK, describe, leftover_processes

GRACE_SECONDS = 5  # for processes that were told to stop and are still exiting

os.environ[SESSION_MARK] = uuid.uuid4().hex  # at import, before any test module starts anything
# The suite's proxies record themselves in a runtime folder of the session's own, never where a
# user's shell looks (fisproxy/runtimefile.py): `fisproxy env` there must not find them.
RUNTIME_DIR = os.environ["FISPROXY_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="fisproxy-tests-run-")


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
