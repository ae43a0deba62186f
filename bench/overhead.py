"""Throughput of fisproxy against bare mitmdump and a direct connection, side by side in one run.

    .venv/bin/python bench/overhead.py [--requests 2000] [--rounds 3]

Four configurations, measured in interleaved rounds so machine noise hits them alike (CPU per
request of each proxy process, from /proc, and throughput):
  direct           client -> upstream
  mitmdump         client -> bare `mitmdump -q` -> upstream
  fisproxy         client -> `fisproxy run --quiet` (no experiment) -> upstream
  fisproxy-loaded  the same with 200 templates stored and 5 experiments running on other services

The client sends SigV4-signed DynamoDB `GetItem` requests (so fisproxy identifies every one and
asks the engine) over one keep-alive connection with http.client, which sends each request in
one segment (requests/urllib3 would measure their own Nagle stall). The upstream is a small
asyncio HTTP/1.1 server in its own process. Prints req/s (median of rounds) and the ratios.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
BODY = json.dumps({"TableName": "bench", "Key": {"pk": {"S": "a"}}}).encode()
HEADERS = {
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "DynamoDB_20120810.GetItem",
    "X-Amz-Date": "20261127T120000Z",
    "Authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261127/us-east-1/dynamodb/aws4_request, "
    "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=" + "0" * 64,
}
OTHER_SERVICES = ["sqs", "sns", "s3", "kinesis", "lambda"]

UPSTREAM = r'''
import asyncio, sys
BODY = b'{"Item": {"pk": {"S": "a"}}}'
RESP = (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: "
        + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
async def handle(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            if length:
                await reader.readexactly(length)
            writer.write(RESP)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()
asyncio.run(main())
'''


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env() -> dict[str, str]:
    drop = ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "HTTPS_PROXY", "HTTP_PROXY",
            "https_proxy", "http_proxy")
    return {k: v for k, v in os.environ.items() if k not in drop}


def wait_port(port: int, timeout: float = 60) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"port {port} not listening")


def start(cmd: list[str], port: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env or clean_env())
    wait_port(port)
    return proc


def start_fisproxy(workdir: Path, port: int, source: Path | None = None) -> tuple[subprocess.Popen, int]:
    """`fisproxy run`; `source`: another checkout's package instead of this venv's (a baseline)."""
    control = free_port()
    env = clean_env()
    if source is not None:
        env["PYTHONPATH"] = str(source)
    proc = start([str(VENV_BIN / "fisproxy"), "run", "--quiet", "--port", str(port),
                  "--control-port", str(control), "--state", str(workdir / "state.sqlite"),
                  "--certs", str(workdir / "certs")], port, env)
    wait_port(control)
    return proc, control


def load(control: int) -> None:
    """200 templates stored, 5 experiments running on services the benchmark does not call."""
    import boto3
    from botocore.config import Config

    fis = boto3.client("fis", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{control}",
                       aws_access_key_id="x", aws_secret_access_key="x",
                       config=Config(proxies={}, retries={"max_attempts": 1}))
    ids = []
    for i in range(200):
        service = OTHER_SERVICES[i % len(OTHER_SERVICES)]
        ids.append(fis.create_experiment_template(
            description=f"bench {i}", roleArn="arn:aws:iam::123456789012:role/fis",
            stopConditions=[{"source": "none"}],
            actions={"a": {"actionId": "aws:fis:inject-api-throttle-error",
                           "parameters": {"service": service, "percentage": "100", "duration": "PT1H"}}},
        )["experimentTemplate"]["id"])
    for template_id in ids[:5]:
        fis.start_experiment(experimentTemplateId=template_id)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        running = [e for e in fis.list_experiments()["experiments"] if e["state"]["status"] == "running"]
        if len(running) == 5:
            return
        time.sleep(0.2)
    raise RuntimeError("experiments did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(upstream: int, proxy: int | None, n: int) -> float:
    """Requests per second over one keep-alive connection."""
    if proxy is None:
        conn = http.client.HTTPConnection("127.0.0.1", upstream)
        target = "/"
    else:
        conn = http.client.HTTPConnection("127.0.0.1", proxy)
        target = f"http://127.0.0.1:{upstream}/"
    headers = {**HEADERS, "Host": f"127.0.0.1:{upstream}"}
    for _ in range(50):  # warm-up
        conn.request("POST", target, BODY, headers)
        conn.getresponse().read()
    t0 = time.perf_counter()
    for _ in range(n):
        conn.request("POST", target, BODY, headers)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"unexpected status {resp.status}")
    elapsed = time.perf_counter() - t0
    conn.close()
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="requests per configuration per round")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--baseline", type=Path, metavar="CHECKOUT",
                        help="also run fisproxy from another checkout (e.g. a git worktree of an "
                             "earlier commit), measured in the same rounds")
    args = parser.parse_args()

    procs: list[subprocess.Popen] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            up = free_port()
            procs.append(start([sys.executable, "-c", UPSTREAM, str(up)], up))
            dump = free_port()
            procs.append(start([str(VENV_BIN / "mitmdump"), "-q", "--listen-host", "127.0.0.1",
                                "--listen-port", str(dump), "--set", f"confdir={tmp}/mitm"], dump))
            plain, loaded = free_port(), free_port()
            proc, _ = start_fisproxy(Path(tmp) / "plain", plain)
            procs.append(proc)
            proc, control = start_fisproxy(Path(tmp) / "loaded", loaded)
            procs.append(proc)
            load(control)
            configs = {"direct": None, "mitmdump": dump, "fisproxy": plain, "fisproxy-loaded": loaded}
            pids = {"mitmdump": procs[1].pid, "fisproxy": procs[2].pid, "fisproxy-loaded": procs[3].pid}
            if args.baseline is not None:
                base = free_port()
                proc, _ = start_fisproxy(Path(tmp) / "baseline", base, args.baseline.resolve())
                procs.append(proc)
                configs["baseline"] = base
                pids["baseline"] = proc.pid
            results: dict[str, list[float]] = {name: [] for name in configs}
            cpu: dict[str, list[float]] = {name: [] for name in pids}  # seconds, per round
            for r in range(args.rounds):
                for name, port in configs.items():
                    before = cpu_seconds(pids[name]) if name in pids else 0.0
                    results[name].append(measure(up, port, args.requests))
                    if name in pids:
                        cpu[name].append(cpu_seconds(pids[name]) - before)
                print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in results.items()),
                      flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)

    med = {name: statistics.median(v) for name, v in results.items()}
    print(f"\n{args.requests} sequential keep-alive requests x {args.rounds} rounds (median req/s):")
    for name, value in med.items():
        print(f"  {name:16} {value:8.0f} req/s")

    def ratio(a: str, b: str, of: dict[str, list[float]] = results) -> str:
        # Per round, the two were measured back to back: the median of those ratios is what
        # survives the machine's noise best.
        per_round = [x / y for x, y in zip(of[a], of[b], strict=True) if y]
        q = statistics.quantiles(per_round, n=4) if len(per_round) > 1 else per_round * 3
        return f"{statistics.median(per_round):.3f}  (quartiles {q[0]:.3f}-{q[-1]:.3f})"

    print("\nproxy CPU per request (all threads; steadier than req/s on a noisy machine):")
    total = args.requests * args.rounds
    for name, seconds in cpu.items():
        print(f"  {name:16} {sum(seconds) / total * 1000:6.3f} ms   "
              f"({med[name]:.0f} req/s)")
    print("\nCPU per request, ratios (median of per-round ratios; the goals: fisproxy <= 0.75, "
          "fisproxy-loaded <= 0.80):")
    print(f"  fisproxy / mitmdump          {ratio('fisproxy', 'mitmdump', cpu)}")
    print(f"  fisproxy-loaded / mitmdump   {ratio('fisproxy-loaded', 'mitmdump', cpu)}")
    if args.baseline is not None:
        print(f"  baseline / mitmdump          {ratio('baseline', 'mitmdump', cpu)}")
        print(f"  fisproxy / baseline          {ratio('fisproxy', 'baseline', cpu)}")

    print("\nthroughput ratios (median of per-round ratios):")
    print(f"  fisproxy / mitmdump          {ratio('fisproxy', 'mitmdump')}")
    print(f"  fisproxy-loaded / mitmdump   {ratio('fisproxy-loaded', 'mitmdump')}")
    print(f"  mitmdump / direct            {ratio('mitmdump', 'direct')}")
    if args.baseline is not None:
        print(f"  baseline / mitmdump          {ratio('baseline', 'mitmdump')}")
        print(f"  fisproxy / baseline          {ratio('fisproxy', 'baseline')}")
    print(f"  fisproxy / direct            {ratio('fisproxy', 'direct')}")

if __name__ == "__main__":
    main()
