"""`fisproxy run --workers N` as processes: a worker killed with `kill -9` is replaced, the
workers end with their supervisor (also when it is killed with `kill -9`), and a new proxy can
then start on the same ports."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil

from tests.e2e.conftest import Fisproxy
from tests.helpers import wait_until

STOP_SECONDS = 20  # a worker's own shutdown: mitmproxy closing, the store flushed


def workers_of(proxy: Fisproxy) -> list[psutil.Process]:
    assert proxy.proc is not None
    return [p for p in psutil.Process(proxy.proc.pid).children() if p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE]


def answering_pids(proxy: Fisproxy, tries: int = 20) -> set[int]:
    """The worker pids that answer the control port (SO_REUSEPORT spreads new connections)."""
    return {proxy.control("GET", "/_fisproxy/health").json()["pid"] for _ in range(tries)}


def gone(pids: set[int]) -> bool:
    return not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in pids)


def test_a_killed_worker_is_replaced(tmp_path: Path, moto: str) -> None:
    with Fisproxy(tmp_path, moto, extra_args=("--workers", "2")).running() as proxy:
        wait_until(lambda: len(answering_pids(proxy)) == 2, 30, "both workers answering")
        first = {p.pid for p in workers_of(proxy)}
        victim = sorted(first)[0]
        killed = time.monotonic()
        psutil.Process(victim).send_signal(signal.SIGKILL)
        wait_until(lambda: len(workers_of(proxy)) == 2 and victim not in {p.pid for p in workers_of(proxy)},
                   30, "a new worker in place of the killed one")
        new = {p.pid for p in workers_of(proxy)} - first
        wait_until(lambda: new <= answering_pids(proxy), 60, "the new worker answering")
        # Measured, printed, not asserted (busy machines).
        print(f"a killed worker's replacement answered {time.monotonic() - killed:.1f} s after the kill")
        assert proxy.proc is not None and proxy.proc.poll() is None  # the proxy never went down
    assert f"worker {victim} exited with signal SIGKILL; starting another" in proxy.log.read_text()


def test_workers_end_with_their_killed_supervisor_and_the_ports_are_free_again(tmp_path: Path, moto: str) -> None:
    proxy = Fisproxy(tmp_path, moto, extra_args=("--workers", "2")).start()
    try:
        wait_until(lambda: len(workers_of(proxy)) == 2, 30, "two workers")
        pids = {p.pid for p in workers_of(proxy)}
        killed = time.monotonic()
        proxy.kill9()
        wait_until(lambda: gone(pids), STOP_SECONDS, "the workers of the killed supervisor ending")
        print(f"the workers ended {time.monotonic() - killed:.1f} s after their supervisor's kill -9")
    finally:
        proxy.stop()
        for pid in pids:  # what this test started, whatever happened
            if psutil.pid_exists(pid):
                psutil.Process(pid).kill()
    again = Fisproxy(tmp_path, moto, port=proxy.port, control_port=proxy.control_port,
                     extra_args=("--workers", "2"))
    with again.running():
        assert again.control("GET", "/_fisproxy/health").json()["pid"] not in pids
