"""Secrets (the control token, control credentials, the Redis password) given the way the README
advises, through the environment: on no command line of any process fisproxy starts (`ps`
shows every user's), and in none of its output: the log, the health answer, the fleet listing,
`fisproxy proxies`, the runtime files, mitmweb's `/options.json`."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import Fisproxy
from tests.e2e.test_mitmweb import MITMPROXY_12, PASSWORD, Web
from tests.helpers import (
    VENV_BIN,
    clean_env,
    free_port,
    redis_server_binary,
    start_redis,
    stop,
    wait_until,
)

TOKEN = "t0ken-Kq8vZ2"
KEY_ID, KEY_SECRET = "AKIDFISPROXYTEST", "s3cret-Wm4pR7xY"
REDIS_PASSWORD = "r3dis-Pw9fN3"
SECRETS = (TOKEN, KEY_SECRET, REDIS_PASSWORD)

pytestmark = pytest.mark.skipif(redis_server_binary() is None, reason="redis-server is not installed")


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    proc, port = start_redis(tmp_path / "redis", None, "--requirepass", REDIS_PASSWORD)
    try:
        yield port
    finally:
        stop(proc)


def secret_env(redis_port: int) -> dict[str, str]:
    return {"FISPROXY_CONTROL_TOKEN": TOKEN, "FISPROXY_CONTROL_CREDENTIALS": f"{KEY_ID}:{KEY_SECRET}",
            "FISPROXY_STORE": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_port}/0"}


def shown(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def command_lines(root: int) -> str:
    procs = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    return "\n".join(" ".join(p.cmdline()) for p in procs if p.is_running())


def test_workers_keep_secrets_off_command_lines_and_out_of_output(tmp_path: Path, moto: str,
                                                                   redis_port: int) -> None:
    proxy = Fisproxy(tmp_path, moto, extra_args=("--workers", "2"), env_extra=secret_env(redis_port))
    with proxy.running():
        assert proxy.proc is not None
        wait_until(lambda: len(psutil.Process(proxy.proc.pid).children()) == 2, 30, "two workers")
        assert shown(command_lines(proxy.proc.pid)) == []
        health = proxy.control("GET", "/_fisproxy/health").text
        fleet = proxy.control("GET", "/_fisproxy/proxies", headers={"Authorization": f"Bearer {TOKEN}"})
        assert fleet.status_code == 200 and len(fleet.json()["proxies"]) >= 1
        listed = subprocess.run(
            [str(VENV_BIN / "fisproxy"), "proxies", "--control-url", proxy.control_url, "--format", "json"],
            capture_output=True, text=True, timeout=60, env=clean_env(FISPROXY_CONTROL_TOKEN=TOKEN))
        assert listed.returncode == 0, listed.stderr
        runtime_files = "".join(p.read_text() for p in Path(clean_env()["FISPROXY_RUNTIME_DIR"]).glob("*.json"))
        assert shown(health) == [] and shown(fleet.text) == [] and shown(listed.stdout + listed.stderr) == []
        assert shown(runtime_files) == []
    assert shown(proxy.log.read_text()) == []


def test_mitmweb_options_show_no_secret(tmp_path: Path, moto: str, redis_port: int) -> None:
    web_port = free_port()
    extra: tuple[str, ...] = ("--web-port", str(web_port))
    if MITMPROXY_12:
        extra += ("--set", f"web_password={PASSWORD}")
    proxy = Fisproxy(tmp_path, moto, extra_args=extra, subcommand="web", env_extra=secret_env(redis_port))
    with proxy.running():
        answer = Web(proxy, f"http://127.0.0.1:{web_port}").get("/options.json")
        options = json.loads(answer.text)
        assert options["fisproxy_control_token"]["value"] == "(hidden)"
        assert options["fisproxy_control_credentials"]["value"] == [f"{KEY_ID}:(hidden)"]
        assert options["fisproxy_store"]["value"] == f"redis://:***@127.0.0.1:{redis_port}/0"
        assert shown(answer.text) == []
        # and the proxy uses the real ones: the token gets in
        assert proxy.control("GET", "/experiments", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
