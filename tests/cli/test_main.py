"""The command line: clear one-line errors with exit code 2, the CA with a private key, the
env lines. These run the real `fisproxy` entry point in a subprocess."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from tests.helpers import (
    VENV_BIN,
    clean_env,
    free_port,
    http_ok,
    redis_server_binary,
    start_process,
    start_redis,
    stop,
    wait_until,
)

FISPROXY = str(VENV_BIN / "fisproxy")
ADDON = Path(__file__).resolve().parents[2] / "addons" / "fisproxy.py"


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
    from fisproxy.cli.main import build_parser, command_parser

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
    # the first steps: moto first, the pinned form of `fisproxy env`, the keys moto needs
    assert text.index("moto_server -p 5000") < text.index("fisproxy run --aws-endpoint http://127.0.0.1:5000")
    assert "eval \"$(fisproxy env --port 8080)\"" in text
    assert "export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing" in text


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
    from fisproxy.cli.run import unreachable

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


def test_a_set_option_is_checked_like_its_flag(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run("run", "--port", str(free_port()), "--control-port", str(free_port()),
                 "--certs", str(tmp_path / "c"), "--set", f"fisproxy_state={blocker}/state.sqlite")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert f"--set fisproxy_state {blocker}/state.sqlite: {blocker} is a file, not a folder" in result.stderr


def test_an_addon_that_cannot_open_its_store_exits_instead_of_running_deaf(tmp_path: Path) -> None:
    """Plain `mitmdump -s addons/fisproxy.py` has no command-line checks: the addon stops."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = subprocess.run(
        [str(VENV_BIN / "mitmdump"), "-s", str(ADDON), "--listen-port", str(free_port()),
         "--set", f"confdir={tmp_path / 'c'}", "--set", f"fisproxy_control_port={free_port()}",
         "--set", f"fisproxy_state={blocker}/state.sqlite"],
        capture_output=True, text=True, timeout=60, env=clean_env())
    assert "could not start" in result.stdout + result.stderr


# ---- one configuration: flags, options, --set, environment and errors from one declaration ----

def resolve_run(argv: list[str]) -> dict[str, object]:
    from fisproxy.cli.flags import resolve
    from fisproxy.cli.main import parse_args

    return resolve(parse_args(["run", *argv]), "run").values


@pytest.mark.parametrize(("argv", "env", "error"), [
    (["--aws-endpoint", "ftp://x"], {}, "--aws-endpoint: expected http(s)://host[:port], got 'ftp://x'"),
    ([], {"FISPROXY_AWS_ENDPOINT": "ftp://x"}, "$FISPROXY_AWS_ENDPOINT: expected http(s)://host[:port], got 'ftp://x'"),
    (["--set", "fisproxy_aws_endpoint=ftp://x"], {}, "--set fisproxy_aws_endpoint: expected http(s)://host[:port], got 'ftp://x'"),
    (["--placement", "zone=a"], {}, "--placement: expected az=...,az-id=...,subnet=..., got 'zone=a'"),
    (["--set", "fisproxy_account_id=12"], {}, "--set fisproxy_account_id: must be 12 digits, got '12'"),
    (["--set", "fisproxy_control_port=eighty"], {}, "--set fisproxy_control_port: not a whole number: 'eighty'"),
    (["--control-port", "70000"], {}, "--control-port: 70000 is not a port (1-65535, or 0 for none)"),
    (["--workers", "0"], {}, "--workers: 0: expected 1 to 64"),
    (["--store", "http://h/0"], {}, "--store: unsupported scheme 'http' in http://h/0; expected redis://"),
    (["--allowed-role", "fis-*"], {}, "--allowed-role: entry 1 is not a role ARN pattern like arn:aws:iam::"),
    ([], {"FISPROXY_ALLOWED_HOSTS": "ok.example,no way"}, "$FISPROXY_ALLOWED_HOSTS: 'no way' is not a host name"),
    (["--set", "fisproxy_allowed_origins=ftp:"], {}, "--set fisproxy_allowed_origins: 'ftp:' is not an origin"),
])
def test_an_error_names_the_setting_as_it_was_given(argv: list[str], env: dict[str, str], error: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from fisproxy.proxy.settings import SettingError

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingError) as raised:
        resolve_run(argv)
    assert str(raised.value).startswith(error)


def test_the_addon_names_the_option_with_the_same_words() -> None:
    from mitmproxy import exceptions
    from mitmproxy.test import taddons

    from fisproxy.proxy.runtime import Runtime

    runtime = Runtime()
    with taddons.context(runtime) as tctx:
        with pytest.raises(exceptions.OptionsError, match=r"^fisproxy_aws_endpoint: expected http\(s\)://host\[:port\], got 'ftp://x'$"):
            tctx.configure(runtime, fisproxy_aws_endpoint="ftp://x")


@pytest.mark.parametrize("argv", [
    ["--control-token", "has a space s3cr3t"],
    ["--control-credentials", "AKID:s3cr3t with space"],
    ["--set", "fisproxy_control_token=has a space s3cr3t"],
])
def test_errors_never_quote_a_secret(argv: list[str]) -> None:
    from fisproxy.proxy.settings import SettingError

    with pytest.raises(SettingError) as raised:
        resolve_run(argv)
    assert "s3cr3t" not in str(raised.value)


