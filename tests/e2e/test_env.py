"""`eval "$(fisproxy env)"` is all a shell needs: the AWS CLI then goes through the proxy,
trusts its CA, and finds the FIS API with no flags; requests and curl trust it too."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest

from tests.e2e.conftest import Fisproxy, start_action
from tests.e2e.test_faults import make_table
from tests.helpers import AWS_CLI_NO_BACKOFF, VENV_BIN, clean_env


def shell(proxy: Fisproxy, script: str) -> subprocess.CompletedProcess[str]:
    env_cmd = (f"{VENV_BIN / 'fisproxy'} env --port {proxy.port} --control-port {proxy.control_port} "
               f"--certs {proxy.certs}")
    return subprocess.run(["bash", "-c", f'eval "$({env_cmd})"\n{script}'], capture_output=True,
                          text=True, env=clean_env(), timeout=120)


def test_aws_cli_after_eval_fisproxy_env(proxy: Fisproxy) -> None:
    table = f"t-{uuid.uuid4().hex[:8]}"
    make_table(proxy, table)
    exp_id = start_action(proxy, "aws:fis:inject-api-throttle-error",
                          {"service": "dynamodb", "operations": "PutItem", "percentage": "100"})
    item = '{"pk": {"S": "a"}}'
    result = shell(proxy, f"""
export PYTHONPATH={AWS_CLI_NO_BACKOFF}  # its ten attempts without their 25 s of back-off
aws dynamodb put-item --table-name {table} --item '{item}'
echo "put-exit=$?"
aws dynamodb get-item --table-name {table} --key '{item}' --output json
echo "get-exit=$?"
aws fis list-experiments --output json
""")
    assert "ThrottlingException" in result.stderr, result.stderr
    assert "(reached max retries: 9)" in result.stderr  # AWS CLI v1: legacy mode, DynamoDB: 10 attempts
    assert "put-exit=0" not in result.stdout
    assert "get-exit=0" in result.stdout, result.stderr
    listed = json.loads(result.stdout.split("get-exit=0", 1)[1])
    assert exp_id in {e["id"] for e in listed["experiments"]}


URL = "https://sts.us-east-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15"


def test_requests_trusts_the_proxy(proxy: Fisproxy) -> None:
    """REQUESTS_CA_BUNDLE points at the combined bundle: intercepted HTTPS to an AWS host is
    trusted by python-requests with no further flags (any HTTP status means TLS held)."""
    result = shell(proxy, f"""
{VENV_BIN / 'python'} -c 'import requests; print("requests", requests.get("{URL}", timeout=10).status_code)'
""")
    assert "requests " in result.stdout, result.stderr


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_trusts_the_proxy(proxy: Fisproxy) -> None:
    result = shell(proxy, f"curl -s -o /dev/null -w 'curl %{{http_code}}\\n' '{URL}'")
    assert "curl " in result.stdout and "curl 000" not in result.stdout, result.stdout + result.stderr


def test_the_suites_proxies_register_where_no_users_shell_looks(fisproxy: Fisproxy,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/conftest.py gives the session a runtime folder of its own: `fisproxy env` in a
    user's shell never finds the suite's proxies (it found them, and pointed the shell at them)."""
    from fisproxy.cli import runtimefile

    session_dir = runtimefile.runtime_dir()
    assert runtimefile.find(port=fisproxy.port) is not None  # recorded, in the session's folder
    monkeypatch.delenv("FISPROXY_RUNTIME_DIR")
    users_dir = runtimefile.runtime_dir()  # $XDG_RUNTIME_DIR/fisproxy or ~/.local/state/fisproxy/run
    assert users_dir != session_dir
    assert not list(users_dir.glob(f"proxy-{fisproxy.port}-*.json"))
    assert runtimefile.find(port=fisproxy.port) is None
