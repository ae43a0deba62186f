"""`fisproxy run --workers N`: N proxy processes behind the same ports, sharing one store.

mitmproxy serves from one event loop, so one process uses one core. Each worker is a full
fisproxy (mitmdump with the addons) whose listening sockets are opened with SO_REUSEPORT, so
the kernel spreads new connections over the workers (a keep-alive connection stays with the
worker that accepted it). The workers share the store like any proxies on one store (`--store`,
or the SQLite file of `--state`): one FIS, one report, one schedule holder per experiment.

The parent supervises:

- A worker's mitmproxy arguments, secrets among them (control token, credentials, a store
  URL's password), reach it through a pipe on its stdin, never its command line (`ps` shows
  every user's command lines) nor its environment.
- The worker keeps reading that pipe: when it closes, the supervisor is gone (even by
  `kill -9`), and the worker shuts down. So no orphan keeps serving the ports, and a new
  `fisproxy run` on the same ports can start.
- A worker that dies is replaced (a dead worker would be a silent loss of capacity), unless
  workers keep dying: more than `MAX_RESTARTS` in `RESTART_WINDOW_SECONDS` stops them all,
  with the exit code of the last one.
- SIGINT and SIGTERM stop every worker, and the supervisor exits once they have.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

WORKER_OPTION = "fisproxy_reuse_port=true"
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0
POLL_SECONDS = 0.2
SHUTDOWN_GRACE_SECONDS = 10.0  # a worker that does not stop in this time after losing its supervisor is ended


def share_listening_ports() -> None:
    """Open mitmproxy's TCP listeners with SO_REUSEPORT (mitmproxy 11 and 12 open them with
    `asyncio.start_server`, looked up at call time)."""
    real = asyncio.start_server

    async def start_server(*args: Any, **kwargs: Any) -> asyncio.Server:
        kwargs.setdefault("reuse_port", True)
        return await real(*args, **kwargs)

    asyncio.start_server = start_server


# ---- a worker ------------------------------------------------------------------------------

def run_worker() -> int:
    """One worker: its arguments from the first line on stdin, then fisproxy's mitmdump master
    (proxy/master.py), its ports shared, for as long as stdin stays open. The exit code."""
    line = sys.stdin.buffer.readline()
    if not line:
        return 0  # the supervisor went away before we started
    argv = json.loads(line)
    share_listening_ports()
    from fisproxy.proxy.master import run_dump

    threading.Thread(target=_exit_with_supervisor, name="fisproxy-supervisor-watch", daemon=True).start()
    master = run_dump(argv)
    runtime = master.addons.get("runtime")
    return 1 if runtime is not None and runtime.failed else 0


def _exit_with_supervisor() -> None:
    """Wait for the supervisor's end of the pipe to close, then stop like on SIGTERM (and for
    good if that takes too long)."""
    while sys.stdin.buffer.read(4096):
        pass  # the supervisor sends nothing more; reading until EOF is all
    print(f"fisproxy: worker {os.getpid()}: the supervisor is gone; stopping", file=sys.stderr)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(SHUTDOWN_GRACE_SECONDS)
    os._exit(1)


# ---- the supervisor -------------------------------------------------------------------------

class Supervisor:
    def __init__(self, argv: Sequence[str], count: int) -> None:
        self.argv = [*argv, "--set", WORKER_OPTION]
        self.count = count
        self.workers: list[subprocess.Popen[bytes]] = []
        self.stopping = False
        self.restarts: deque[float] = deque()

    def start_worker(self) -> subprocess.Popen[bytes]:
        worker = subprocess.Popen([sys.executable, "-m", "fisproxy.cli.workers"], stdin=subprocess.PIPE)
        assert worker.stdin is not None
        try:
            worker.stdin.write(json.dumps(self.argv).encode() + b"\n")
            worker.stdin.flush()  # and kept open: its closing tells the worker to stop
        except BrokenPipeError:
            pass  # it died at once: seen, and handled, like any dead worker
        return worker

    def stop(self, signum: int, _frame: Any = None) -> None:
        self.stopping = True
        for worker in self.workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    def run(self) -> int:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self.stop)
        self.workers = [self.start_worker() for _ in range(self.count)]
        code = 0
        while any(w.poll() is None for w in self.workers):
            for i, worker in enumerate(self.workers):
                if worker.poll() is None or self.stopping:
                    continue
                code = worker.returncode
                if not self._may_restart():
                    print(f"fisproxy: worker {worker.pid} exited with {_how(code)}, and workers "
                          f"exited {MAX_RESTARTS} times in {RESTART_WINDOW_SECONDS:g} s; stopping "
                          "the others", file=sys.stderr)
                    self.stop(signal.SIGTERM)
                    break
                print(f"fisproxy: worker {worker.pid} exited with {_how(code)}; starting another",
                      file=sys.stderr)
                _close(worker)
                self.workers[i] = self.start_worker()
            time.sleep(POLL_SECONDS)
        for worker in self.workers:
            _close(worker)
            code = code or (worker.returncode or 0)
        if self.stopping and code in (0, -signal.SIGTERM, -signal.SIGINT):
            return 0
        return code if code > 0 else 1

    def _may_restart(self) -> bool:
        now = time.monotonic()
        while self.restarts and now - self.restarts[0] > RESTART_WINDOW_SECONDS:
            self.restarts.popleft()
        if len(self.restarts) >= MAX_RESTARTS:
            return False
        self.restarts.append(now)
        return True


def _how(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _close(worker: subprocess.Popen[bytes]) -> None:
    if worker.stdin is not None and not worker.stdin.closed:
        try:
            worker.stdin.close()
        except OSError:
            pass


def supervise(argv: Sequence[str], count: int) -> int:
    """Run `count` workers with `argv` (mitmdump arguments) until stopped; the exit code."""
    return Supervisor(argv, count).run()


if __name__ == "__main__":
    sys.exit(run_worker())
