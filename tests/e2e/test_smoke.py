"""Smoke test for each Python of `make test`'s matrix: the real `fisproxy run` process runs on
the Python under test with the mitmproxy that pyproject.toml picks for it, the AWS CLI lists
experiments on its control port, and a boto3 DynamoDB call through it is throttled."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import botocore.exceptions
import psutil
import pytest
from packaging.requirements import Requirement

import fisproxy
from tests.e2e.conftest import Fisproxy, start_action
from tests.helpers import VENV_BIN

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
VERSIONS_PY = ("import json, platform, mitmproxy.version; "
               "print(json.dumps([platform.python_version(), mitmproxy.version.VERSION]))")


def mitmproxy_requirement() -> Requirement:
    """The mitmproxy line of pyproject.toml's dependencies that applies to this Python."""
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    [req] = [r for r in map(Requirement, deps) if r.name == "mitmproxy" and (r.marker is None or r.marker.evaluate())]
    return req


def proxy_versions(proxy: Fisproxy) -> tuple[str, str]:
    """Python and mitmproxy versions of the running proxy: its process runs the interpreter its
    console script names (argv[0]), which is asked for both."""
    assert proxy.proc is not None
    process = psutil.Process(proxy.proc.pid)
    interpreter = process.cmdline()[0]
    assert Path(process.exe()).resolve() == Path(interpreter).resolve()
    out = subprocess.run([interpreter, "-c", VERSIONS_PY], capture_output=True, text=True, timeout=60, check=True)
    python, mitmproxy = json.loads(out.stdout)
    return python, mitmproxy


def test_proxy_runs_on_this_python_with_the_mitmproxy_pyproject_picks(proxy: Fisproxy) -> None:
    python, mitmproxy = proxy_versions(proxy)
    assert python.split(".")[:2] == [str(v) for v in sys.version_info[:2]]
    assert mitmproxy_requirement().specifier.contains(mitmproxy), mitmproxy
    health = proxy.control("GET", "/_fisproxy/health").json()
    assert (health["status"], health["version"]) == ("ok", fisproxy.__version__)


def test_aws_cli_lists_the_experiment_that_throttles_boto3(proxy: Fisproxy) -> None:
    ddb = proxy.client("dynamodb", retries={"total_max_attempts": 1})
    ddb.list_tables()  # passes through to moto
    exp_id = start_action(proxy, "aws:fis:inject-api-throttle-error",
                          {"service": "dynamodb", "operations": "ListTables", "percentage": "100"})

    cli = subprocess.run(
        [str(VENV_BIN / "aws"), "fis", "list-experiments", "--endpoint-url", proxy.control_url,
         "--region", "us-east-1", "--output", "json"],
        capture_output=True, text=True, env=proxy.env(HTTPS_PROXY="", HTTP_PROXY=""), timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    listed = {e["id"]: e["state"]["status"] for e in json.loads(cli.stdout)["experiments"]}
    assert listed[exp_id] == "running"

    with pytest.raises(botocore.exceptions.ClientError) as info:
        ddb.list_tables()
    assert info.value.response["Error"]["Code"] == "ThrottlingException"
    assert info.value.response["ResponseMetadata"]["HTTPHeaders"]["x-fisproxy-fault"] == f"{exp_id}/fault/error"
