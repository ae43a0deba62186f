"""Which roles callers may pass, on real proxies in front of an upstream that is not on loopback
(a moto server bound to this machine's network address, standing in for real AWS): without
`--allowed-role` and without control API authentication, the AWS CLI's template with a resource
action is refused (AccessDeniedException naming roleArn and how to allow it); with
`--allowed-role`, a listed role stops the instance and any other role is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import Fisproxy, wait_for_state
from tests.e2e.test_resources import instances, states
from tests.helpers import VENV_BIN, free_port, http_ok, start_process, stop, wait_until

ALLOWED = "arn:aws:iam::123456789012:role/fis-ec2"
OTHER = "arn:aws:iam::123456789012:role/admin"


def network_address() -> str | None:
    """An IPv4 address of this machine that is not loopback."""
    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family.name == "AF_INET" and not a.address.startswith("127."):
                return str(a.address)
    return None


ADDRESS = network_address()
pytestmark = pytest.mark.skipif(ADDRESS is None, reason="no network address besides loopback")


@pytest.fixture(scope="module")
def remote_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    url = f"http://{ADDRESS}:{port}"
    proc = start_process([sys.executable, "-m", "moto.server", "-H", str(ADDRESS), "-p", str(port)],
                         tmp_path_factory.mktemp("moto-remote") / "moto.log",
                         lambda: http_ok(f"{url}/moto-api/"), "moto server")
    try:
        yield url
    finally:
        stop(proc)


def template_file(tmp_path: Path, role: str, instance: str) -> Path:
    spec = tmp_path / f"template-{uuid.uuid4().hex[:6]}.json"
    spec.write_text(json.dumps({
        "description": "stop one instance", "roleArn": role, "stopConditions": [{"source": "none"}],
        "targets": {"vms": {"resourceType": "aws:ec2:instance", "selectionMode": "ALL",
                            "resourceArns": [f"arn:aws:ec2:us-east-1:123456789012:instance/{instance}"]}},
        "actions": {"stop": {"actionId": "aws:ec2:stop-instances", "targets": {"Instances": "vms"}}},
    }))
    return spec


def aws_cli(proxy: Fisproxy, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "aws"), "fis", *args, "--output", "json", "--region", "us-east-1",
                           "--endpoint-url", proxy.control_url],
                          capture_output=True, text=True, env=proxy.env(HTTPS_PROXY="", HTTP_PROXY=""), timeout=60)


def test_resource_actions_against_a_remote_upstream_need_an_allowed_role(
        remote_moto: str, tmp_path: Path) -> None:
    (tmp_path / "open").mkdir()
    with Fisproxy(tmp_path / "open", remote_moto).running() as proxy:
        instance = instances(proxy, 1, {"app": "passrole"})[0]
        refused = aws_cli(proxy, "create-experiment-template", "--cli-input-json",
                          f"file://{template_file(tmp_path, OTHER, instance)}")
        assert refused.returncode != 0
        assert "(AccessDeniedException)" in refused.stderr and f"roleArn: {OTHER}" in refused.stderr
        assert "--allowed-role" in refused.stderr and "--control-token" in refused.stderr
        assert proxy.fis().list_experiment_templates()["experimentTemplates"] == []

    (tmp_path / "listed").mkdir()
    listed = Fisproxy(tmp_path / "listed", remote_moto,
                      extra_args=("--allowed-role", "arn:aws:iam::123456789012:role/fis-*"))
    with listed.running() as proxy:
        refused = aws_cli(proxy, "create-experiment-template", "--cli-input-json",
                          f"file://{template_file(tmp_path, OTHER, instance)}")
        assert "(AccessDeniedException)" in refused.stderr and "matches no --allowed-role" in refused.stderr
        made = aws_cli(proxy, "create-experiment-template", "--cli-input-json",
                       f"file://{template_file(tmp_path, ALLOWED, instance)}")
        assert made.returncode == 0, made.stderr
        template_id = json.loads(made.stdout)["experimentTemplate"]["id"]
        started = aws_cli(proxy, "start-experiment", "--experiment-template-id", template_id)
        assert started.returncode == 0, started.stderr
        exp_id = json.loads(started.stdout)["experiment"]["id"]
        wait_until(lambda: states(proxy, [instance])[instance] == "stopped", 20, "the instance stopped")
        wait_for_state(proxy.fis(), exp_id, "completed", timeout=30)
