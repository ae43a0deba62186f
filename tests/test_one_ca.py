"""One CA, found without thought: `fisproxy env` and `fisproxy ca` use the CA folder and ports
of the running proxy (its runtime file), ask which one when several run and none was started
in this folder, and fall back to the defaults when none runs; a new CA is never created
silently. Real `fisproxy` processes, isolated in a temporary home. (A proxy started in this
folder: tests/cli/test_choose_proxy.py and tests/e2e/test_walkthrough.py.)"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.test_main import parse_exports
from tests.helpers import VENV_BIN, clean_env, free_port, http_ok, stop, wait_until

FISPROXY = str(VENV_BIN / "fisproxy")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No real home: the default CA folder and the runtime files live under tmp_path."""
    return clean_env(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"),
                     XDG_STATE_HOME=str(tmp_path / "state"), FISPROXY_RUNTIME_DIR=str(tmp_path / "run"))


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        stop(proc)


def start(procs: list[subprocess.Popen], env: dict[str, str], tmp_path: Path, name: str) -> tuple[int, int, Path]:
    port, control = free_port(), free_port()
    certs = tmp_path / f"certs-{name}"
    log = tmp_path / f"{name}.log"
    proc = subprocess.Popen(
        [FISPROXY, "run", "--port", str(port), "--control-port", str(control), "--certs", str(certs),
         "--state", str(tmp_path / f"{name}.sqlite")],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env)
    procs.append(proc)
    wait_until(lambda: http_ok(f"http://127.0.0.1:{control}/_fisproxy/health"), 60, f"fisproxy {name}", proc)
    return port, control, certs


def fisproxy(env: dict[str, str], *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([FISPROXY, *args], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == code, result.stderr
    return result


def test_env_and_ca_follow_the_running_proxies(tmp_path: Path, env: dict[str, str],
                                               procs: list[subprocess.Popen]) -> None:
    port_a, control_a, certs_a = start(procs, env, tmp_path, "a")
    port_b, control_b, certs_b = start(procs, env, tmp_path, "b")

    # No flags, two proxies, neither started in this folder: no guess, a list.
    for command in ("env", "ca"):
        refused = fisproxy(env, command, code=2)
        assert refused.stdout == ""
        assert "2 fisproxy processes run" in refused.stderr and f"port {port_a}" in refused.stderr
        assert f"port {port_b}" in refused.stderr and "name one with --port" in refused.stderr

    # --port picks that proxy's CA and control port; --certs picks the proxy using that CA.
    exports = parse_exports(fisproxy(env, "env", "--port", str(port_a)).stdout)
    assert exports["AWS_CA_BUNDLE"] == str((certs_a / "fisproxy-ca-bundle.pem").resolve())
    assert exports["AWS_ENDPOINT_URL_FIS"] == f"http://127.0.0.1:{control_a}"
    exports = parse_exports(fisproxy(env, "env", "--certs", str(certs_b)).stdout)
    assert exports["HTTPS_PROXY"] == f"http://127.0.0.1:{port_b}"
    assert exports["NODE_EXTRA_CA_CERTS"] == str((certs_b / "mitmproxy-ca-cert.pem").resolve())
    assert fisproxy(env, "ca", "--certs", str(certs_b)).stdout.splitlines()[0] == \
        str((certs_b / "mitmproxy-ca-cert.pem").resolve())

    # B killed (no clean exit, its file stays behind): A is the only one running.
    procs[1].send_signal(signal.SIGKILL)
    procs[1].wait()
    result = fisproxy(env, "env")
    assert parse_exports(result.stdout)["HTTPS_PROXY"] == f"http://127.0.0.1:{port_a}"
    assert "the only one running on this host" in result.stderr
    assert fisproxy(env, "ca").stdout.splitlines()[0] == str((certs_a / "mitmproxy-ca-cert.pem").resolve())

    # A stopped cleanly: its file is gone, and env falls back to the defaults.
    stop(procs[0])
    assert not list((tmp_path / "run").glob(f"proxy-{port_a}-*.json"))
    result = fisproxy(env, "env")
    exports = parse_exports(result.stdout)
    assert exports["HTTPS_PROXY"] == "http://127.0.0.1:8080"
    assert exports["AWS_CA_BUNDLE"] == str(tmp_path / "config" / "fisproxy" / "certs" / "fisproxy-ca-bundle.pem")
    assert "fisproxy env: no fisproxy running on this host" in result.stderr


def test_a_new_ca_is_announced_once(tmp_path: Path, env: dict[str, str]) -> None:
    certs = tmp_path / "certs"
    first = fisproxy(env, "ca", "--certs", str(certs))
    cert = (certs / "mitmproxy-ca-cert.pem").resolve()
    notice = f"fisproxy: created a new CA: {cert}; clients must trust it"
    assert notice in first.stderr
    assert f'eval "$(fisproxy env --certs {certs.resolve()})"' in first.stderr
    assert "created a new CA" not in fisproxy(env, "ca", "--certs", str(certs)).stderr
    assert "created a new CA" not in fisproxy(env, "env", "--certs", str(certs)).stderr


def test_the_proxy_announces_the_ca_it_creates(tmp_path: Path, env: dict[str, str],
                                               procs: list[subprocess.Popen]) -> None:
    _, _, certs = start(procs, env, tmp_path, "a")
    log = (tmp_path / "a.log").read_text()
    assert f"created a new CA: {(certs / 'mitmproxy-ca-cert.pem').resolve()}" in log