def test_precedence_set_then_flag_then_environment_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FISPROXY_AWS_ENDPOINT", "http://env:1")
    assert resolve_run([])["aws_endpoint"] == "http://env:1"
    assert resolve_run(["--aws-endpoint", "http://flag:2"])["aws_endpoint"] == "http://flag:2"
    assert resolve_run(["--aws-endpoint", "http://flag:2", "--set", "fisproxy_aws_endpoint=http://set:3"])[
        "aws_endpoint"] == "http://set:3"
    monkeypatch.delenv("FISPROXY_AWS_ENDPOINT")
    assert resolve_run([])["aws_endpoint"] is None
    monkeypatch.setenv("FISPROXY_CONTROL_CREDENTIALS", "A:a,B:b")
    assert dict(resolve_run([])["control_credentials"]) == {"A": "a", "B": "b"}  # type: ignore[call-overload]
    # list options add up: the flag's and --set's
    assert dict(resolve_run(["--control-credentials", "C:c", "--set", "fisproxy_control_credentials=D:d"])[  # type: ignore[call-overload]
        "control_credentials"]) == {"C": "c", "D": "d"}


def test_the_flags_and_the_options_come_from_the_declaration() -> None:
    from mitmproxy.test import taddons

    from fisproxy.cli.main import build_parser, command_parser
    from fisproxy.proxy.runtime import Runtime
    from fisproxy.proxy.settings import SETTINGS

    for command in ("run", "web"):
        flags = {o for a in command_parser(build_parser(), command)._actions for o in a.option_strings}
        assert flags == {"-h", "--help", "--set"} | {s.flag for s in SETTINGS if s.flag and command in s.commands}
    runtime = Runtime()
    with taddons.context(runtime) as tctx:
        declared = {name: tctx.options._options[name] for name in tctx.options.keys() if name.startswith("fisproxy_")}
    ours = {s.option: s for s in SETTINGS if s.option and s.option.startswith("fisproxy_")}
    assert set(declared) == set(ours)
    for name, option in declared.items():
        assert option.help == ours[name].help and option.default == ours[name].default_value(), name


def test_web_takes_no_workers_and_state_shows_its_default() -> None:
    web = run("web", "--help")
    assert web.returncode == 0 and "--workers" not in web.stdout and "--web-port" in web.stdout
    text = " ".join(run("run", "--help").stdout.split())
    assert "--state PATH SQLite file holding templates, experiments and logs; survives restarts. " \
           "(default: ~/.local/state/fisproxy/fisproxy.sqlite" in text
    assert "--workers N" in text and "--web-port" not in text


def test_the_readme_table_is_the_declaration() -> None:
    from fisproxy.proxy.settings import markdown_table

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert markdown_table() in readme, (
        "README.md's table of settings differs from fisproxy/proxy/settings.py: replace it with "
        "the output of `python -m fisproxy.proxy.settings`")


def test_secret_options_are_hidden_once_read() -> None:
    """mitmweb's options editor and /options.json show mitmproxy's options: secrets read by the
    addon are replaced there by what may be shown; the addon keeps the real values."""
    from mitmproxy.test import taddons

    from fisproxy.proxy.runtime import Runtime

    runtime = Runtime()
    with taddons.context(runtime) as tctx:
        tctx.configure(runtime, fisproxy_control_token="t0ken", fisproxy_control_credentials=["AKID:s3cret"],
                       fisproxy_store="redis://:pa55@127.0.0.1:6379/0")
        assert tctx.options.fisproxy_control_token == "(hidden)"
        assert tctx.options.fisproxy_control_credentials == ["AKID:(hidden)"]
        assert tctx.options.fisproxy_store == "redis://:***@127.0.0.1:6379/0"
        assert runtime.settings is not None
        assert runtime.settings.control_auth.token == "t0ken"
        assert dict(runtime.settings.control_auth.credentials) == {"AKID": "s3cret"}
        assert runtime.settings.store_url == "redis://:pa55@127.0.0.1:6379/0"
        tctx.configure(runtime, fisproxy_quiet=True)  # another option: the secrets stay
        assert runtime.settings.control_auth.token == "t0ken"
        tctx.configure(runtime, fisproxy_control_token="n3w")  # a new value (mitmweb's editor)
        assert tctx.options.fisproxy_control_token == "(hidden)" and runtime.settings.control_auth.token == "n3w"
        tctx.configure(runtime, fisproxy_control_token=None)
        assert tctx.options.fisproxy_control_token is None and runtime.settings.control_auth.token is None


def test_env_into_a_closed_pipe_is_no_traceback(tmp_path: Path) -> None:
    """`fisproxy env | head -1`: the reader leaves early. Here there is no reader at all."""
    proc = subprocess.Popen([FISPROXY, "env", "--certs", str(tmp_path / "c"), "--port", "9"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=clean_env())
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(60)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


@pytest.mark.skipif(redis_server_binary() is None, reason="redis-server is not installed")
def test_the_redis_appendonly_warning_is_printed_once(tmp_path: Path) -> None:
    redis, redis_port = start_redis(tmp_path / "redis", None, "--appendonly", "no")
    control = free_port()
    log = tmp_path / "fisproxy.log"
    try:
        proxy = start_process(
            [FISPROXY, "run", "--port", str(free_port()), "--control-port", str(control),
             "--certs", str(tmp_path / "c"), "--store", f"redis://127.0.0.1:{redis_port}/0"],
            log, lambda: http_ok(f"http://127.0.0.1:{control}/_fisproxy/health"), "fisproxy",
            env=clean_env(FISPROXY_RUNTIME_DIR=str(tmp_path / "run")))
        stop(proxy)
    finally:
        stop(redis)
    assert log.read_text().count("runs without appendonly") == 1, log.read_text()
