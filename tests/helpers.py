"""Test helpers shared by the end-to-end and CLI tests: clean environments, free ports,
starting and stopping real processes (moto's server, fisproxy)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

VENV_BIN = Path(sys.executable).parent
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def start_moto(log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env=clean_env(),
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: http_ok(f"{url}/moto-api/"), 60, "moto server", proc)
    return proc, url


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


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
