"""The command line: clear one-line errors with exit code 2, the CA with a private key, the
env lines. These run the real `fisproxy` entry point in a subprocess."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from pathlib import Path

from tests.helpers import VENV_BIN, clean_env, free_port

FISPROXY = str(VENV_BIN / "fisproxy")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FISPROXY, *args], capture_output=True, text=True, timeout=60,
                          env=env or clean_env())


def test_port_in_use_is_one_line_exit_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run("run", "--port", str(port), "--certs", str(tmp_path / "c"),
                     "--state", str(tmp_path / "s.sqlite"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert f"127.0.0.1:{port} is already in use" in result.stderr


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    for args in (
        ["run", "--port", "notaport"],
        ["run", "--aws-endpoint", "ftp://x", "--certs", str(tmp_path / "c")],
        ["run", "--templates", str(tmp_path / "missing.yaml"), "--certs", str(tmp_path / "c")],
        ["frobnicate"],
    ):
        result = run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.strip() and result.stderr.strip().count("\n") == 0, (args, result.stderr)


def test_ca_created_with_private_key(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    result = run("ca", "--certs", str(certs))
    assert result.returncode == 0
    assert result.stdout.strip() == str((certs / "mitmproxy-ca-cert.pem").resolve())
    assert "keytool" in result.stderr
    key = certs / "mitmproxy-ca.pem"
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


def test_env_prints_exports(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    result = run("env", "--certs", str(certs), "--port", "9090", "--control-port", "9092")
    assert result.returncode == 0
    exports = dict(line.removeprefix("export ").split("=", 1) for line in result.stdout.splitlines())
    assert exports["HTTPS_PROXY"] == "http://127.0.0.1:9090"
    assert exports["AWS_ENDPOINT_URL_FIS"] == "http://127.0.0.1:9092"
    bundle = Path(exports["AWS_CA_BUNDLE"])
    ca = (certs / "mitmproxy-ca-cert.pem").read_bytes()
    assert ca in bundle.read_bytes() and len(bundle.read_bytes()) > 10 * len(ca)  # system CAs too
    assert exports["NODE_EXTRA_CA_CERTS"] == str((certs / "mitmproxy-ca-cert.pem").resolve())


def test_invalid_templates_file_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "templates.yaml"
    bad.write_text("templates:\n  t1:\n    description: x\n    roleArn: arn:aws:iam::123456789012:role/r\n"
                   "    actions:\n      a: {actionId: 'aws:fis:inject-api-throttle-error', "
                   "parameters: {service: dynamodb, percentage: '150'}}\n")
    result = run("run", "--templates", str(bad), "--certs", str(tmp_path / "c"),
                 "--state", str(tmp_path / "s.sqlite"), "--port", str(free_port()), "--control-port", str(free_port()))
    assert result.returncode == 2
    assert "percentage" in result.stderr and result.stderr.strip().count("\n") == 0


def test_endpoint_port_needs_an_aws_endpoint(tmp_path: Path) -> None:
    result = run("run", "--endpoint-port", str(free_port()), "--certs", str(tmp_path / "c"),
                 "--state", str(tmp_path / "s.sqlite"), "--port", str(free_port()),
                 "--control-port", str(free_port()))
    assert result.returncode == 2 and "--endpoint-port needs --aws-endpoint" in result.stderr
