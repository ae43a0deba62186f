"""The e2e fixtures leave nothing running: a fisproxy that never gets healthy is stopped before
the start raises."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import Fisproxy


def test_fisproxy_that_never_gets_healthy_is_stopped(tmp_path: Path) -> None:
    # Without a control port there is no /_fisproxy/health to answer: the readiness wait times out.
    proxy = Fisproxy(tmp_path, "http://127.0.0.1:9", extra_args=("--control-port", "0"))
    with pytest.raises(TimeoutError, match=r"(?s)fisproxy not ready after 5s.*fisproxy's log"):
        proxy.start(timeout=5)
    assert proxy.proc is None
    state = str(proxy.state)  # unique to this test: in the command line of its process only
    running = []
    for p in psutil.process_iter():
        try:
            if state in p.cmdline() and p.status() != psutil.STATUS_ZOMBIE:
                running.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    assert running == []
