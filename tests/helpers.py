"""Test helpers shared by the end-to-end and CLI tests: clean environments, free ports,
starting and stopping real processes (moto's server, fisproxy), and finding the ones a test
session left running."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import botocore.endpoint
import psutil
import pytest
import requests

VENV_BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
CA_VARS = ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")
PROXY_VARS = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY")


def clean_env(**extra: str) -> dict[str, str]:
    """The machine exports CA bundles that override what a test sets: start from an env without
    them, without proxies, with dummy AWS credentials and no instance metadata lookups."""
    env = {k: v for k, v in os.environ.items() if k not in CA_VARS + PROXY_VARS and not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="AKIAIOSFODNN7EXAMPLE",
        AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    env.update(extra)
    return env


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A free port below the kernel's ephemeral range. Not `bind(0)`: that hands out an
    ephemeral port, which any outgoing connection on the machine (another test worker's
    keep-alive) may take as its local port once it is released, and a server started again on
    the same port (a restart test) then fails with "Address already in use" (seen in CI)."""
    low = _ephemeral_low()
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10000, low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port found between 10000 and {low}")


def wait_until(check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{out[-4000:]}")
        try:
            if check():
                return
        except (OSError, requests.RequestException):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout}s")


def http_ok(url: str) -> bool:
    return requests.get(url, timeout=2, proxies={"http": None, "https": None}).status_code == 200


def start_process(argv: Sequence[str], log: Path, ready: Callable[[], bool], what: str, *,
                  timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `argv` with its output appended to `log` and wait until `ready()`. If it exits or
    does not get ready in time, it is stopped before the error rises: a failed start leaves
    nothing running."""
    with log.open("ab") as out:  # the child has its own copy of the descriptor
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env or clean_env())
    try:
        wait_until(ready, timeout, what, proc)
    except BaseException as e:
        stop(proc)
        if isinstance(e, (RuntimeError, TimeoutError)):
            raise type(e)(f"{e}\n{what}'s log ({log}):\n{tail(log)}") from None
        raise
    return proc


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_bytes()[-chars:].decode(errors="replace") if path.exists() else ""


def start_moto(log: Path, timeout: float = 60) -> tuple[subprocess.Popen, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_process([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                         log, lambda: http_ok(f"{url}/moto-api/"), "moto server", timeout=timeout)
    return proc, url


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- SDK back-off, skipped where only the attempts matter ---------------------------------------

class SkippedBackoff:
    """Stands in for the `time` module in `botocore.endpoint`, which sleeps the delay its retry
    handler (legacy or standard mode) returns before each retry (`Endpoint._needs_retry`): the
    delays are recorded instead of slept. Every attempt, its count and its headers stay the SDK's
    own; only the wait between attempts is skipped. Used by the `no_backoff` fixture."""

    def __init__(self) -> None:
        self.delays: list[float] = []  # one per retry the SDK decided on, in seconds

    def sleep(self, seconds: float) -> None:
        self.delays.append(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


@contextlib.contextmanager
def backoff_skipped() -> Iterator[SkippedBackoff]:
    """In the block, boto3 clients retry without sleeping (the `no_backoff` fixture, for part
    of a test)."""
    with pytest.MonkeyPatch.context() as mp:
        skipped = SkippedBackoff()
        mp.setattr(botocore.endpoint, "time", skipped)
        yield skipped


# PYTHONPATH for an AWS CLI process whose retry sleeps are skipped the same way:
# `tests/nobackoff/sitecustomize.py` installs a SkippedBackoff in it at interpreter start.
AWS_CLI_NO_BACKOFF = ROOT / "tests" / "nobackoff"
# PYTHONPATH for a `fisproxy run` whose report delivery retries after 0.5 s instead of 5 s and
# 30 s: `tests/quickretries/sitecustomize.py`.
QUICK_REPORT_RETRIES = ROOT / "tests" / "quickretries"


# ---- redis-server (the shared store's tests) -------------------------------------------------

def redis_server_binary() -> str | None:
    import shutil

    return shutil.which("redis-server")


def start_redis(directory: Path, port: int | None = None, *options: str) -> tuple[subprocess.Popen, int]:
    """A real redis-server on 127.0.0.1 keeping an append-only file in `directory` (so a restart
    on the same directory and port loses no acknowledged write), no RDB snapshots. Waits until
    it answers PING (after loading its AOF); stopped again if it does not. `options`: more
    `--name value` server options. FileNotFoundError if redis-server is not installed."""
    binary = redis_server_binary()
    if binary is None:
        raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
         "--dir", str(directory), "--logfile", str(directory / "redis.log"), *options],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env=clean_env(),
    )
    try:
        wait_until(lambda: redis_pong(port), 20, f"redis-server on port {port}", proc)
    except BaseException:
        stop(proc)
        raise
    return proc, port


def redis_pong(port: int) -> bool:
    """redis-server on `port` is up: PONG, or NOAUTH if it wants a password (not LOADING)."""
    with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
        s.sendall(b"PING\r\n")
        answer = s.recv(64)
    return answer.startswith(b"+PONG") or answer.startswith(b"-NOAUTH")


def run_group(argv: Sequence[str], timeout: float, **kw: Any) -> subprocess.CompletedProcess:
    """`subprocess.run` for programs that start helpers of their own (a browser, npm): the
    program gets its own process group, and whatever of that group is still alive when it
    exits or times out is killed."""
    proc = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


# ---- the session's leftovers ------------------------------------------------------------------

SESSION_MARK = "FISPROXY_TEST_SESSION"  # set in os.environ by tests/conftest.py


def leftover_processes(mark: str, spared: Collection[int] = ()) -> list[psutil.Process]:
    """Live processes started by this test session: descendants of this process, and orphans
    anywhere that carry `SESSION_MARK=mark` in their environment (every subprocess inherits it,
    clean_env included), except the pids in `spared` (children that predate the session)."""
    me = psutil.Process()
    found = {p.pid: p for p in me.children(recursive=True)}
    for p in psutil.process_iter():
        if p.pid in found or p.pid == me.pid:
            continue
        try:
            if p.environ().get(SESSION_MARK) == mark:
                found[p.pid] = p
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess, OSError):
            continue
    alive = []
    for pid, p in sorted(found.items()):
        try:
            if pid not in spared and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except psutil.NoSuchProcess:
            continue
    return alive


def describe(p: psutil.Process) -> str:
    try:
        return f"pid {p.pid}: {' '.join(p.cmdline()) or p.name()}"
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return f"pid {p.pid}: (gone)"
