"""fisproxy's own commands (`report`, `experiments`, `proxies`) against real proxies: they log in
as the AWS CLI does (a control token from the environment, SigV4 with the environment's keys),
on SQLite and on Redis, say what they read, and read the state of this folder's proxy once it
stopped. The AWS CLI, refused by a proxy that wants a token, is told what to configure."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config

from tests.e2e.conftest import Fisproxy
from tests.helpers import VENV_BIN, clean_env, redis_server_binary, start_redis, stop

TOKEN = "t0ken-for-the-cli"
KEY_ID, KEY_SECRET = "AKIDCLILOGIN", "cli-login-secret"
TEMPLATE = {
    "description": "cli login", "roleArn": "arn:aws:iam::123456789012:role/fis",
    "stopConditions": [{"source": "none"}],
    "actions": {"wait": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1S"}}},
}


def fisproxy(*args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "fisproxy"), *args], capture_output=True, text=True, timeout=60,
                          cwd=cwd, env=clean_env(**env))


def start_experiment(proxy: Fisproxy, headers: dict[str, str]) -> str:
    """Through the control API with plain HTTP: a token is what the AWS CLI cannot send."""
    def post(path: str, body: dict[str, Any]) -> Any:
        answer = requests.post(f"{proxy.control_url}{path}", json=body, headers=headers, timeout=10,
                               proxies={"http": None, "https": None})
        assert answer.status_code == 200, answer.text
        return answer.json()

    template = post("/experimentTemplates", TEMPLATE)["experimentTemplate"]["id"]
    experiment: str = post("/experiments", {"experimentTemplateId": template})["experiment"]["id"]
    return experiment


def check_every_command(proxy: Fisproxy, experiment: str, **env: str) -> None:
    url = ("--control-url", proxy.control_url)
    listed = fisproxy("experiments", *url, "--format", "json", **env)
    assert listed.returncode == 0, listed.stderr
    assert experiment in {e["id"] for e in json.loads(listed.stdout)}
    report = fisproxy("report", experiment, *url, "--format", "json", **env)
    assert report.returncode == 0 and json.loads(report.stdout)["experiment"]["id"] == experiment, report.stderr
    proxies = fisproxy("proxies", *url, "--format", "json", **env)
    assert proxies.returncode == 0 and len(json.loads(proxies.stdout)) >= 1, proxies.stderr


def test_a_token_protected_proxy(tmp_path: Path, moto: str) -> None:
    with Fisproxy(tmp_path, moto, env_extra={"FISPROXY_CONTROL_TOKEN": TOKEN}).running() as proxy:
        experiment = start_experiment(proxy, {"Authorization": f"Bearer {TOKEN}"})
        check_every_command(proxy, experiment, FISPROXY_CONTROL_TOKEN=TOKEN)
        refused = fisproxy("experiments", "--control-url", proxy.control_url)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1
        assert "refused a request signed with access key AKIAIOSFODNN7EXAMPLE" in refused.stderr
        assert "set $FISPROXY_CONTROL_TOKEN (or --control-token)" in refused.stderr
        # the AWS CLI cannot send a token: it is told what it needs instead
        aws = subprocess.run([str(VENV_BIN / "aws"), "fis", "list-experiments", "--endpoint-url", proxy.control_url],
                             capture_output=True, text=True, timeout=60, env=clean_env())
        assert aws.returncode != 0
        assert "UnrecognizedClientException" in aws.stderr and "--control-credentials" in aws.stderr, aws.stderr
        assert "The security token included in the request is invalid" not in aws.stderr


def test_a_key_protected_proxy(tmp_path: Path, moto: str) -> None:
    keys = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": KEY_SECRET}
    proxy = Fisproxy(tmp_path, moto, env_extra={"FISPROXY_CONTROL_CREDENTIALS": f"{KEY_ID}:{KEY_SECRET}"})
    with proxy.running():
        fis = boto3.session.Session().client(
            "fis", region_name="us-east-1", endpoint_url=proxy.control_url, aws_access_key_id=KEY_ID,
            aws_secret_access_key=KEY_SECRET, config=Config(proxies={}))
        template = fis.create_experiment_template(**TEMPLATE)["experimentTemplate"]["id"]
        experiment = fis.start_experiment(experimentTemplateId=template)["experiment"]["id"]
        check_every_command(proxy, experiment, **keys)
        refused = fisproxy("proxies", "--control-url", proxy.control_url)  # the suite's default keys
        assert refused.returncode == 2
        assert "access key AKIAIOSFODNN7EXAMPLE is not one of its --control-credentials" in refused.stderr


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed")
    proc, port = start_redis(tmp_path / "redis")
    try:
        yield port
    finally:
        stop(proc)


def test_a_token_protected_proxy_on_redis(tmp_path: Path, moto: str, redis_port: int) -> None:
    store = f"redis://127.0.0.1:{redis_port}/0"
    env = {"FISPROXY_CONTROL_TOKEN": TOKEN, "FISPROXY_STORE": store}
    with Fisproxy(tmp_path, moto, env_extra=env).running() as proxy:
        experiment = start_experiment(proxy, {"Authorization": f"Bearer {TOKEN}"})
        check_every_command(proxy, experiment, FISPROXY_CONTROL_TOKEN=TOKEN)
        for args, extra in ((("--store", store), {}), ((), {"FISPROXY_STORE": store})):
            fleet = fisproxy("proxies", *args, "--format", "json", **extra)
            assert fleet.returncode == 0, fleet.stderr
            assert [p["store"] for p in json.loads(fleet.stdout)] == ["redis"]
            listed = fisproxy("experiments", *args, **extra)
            assert listed.returncode == 0 and experiment in listed.stdout, listed.stderr
        assert f"fisproxy experiments: reading the store {store}: $FISPROXY_STORE" in listed.stderr


def test_after_the_proxy_of_this_folder_stopped_its_state_file_is_read(
        tmp_path: Path, moto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "clone"
    folder.mkdir()
    run_dir = {"FISPROXY_RUNTIME_DIR": str(tmp_path / "run")}
    monkeypatch.chdir(folder)  # where the proxy starts, as `make run` does in the clone
    proxy = Fisproxy(folder, moto, env_extra=run_dir)
    with proxy.running():
        experiment = start_experiment(proxy, {})
        running = fisproxy("experiments", cwd=folder, **run_dir)
        assert running.returncode == 0 and experiment in running.stdout
        assert (f"fisproxy experiments: reading the control API at {proxy.control_url}: the fisproxy on port "
                f"{proxy.port}") in running.stderr
    # stopped: the shell still has the proxy's FIS endpoint, which no longer answers
    stopped = fisproxy("experiments", cwd=folder, AWS_ENDPOINT_URL_FIS=proxy.control_url, **run_dir)
    assert stopped.returncode == 0 and experiment in stopped.stdout, stopped.stderr
    assert f"reading the state file {proxy.state}: $AWS_ENDPOINT_URL_FIS {proxy.control_url} does not answer; " \
           f"no fisproxy of this folder running; the last one started in {folder.resolve()}" in stopped.stderr
