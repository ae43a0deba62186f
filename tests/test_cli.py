"""The command line: clear one-line errors with exit code 2, the CA with a private key, the
env lines. These run the real `fisproxy` entry point in a subprocess."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from pathlib import Path

from tests.helpers import VENV_BIN, clean_env, free_port, http_ok, stop, wait_until

FISPROXY = str(VENV_BIN / "fisproxy")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FISPROXY, *args], capture_output=True, text=True, timeout=60,
                          env=env or clean_env())


def parse_exports(stdout: str) -> dict[str, str]:
    """`export NAME=value` lines as a dict; `#` comment lines are for the reader."""
    lines = [line for line in stdout.splitlines() if not line.startswith("# ")]
    assert all(line.startswith("export ") for line in lines), stdout
    return dict(line.removeprefix("export ").split("=", 1) for line in lines)


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


def test_bad_values_are_one_line_exit_2(tmp_path: Path) -> None:
    for args in (
        ["run", "--aws-endpoint", "ftp://x", "--certs", str(tmp_path / "c")],
        ["run", "--templates", str(tmp_path / "missing.yaml"), "--certs", str(tmp_path / "c")],
    ):
        result = run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.strip() and result.stderr.strip().count("\n") == 0, (args, result.stderr)


def test_unparseable_arguments_print_the_usage_and_error_exit_2() -> None:
    for args, usage, error in (
        (["run", "--port", "notaport"], "usage: fisproxy run ", "fisproxy run: error: argument --port: invalid int"),
        (["frobnicate"], "usage: fisproxy ", "fisproxy: error: argument <command>: invalid choice: 'frobnicate'"),
        ([], "usage: fisproxy ", "fisproxy: error: the following arguments are required: <command>"),
    ):
        result = run(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith(usage), (args, result.stderr)
        assert error in result.stderr, (args, result.stderr)


def test_misspelt_flag_prints_the_commands_usage_and_the_closest_flag() -> None:
    result = run("run", "--prot", "9000")
    assert result.returncode == 2
    usage, _, error = result.stderr.rstrip().rpartition("\n")
    assert usage.startswith("usage: fisproxy run [-h]") and "--aws-endpoint URL" in usage
    assert error == "fisproxy run: error: unrecognized arguments: --prot 9000 (did you mean --port?)"


def test_top_level_help_lists_every_command_and_points_to_their_help() -> None:
    from fisproxy.cli import build_parser, command_parser

    result = run("--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    subparsers = next(a for a in build_parser()._actions if a.choices and a.dest == "command")
    helps = {c.dest: c.help for c in subparsers._choices_actions}
    assert set(helps) == {"run", "web", "env", "ca", "report", "experiments", "proxies", "scenarios"}
    for command, help_text in helps.items():
        assert help_text and f"{command} {' '.join(help_text.split())}" in text, command
        assert command_parser(build_parser(), command).prog == f"fisproxy {command}"
    assert "fisproxy <command> --help" in text
    assert "eval \"$(fisproxy env)\"" in text


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
    exports = parse_exports(result.stdout)
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


def test_unreachable_says_why() -> None:
    from fisproxy.cli import unreachable

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        assert unreachable("127.0.0.1", listening.getsockname()[1]) is None
    closed = free_port()
    assert unreachable("127.0.0.1", closed) == f"127.0.0.1:{closed}: Connection refused"
    assert (unreachable("no-such-host.invalid", 80) or "").startswith("cannot resolve no-such-host.invalid: ")


def test_unreachable_aws_endpoint_is_a_warning_and_the_proxy_starts(tmp_path: Path) -> None:
    closed, control = free_port(), free_port()
    log = tmp_path / "fisproxy.log"
    proc = subprocess.Popen(
        [FISPROXY, "run", "--aws-endpoint", f"http://127.0.0.1:{closed}", "--port", str(free_port()),
         "--control-port", str(control), "--certs", str(tmp_path / "c"), "--state", str(tmp_path / "s.sqlite")],
        stdout=subprocess.DEVNULL, stderr=log.open("wb"), env=clean_env(FISPROXY_RUNTIME_DIR=str(tmp_path / "run")))
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{control}/_fisproxy/health"), 60, "fisproxy", proc)
    finally:
        stop(proc)
    assert (f"fisproxy: warning: --aws-endpoint http://127.0.0.1:{closed} does not answer "
            f"(127.0.0.1:{closed}: Connection refused); starting anyway") in log.read_text()


def test_a_proxy_that_cannot_open_its_store_exits_instead_of_running_deaf(tmp_path: Path) -> None:
    # (--set bypasses the command line's own checks of --state: the addon must not hang on.)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = subprocess.run(
        [FISPROXY, "run", "--port", str(free_port()), "--control-port", str(free_port()),
         "--certs", str(tmp_path / "c"), "--set", f"fisproxy_state={blocker}/state.sqlite"],
        capture_output=True, text=True, timeout=60, env=clean_env())
    assert result.returncode == 1
    assert "could not start" in result.stdout + result.stderr
