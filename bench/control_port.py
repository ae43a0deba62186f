"""The control port's server, side by side with an earlier checkout's: latency of control calls,
and what slow clients do to them.

    .venv/bin/python bench/control_port.py [--baseline REV] [--requests 2000] [--slow 64]

Both servers serve the same control plane (the real FIS API on a SQLite store) in this process,
one after the other, rounds interleaved. Each round times, one call at a time:

  keep-alive    GET /experimentTemplates on one keep-alive connection (boto3's way)
  connect       the same, a new connection each (curl's way, health checks)
  slowloris     health checks on new connections while `--slow` other connections each send a
                byte of an unfinished request every second

and prints p50, p99, the share of answers that were not 200, and new/baseline ratios. The
baseline server is read from git (`--baseline`, default the commit before this file) into a
temporary module.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fisproxy.fis.api import FisApi  # noqa: E402
from fisproxy.fis.chaos import ChaosApi, ChaosState  # noqa: E402
from fisproxy.proxy.auth import ControlAuth  # noqa: E402
from fisproxy.proxy.control import ControlPlane, ControlRouter  # noqa: E402
from fisproxy.proxy.controlserver import ControlServer  # noqa: E402
from fisproxy.store import Store  # noqa: E402


def baseline_server(rev: str) -> Any:
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:fisproxy/proxy/controlserver.py"],
                            capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_controlserver.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_controlserver", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ControlServer


def plane(directory: Path) -> ControlPlane:
    store = Store(directory / "state.sqlite")

    class NoEngine:
        def active_count(self) -> int:
            return 0

    api = FisApi(store, NoEngine())  # type: ignore[arg-type]
    return ControlPlane(ControlRouter(fis=api, chaos=ChaosApi(ChaosState()), health=lambda: {}), ControlAuth())


def keep_alive(port: int, n: int) -> tuple[list[float], int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times, bad = [], 0
    for _ in range(n):
        began = time.perf_counter()
        conn.request("GET", "/experimentTemplates")
        response = conn.getresponse()
        response.read()
        times.append(time.perf_counter() - began)
        bad += response.status != 200
    conn.close()
    return times, bad


def connect_each(port: int, n: int, path: str = "/experimentTemplates") -> tuple[list[float], int]:
    times, bad = [], 0
    for _ in range(n):
        began = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            bad += response.status != 200
        except OSError:
            bad += 1
        conn.close()
        times.append(time.perf_counter() - began)
    return times, bad


def slowloris(port: int, n: int, slow: int) -> tuple[list[float], int]:
    socks = []
    for _ in range(slow):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /_fisproxy/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        socks.append(s)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(1.0):
            for s in socks:
                try:
                    s.send(b"a")
                except OSError:
                    pass

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    time.sleep(0.5)
    try:
        return connect_each(port, n, "/_fisproxy/health")
    finally:
        stop.set()
        thread.join()
        for s in socks:
            s.close()


def summary(times: list[float], bad: int) -> tuple[float, float, float]:
    ordered = sorted(times)
    return (statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000,
            100.0 * bad / len(ordered))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--baseline", default="HEAD~1")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--slow", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    servers: dict[str, Callable[..., Any]] = {"baseline": baseline_server(args.baseline), "new": ControlServer}
    scenarios: dict[str, Callable[[int], tuple[list[float], int]]] = {
        "keep-alive": lambda port: keep_alive(port, args.requests),
        "connect": lambda port: connect_each(port, args.requests // 4),
        "slowloris": lambda port: slowloris(port, args.requests // 10, args.slow),
    }
    results: dict[tuple[str, str], tuple[list[float], int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        control = plane(Path(tmp))
        for _ in range(args.rounds):
            for name, make in servers.items():
                for scenario, run in scenarios.items():
                    server = make(control, "127.0.0.1", 0)
                    server.start()
                    try:
                        times, bad = run(server.address[1])
                    finally:
                        server.stop()
                    old = results.get((name, scenario), ([], 0))
                    results[(name, scenario)] = (old[0] + times, old[1] + bad)
    print(f"{'scenario':<12}{'server':<10}{'p50 ms':>9}{'p99 ms':>9}{'not 200':>9}")
    for scenario in scenarios:
        for name in servers:
            p50, p99, bad = summary(*results[(name, scenario)])
            print(f"{scenario:<12}{name:<10}{p50:>9.2f}{p99:>9.2f}{bad:>8.1f}%")
        new, base = summary(*results[("new", scenario)]), summary(*results[("baseline", scenario)])
        print(f"{'':<12}{'new/base':<10}{new[0] / base[0]:>9.2f}{new[1] / base[1]:>9.2f}")


if __name__ == "__main__":
    main()
