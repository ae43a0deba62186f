"""End-to-end fixtures: a real moto server, the real fisproxy process in front of it, and real
boto3 clients that reach AWS hostnames through HTTPS_PROXY-style proxying with TLS interception."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config

from tests.helpers import VENV_BIN, clean_env, free_port, http_ok, start_moto, start_process, stop

ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

# Every client comes from one session: a new session reads the service's model files again,
# 90-200 ms of CPU a client against 2-10 ms (tests poll with fresh clients). Client creation on
# one session is not thread-safe, hence the lock; the clients themselves are independent.
_SESSION = boto3.session.Session()
_SESSION_LOCK = threading.Lock()


def new_client(service: str, **kwargs: Any) -> Any:
    """`boto3.session.Session().client(service, **kwargs)`, on the shared session."""
    with _SESSION_LOCK:
        return _SESSION.client(service, **kwargs)


@dataclass
class Fisproxy:
    """A `fisproxy run` process; restartable on the same state and CA."""

    workdir: Path
    upstream: str
    port: int = field(default_factory=free_port)
    control_port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    subcommand: str = "run"  # or "web" (mitmweb)
    env_extra: dict[str, str] = field(default_factory=dict)  # e.g. the proxy's own AWS keys
    proc: subprocess.Popen | None = None

    @property
    def certs(self) -> Path:
        return self.workdir / "certs"

    @property
    def ca(self) -> str:
        return str(self.certs / "mitmproxy-ca-cert.pem")

    @property
    def state(self) -> Path:
        return self.workdir / "state" / "fisproxy.sqlite"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.control_port}"

    @property
    def log(self) -> Path:
        return self.workdir / "fisproxy.log"

    def command(self) -> list[str]:
        return [
            str(VENV_BIN / "fisproxy"), self.subcommand,
            "--port", str(self.port), "--control-port", str(self.control_port),
            "--aws-endpoint", self.upstream, "--state", str(self.state),
            "--certs", str(self.certs), "--seed", "7", *self.extra_args,
        ]

    def start(self, timeout: float = 60) -> Fisproxy:
        """Start and wait for GET /_fisproxy/health; a proxy that does not get healthy in
        `timeout` seconds is stopped and the error names its log."""
        self.proc = None  # a failed start leaves nothing to stop
        self.proc = start_process(self.command(), self.log, self.healthy, "fisproxy", timeout=timeout,
                                  env=clean_env(**self.env_extra))
        return self

    def healthy(self) -> bool:
        return http_ok(f"{self.control_url}/_fisproxy/health")

    def stop(self) -> None:
        if self.proc:
            stop(self.proc)

    @contextlib.contextmanager
    def running(self) -> Iterator[Fisproxy]:
        """Started for the `with` block, stopped after it however it ends (a fixture's
        `with proxy.running() as p: yield p` stops it even when the test fails)."""
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a subprocess client (AWS CLI, node) going through the proxy."""
        env = dict(
            HTTPS_PROXY=self.proxy_url, HTTP_PROXY=self.proxy_url, NO_PROXY="127.0.0.1,localhost",
            AWS_CA_BUNDLE=self.ca, NODE_EXTRA_CA_CERTS=self.ca,
        )
        env.update(extra)
        return clean_env(**{k: v for k, v in env.items() if v})

    def client(self, service: str, region: str = "us-east-1", *, retries: dict[str, Any] | None = None,
               access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY, session_token: str | None = None,
               **config: Any) -> Any:
        """A boto3 client talking to the real AWS hostname through the proxy (TLS intercepted)."""
        # Generous bounds against a hang: a just-started proxy on a loaded 2-core machine took
        # over 5 s to answer its first CONNECT (faults are applied after CONNECT, on requests).
        config = {"connect_timeout": 20, "read_timeout": 20, **config}
        cfg = Config(
            proxies={"https": self.proxy_url, "http": self.proxy_url},
            retries=retries or {"mode": "standard"}, **config,
        )
        return new_client(
            service, region_name=region, aws_access_key_id=access_key,
            aws_secret_access_key=secret_key, aws_session_token=session_token,
            config=cfg, verify=self.ca,
        )

    def fis(self, region: str = "us-east-1") -> Any:
        """A boto3 fis client on the control port."""
        return new_client(
            "fis", region_name=region, endpoint_url=self.control_url,
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            config=Config(retries={"total_max_attempts": 1}, proxies={}),
        )

    def control(self, method: str, path: str, **kw: Any) -> requests.Response:
        return requests.request(method, f"{self.control_url}{path}", timeout=10,
                                proxies={"http": None, "https": None}, **kw)


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, url = start_moto(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def fisproxy(tmp_path_factory: pytest.TempPathFactory, moto: str) -> Iterator[Fisproxy]:
    with Fisproxy(tmp_path_factory.mktemp("fisproxy"), moto).running() as proxy:
        yield proxy


@pytest.fixture
def proxy(fisproxy: Fisproxy) -> Iterator[Fisproxy]:
    """The shared proxy, left clean: experiments stopped, chaos rules cleared after each test."""
    yield fisproxy
    fis = fisproxy.fis()
    for exp in fis.list_experiments()["experiments"]:
        if exp["state"]["status"] in ("pending", "initiating", "running"):
            fis.stop_experiment(id=exp["id"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = {e["state"]["status"] for e in fis.list_experiments()["experiments"]}
        if not states & {"pending", "initiating", "running", "stopping"}:
            break
        time.sleep(0.1)
    fisproxy.control("POST", "/_localstack/chaos/faults", json=[])
    fisproxy.control("POST", "/_localstack/chaos/effects", json={"latency": 0})


def wait_for_state(fis: Any, experiment_id: str, *statuses: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        exp = fis.get_experiment(id=experiment_id)["experiment"]
        if exp["state"]["status"] in statuses:
            return exp
        if time.monotonic() > deadline:
            raise AssertionError(f"experiment {experiment_id} is {exp['state']}, wanted {statuses}")
        time.sleep(0.1)


def start_action(proxy: Fisproxy, action_id: str, parameters: dict[str, str],
                 targets: dict[str, Any] | None = None, action_targets: dict[str, str] | None = None) -> str:
    """Create a one-action template, start it, wait until it runs; return the experiment id."""
    fis = proxy.fis()
    action: dict[str, Any] = {"actionId": action_id, "parameters": parameters}
    if action_targets:
        action["targets"] = action_targets
    template = fis.create_experiment_template(
        description=f"e2e {action_id}", roleArn="arn:aws:iam::123456789012:role/fis",
        stopConditions=[{"source": "none"}], actions={"fault": action}, targets=targets or {},
    )["experimentTemplate"]
    exp = fis.start_experiment(experimentTemplateId=template["id"])["experiment"]
    wait_for_state(fis, exp["id"], "running")
    return exp["id"]
