"""`fisproxy run --workers N`: N proxy processes behind the same ports, sharing one store.

mitmproxy serves from one event loop, so one process uses one core. Each worker is a full
fisproxy (mitmdump with the addons) whose listening sockets are opened with SO_REUSEPORT, so
the kernel spreads new connections over the workers (a keep-alive connection stays with the
worker that accepted it). The workers share the store like any proxies on one store (`--store`,
or the SQLite file of `--state`): one FIS, one report, one schedule holder per experiment.

The parent only supervises: it starts the workers, forwards SIGINT/SIGTERM to them, and exits
with the first non-zero exit code once all have ended (a worker that dies takes the others
down: a half-fleet on a port would be a silent loss of capacity).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

WORKER_OPTION = "fisproxy_reuse_port=true"


def share_listening_ports() -> None:
    """Open mitmproxy's TCP listeners with SO_REUSEPORT (mitmproxy 11 and 12 open them with
    `asyncio.start_server`, looked up at call time)."""
    real = asyncio.start_server

    async def start_server(*args: Any, **kwargs: Any) -> asyncio.Server:
        kwargs.setdefault("reuse_port", True)
        return await real(*args, **kwargs)

    asyncio.start_server = start_server


def run_worker(argv: Sequence[str]) -> int:
    """One worker: mitmdump with fisproxy's addons, its ports shared. The exit code."""
    share_listening_ports()
    from fisproxy.proxy.master import run_dump

    master = run_dump(argv)
    runtime = master.addons.get("runtime")
    return 1 if runtime is not None and runtime.failed else 0


def supervise(argv: Sequence[str], count: int) -> int:
    """Start `count` workers with `argv` (mitmdump arguments) and wait for them."""
    command = [sys.executable, "-m", "fisproxy.workers", *argv, "--set", WORKER_OPTION]
    workers = [subprocess.Popen(command) for _ in range(count)]
    stopping = False

    def forward(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for worker in workers:
            if worker.poll() is None:
                worker.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, forward)
    code = 0
    while any(w.poll() is None for w in workers):
        for w in workers:
            if w.poll() is not None and w.returncode and not stopping:
                print(f"fisproxy: worker {w.pid} exited with {w.returncode}; stopping the others",
                      file=sys.stderr)
                forward(signal.SIGTERM, None)
            code = code or (w.returncode or 0)
        time.sleep(0.2)
    for w in workers:
        code = code or (w.returncode or 0)
    return 0 if stopping and code in (0, -signal.SIGTERM, -signal.SIGINT) else code


if __name__ == "__main__":
    sys.exit(run_worker(sys.argv[1:]))
