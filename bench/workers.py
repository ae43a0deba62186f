"""Throughput of `fisproxy run --workers 1` against `--workers 2`, side by side in one run.

    .venv/bin/python bench/workers.py [--seconds 10] [--clients 8] [--rounds 3]

`--clients` client processes each keep one connection open and send SigV4 DynamoDB GetItem
calls (identified by fisproxy, no experiment) through the proxy to a small upstream, as fast as
they can, for `--seconds`; the total req/s is printed per configuration, interleaved in rounds.
With SO_REUSEPORT the kernel spreads the connections over the workers.

Mind the machine: the clients and the upstream need CPU too. On a 2-core machine the clients
and the upstream take a share of the cores the workers could use, so the gain of a second worker
is smaller than on a bigger machine; the figure printed is what this machine does.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import BODY, HEADERS, UPSTREAM, VENV_BIN, free_port, start, wait_port  # noqa: E402


def client(proxy: int, upstream: int, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    conn = http.client.HTTPConnection("127.0.0.1", proxy)
    target = f"http://127.0.0.1:{upstream}/"
    headers = {**HEADERS, "Host": f"127.0.0.1:{upstream}"}
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        conn.request("POST", target, BODY, headers)
        resp = conn.getresponse()
        resp.read()
        n += 1
    conn.close()
    out.put(n)


def measure(proxy: int, upstream: int, clients: int, seconds: float) -> float:
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=client, args=(proxy, upstream, seconds, out)) for _ in range(clients)]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=seconds + 60) for _ in procs)
    for p in procs:
        p.join()
    return total / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    procs: list[subprocess.Popen] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            up = free_port()
            procs.append(start([sys.executable, "-c", UPSTREAM, str(up)], up))
            ports = {}
            for workers in (1, 2):
                port, control = free_port(), free_port()
                procs.append(start([str(VENV_BIN / "fisproxy"), "run", "--quiet", "--port", str(port),
                                    "--control-port", str(control), "--workers", str(workers),
                                    "--state", f"{tmp}/w{workers}/state.sqlite", "--certs", f"{tmp}/certs"], port))
                wait_port(control)
                ports[workers] = port
            time.sleep(2)  # every worker listening
            results: dict[int, list[float]] = {1: [], 2: []}
            for r in range(args.rounds):
                for workers, port in ports.items():
                    results[workers].append(measure(port, up, args.clients, args.seconds))
                print(f"round {r + 1}: " + ", ".join(f"{w} worker(s) {v[-1]:.0f} req/s" for w, v in results.items()),
                      flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(15)
    one, two = statistics.median(results[1]), statistics.median(results[2])
    print(f"\n{args.clients} clients x {args.seconds:.0f} s, {args.rounds} rounds (median req/s):")
    print(f"  --workers 1   {one:8.0f} req/s")
    print(f"  --workers 2   {two:8.0f} req/s   ({two / one:.2f}x)")


if __name__ == "__main__":
    main()
