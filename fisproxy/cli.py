"""The `fisproxy` command: run the proxy (mitmdump or mitmweb with the addon), print the
environment that points SDKs at it, and manage its CA.

Flags become mitmproxy options (`fisproxy_*` and core ones), so there is one configuration
system. A flag argparse does not know prints the command's usage and `error:` (exit 2);
unreadable files and ports in use end with one line and exit code 2. A running proxy records
itself in a runtime file (runtimefile.py), which `fisproxy env` and `fisproxy ca` read.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from fisproxy import __version__, reportcli, runtimefile
from fisproxy.certs import CA_CERT, ensure_ca, write_bundle
from fisproxy.fis.passrole import RolePolicy
from fisproxy.fis.templates_file import load_templates
from fisproxy.proxy.auth import ControlAuth
from fisproxy.proxy.browser import BrowserGuard
from fisproxy.proxy.settings import default_state_path, parse_endpoint, parse_placement
from fisproxy.runtimefile import RunningProxy
from fisproxy.statefile import state_problem

LIST_OPTIONS = frozenset({"fisproxy_templates", "fisproxy_control_credentials", "mode", "scripts",
                          "fisproxy_allowed_hosts", "fisproxy_allowed_origins", "fisproxy_allowed_roles"})
# Repeatable flags of lists, their option, and the variable read (comma separated) when absent.
ALLOWED = (("allowed_host", "fisproxy_allowed_hosts", "FISPROXY_ALLOWED_HOSTS"),
           ("allowed_origin", "fisproxy_allowed_origins", "FISPROXY_ALLOWED_ORIGINS"),
           ("allowed_role", "fisproxy_allowed_roles", "FISPROXY_ALLOWED_ROLES"))


def default_certs_dir() -> Path:
    if os.environ.get("FISPROXY_CERTS"):
        return Path(os.environ["FISPROXY_CERTS"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "fisproxy" / "certs"


def fail(message: str) -> NoReturn:
    print(f"fisproxy: error: {message}" if not message.startswith("fisproxy") else message,
          file=sys.stderr)
    sys.exit(2)


DESCRIPTION = """\
fisproxy: AWS Fault Injection Service as a proxy. Start it, point SDKs at it, create FIS
experiment templates and experiments with `aws fis ...`, and matching AWS calls get latency,
throttling, errors or dropped connections in the service's own wire format."""

EPILOG = """\
first steps:
  fisproxy run --aws-endpoint http://127.0.0.1:5000    # in one shell (moto as upstream)
  eval "$(fisproxy env)"                               # in another: proxy, CA, FIS endpoint

Run `fisproxy <command> --help` for a command's options."""

COMMANDS_HELP = "commands (fisproxy <command> --help for each one's options)"


class _TopLevelFormatter(argparse.RawDescriptionHelpFormatter):
    """Lists the commands under their title without argparse's extra `<command>` line."""

    def _format_action(self, action: argparse.Action) -> str:
        text = super()._format_action(action)
        if isinstance(action, argparse._SubParsersAction):
            text = text.split("\n", 1)[1]
        return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fisproxy", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=_TopLevelFormatter)
    parser.add_argument("--version", action="version", version=f"fisproxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>",
                                title=COMMANDS_HELP)

    def proxy_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--listen-host", default="127.0.0.1",
                       help="address for the proxy and the control API (default 127.0.0.1)")
        p.add_argument("--port", type=int, default=8080, help="proxy port (default 8080)")
        p.add_argument("--control-port", type=int, default=8082,
                       help="control API port: FIS API, Chaos API, health (default 8082; 0 = off)")
        p.add_argument("--aws-endpoint", metavar="URL", default=os.environ.get("FISPROXY_AWS_ENDPOINT") or None,
                       help="send all AWS traffic here (moto, LocalStack) keeping the Host header "
                            "(default: $FISPROXY_AWS_ENDPOINT; unset: real AWS)")
        p.add_argument("--endpoint-port", type=int, metavar="PORT",
                       help="also accept SDKs pointed at http://<listen-host>:PORT (endpoint_url / "
                            "AWS_ENDPOINT_URL) and forward them to --aws-endpoint (moto, LocalStack)")
        p.add_argument("--store", metavar="URL", default=os.environ.get("FISPROXY_STORE") or None,
                       help="a shared store: redis://[user:password@]host:port/db (or rediss://); "
                            "every proxy on it is one FIS (default: $FISPROXY_STORE; unset: the "
                            "SQLite file of --state)")
        p.add_argument("--state", type=Path, default=Path(os.environ.get("FISPROXY_STATE") or default_state_path()),
                       help="SQLite file for templates, experiments and logs")
        p.add_argument("--certs", type=Path, default=default_certs_dir(),
                       help="mitmproxy confdir holding the CA (default ~/.config/fisproxy/certs)")
        p.add_argument("--templates", type=Path, action="append", default=[], metavar="FILE",
                       help="YAML/JSON experiment templates to create or update at start-up")
        p.add_argument("--seed", type=int, help="seed for reproducible sampling and selection")
        p.add_argument("--placement", metavar="az=...,subnet=...",
                       default=os.environ.get("FISPROXY_PLACEMENT") or None,
                       help="where this proxy runs (az=us-east-1a, az-id=use1-az1, subnet=subnet-0abc), "
                            "for faults targeted at an Availability Zone or subnet "
                            "(default: $FISPROXY_PLACEMENT)")
        p.add_argument("--quiet", action="store_true", help="no log line per injected fault")
        p.add_argument("--workers", type=int, default=1, metavar="N",
                       help="N proxy processes behind the same ports (SO_REUSEPORT), sharing the "
                            "store: one core each (default 1; `run` only)")
        p.add_argument("--control-token", metavar="TOKEN",
                       default=os.environ.get("FISPROXY_CONTROL_TOKEN") or None,
                       help="require this token (Authorization: Bearer, or x-fisproxy-token) on the "
                            "control API and the FIS API through the proxy (default: "
                            "$FISPROXY_CONTROL_TOKEN; prefer it: flags show in ps)")
        p.add_argument("--control-credentials", metavar="AKID:SECRET", action="append",
                       help="accept SigV4 requests (aws fis ..., boto3) signed with this access key; "
                            "repeatable (default: $FISPROXY_CONTROL_CREDENTIALS, comma separated)")
        p.add_argument("--public-metrics", action="store_true",
                       help="serve /metrics without control API credentials")
        p.add_argument("--allowed-host", metavar="NAME", action="append",
                       help="a host name the control API answers to, besides IP addresses, "
                            "localhost and the listen host (a compose service name; *.domain "
                            "patterns); others are refused (DNS rebinding); repeatable (default: "
                            "$FISPROXY_ALLOWED_HOSTS, comma separated)")
        p.add_argument("--allowed-origin", metavar="ORIGIN", action="append",
                       help="a web page origin (https://host[:port]) allowed to change things "
                            "through the control API (CSRF); repeatable (default: "
                            "$FISPROXY_ALLOWED_ORIGINS)")
        p.add_argument("--allowed-role", metavar="PATTERN", action="append",
                       help="a role ARN (pattern with * and ?) templates may name, like FIS's "
                            "iam:PassRole; resource actions against real AWS need one unless the "
                            "control API is authenticated; repeatable (default: $FISPROXY_ALLOWED_ROLES)")
        p.add_argument("--set", dest="setoptions", action="append", default=[],
                       metavar="OPTION=VALUE", help="any mitmproxy or fisproxy_* option")

    run = sub.add_parser("run", help="start the proxy (mitmdump with the fisproxy addon)")
    proxy_args(run)
    web = sub.add_parser("web", help="start mitmweb with the fisproxy addon")
    proxy_args(web)
    web.add_argument("--web-port", type=int, default=8081, help="mitmweb UI port (default 8081)")

    env = sub.add_parser(
        "env", help="print exports that point SDKs at the running fisproxy",
        description="Print export lines (HTTPS_PROXY, the CA bundle variables, AWS_ENDPOINT_URL_FIS) "
                    "for `eval \"$(fisproxy env)\"`. Without --port and --certs they point at the "
                    "newest running fisproxy on this host (its runtime file), else at the defaults.")
    env.add_argument("--host", help="host the proxy is reached at (default: the running proxy's "
                                    "listen host, or 127.0.0.1)")
    env.add_argument("--port", type=int, help="proxy port (default: the running proxy's, or 8080)")
    env.add_argument("--control-port", type=int,
                     help="control API port (default: the running proxy's, or 8082)")
    env.add_argument("--certs", type=Path, metavar="DIR",
                     help="CA folder (default: the running proxy's, or ~/.config/fisproxy/certs)")

    ca = sub.add_parser(
        "ca", help="print the CA certificate path (created if missing)",
        description="Print the CA certificate's path (created if missing) and how to trust it. "
                    "Without --certs, the CA of the newest running fisproxy on this host.")
    ca.add_argument("--certs", type=Path, metavar="DIR",
                    help="CA folder (default: the running proxy's, or ~/.config/fisproxy/certs)")
    reportcli.register(sub)
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Like `parse_args`, but a misspelt flag is reported by its command's parser (usage of
    `fisproxy run`, not of `fisproxy`), with the closest known flag."""
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        command = command_parser(parser, args.command)
        known = [o for action in command._actions for o in action.option_strings]
        message = f"unrecognized arguments: {' '.join(extras)}"
        close = difflib.get_close_matches(extras[0].split("=", 1)[0], known, n=1)
        if close:
            message += f" (did you mean {close[0]}?)"
        command.error(message)
    return args


def command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if reportcli.dispatch(args):
        return
    if args.command in ("run", "web"):
        run_proxy(args)
    elif args.command == "env":
        print_env(args)
    elif args.command == "ca":
        print_ca(args)


def check_port(host: str, port: int, what: str) -> None:
    if not 0 < port < 65536:
        fail(f"{what} {port} is not a valid port")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            reason = "is already in use" if e.errno == errno.EADDRINUSE else f"cannot be bound ({e.strerror})"
            fail(f"{what} {host}:{port} {reason}")


def mitmproxy_args(args: argparse.Namespace) -> list[str]:
    """Check the flags and translate them into mitmproxy arguments."""
    host = args.listen_host
    if not 1 <= args.workers <= 64:
        fail(f"--workers {args.workers}: expected 1 to 64")
    if args.workers > 1 and args.command == "web":
        fail("--workers: mitmweb runs as one process (use `fisproxy run --workers N`)")
    check_port(host, args.port, "proxy port")
    if args.control_port:
        check_port(host, args.control_port, "control port")
    if args.command == "web":
        check_port("127.0.0.1", args.web_port, "web port")
    if args.aws_endpoint:
        try:
            _, endpoint_host, endpoint_port = parse_endpoint(args.aws_endpoint)
        except ValueError as e:
            fail(f"--aws-endpoint: {str(e).split(': ', 1)[1]}")
        problem = unreachable(endpoint_host, endpoint_port)
        if problem:
            # Not fatal: moto or LocalStack often start after the proxy (docker compose).
            print(f"fisproxy: warning: --aws-endpoint {args.aws_endpoint} does not answer "
                  f"({problem}); starting anyway, AWS calls get a 502 until it does", file=sys.stderr)
    if args.endpoint_port is not None:
        if not args.aws_endpoint:
            # An SDK pointed at the proxy signs for the proxy's host: only an upstream that does
            # not check signatures (moto, LocalStack) can take such requests.
            fail("--endpoint-port needs --aws-endpoint (moto or LocalStack; real AWS would "
                 "reject requests signed for the proxy's address)")
        check_port(host, args.endpoint_port, "endpoint port")
    try:
        ControlAuth.from_options(args.control_token, control_credentials(args))
    except ValueError as e:  # names the option, never the secret
        fail(str(e).replace("fisproxy_control_", "--control-", 1))
    allowed = {option: listed(args, flag, variable) for flag, option, variable in ALLOWED}
    try:
        BrowserGuard.from_options(allowed["fisproxy_allowed_hosts"], allowed["fisproxy_allowed_origins"])
        RolePolicy.from_options(allowed["fisproxy_allowed_roles"], remote_upstream=True, authenticated=False)
    except ValueError as e:
        option, _, message = str(e).partition(": ")
        fail(f"--{option.removeprefix('fisproxy_').replace('_', '-').removesuffix('s')}: {message}")
    for path in args.templates:
        if not path.is_file() or not os.access(path, os.R_OK):
            fail(f"--templates: cannot read {path}")
        try:
            load_templates(path)  # validated now, so a bad file fails here with one line
        except ValueError as e:
            fail(f"--templates: {e}")
    if args.store:
        check_store(args.store)
    else:
        problem = state_problem(args.state)
        if problem:
            fail(f"--state {args.state}: {problem}")
    try:
        ensure_ca(args.certs)
    except OSError as e:
        fail(f"cannot create {e.filename}: {e.strerror}")
    options = [
        f"confdir={args.certs}",
        "connection_strategy=lazy",
        f"fisproxy_control_port={args.control_port}",
        f"fisproxy_state={args.state}",
        "flow_detail=0",
    ]
    options += [f"fisproxy_templates={p}" for p in args.templates]
    if args.aws_endpoint:
        options.append(f"fisproxy_aws_endpoint={args.aws_endpoint}")
    if args.store:
        options.append(f"fisproxy_store={args.store}")
    if args.endpoint_port is not None:
        bind = f"[{host}]" if ":" in host else host
        options += ["mode=regular", f"mode=reverse:{args.aws_endpoint}@{bind}:{args.endpoint_port}"]
    if args.seed is not None:
        options.append(f"fisproxy_seed={args.seed}")
    if args.placement:
        try:
            parse_placement(args.placement)
        except ValueError as e:
            fail(f"--placement: {str(e).split(': ', 1)[1]}")
        options.append(f"fisproxy_placement={args.placement}")
    if args.quiet:
        options.append("fisproxy_quiet=true")
    if args.control_token:
        options.append(f"fisproxy_control_token={args.control_token}")
    options += [f"fisproxy_control_credentials={c}" for c in control_credentials(args)]
    if args.public_metrics:
        options.append("fisproxy_metrics_public=true")
    options += [f"{option}={value}" for option, values in allowed.items() for value in values]
    if args.command == "web":
        options += [f"web_port={args.web_port}", "web_open_browser=false"]
    # A --set of the user's wins over the value a flag (or its default) gave: mitmproxy takes
    # one value per option (repeating one makes it refuse, or, for an addon's option, ignore
    # every value), except for list options, where the values add up.
    chosen = {o.partition("=")[0] for o in args.setoptions}
    options = [o for o in options if o.partition("=")[0] not in chosen or o.partition("=")[0] in LIST_OPTIONS]
    options += args.setoptions
    argv = ["--listen-host", host, "--listen-port", str(args.port)]
    for option in options:
        argv += ["--set", option]
    return argv


ENDPOINT_CHECK_SECONDS = 2.0


def unreachable(host: str, port: int) -> str | None:
    """Why a TCP connection to host:port fails (refused, unknown host, timeout), or None.
    Run once before mitmproxy starts, never on its event loop."""
    try:
        with socket.create_connection((host, port), timeout=ENDPOINT_CHECK_SECONDS):
            return None
    except socket.gaierror as e:
        return f"cannot resolve {host}: {e.strerror}"
    except TimeoutError:
        return f"no answer from {host}:{port} within {ENDPOINT_CHECK_SECONDS:g} s"
    except OSError as e:
        return f"{host}:{port}: {e.strerror or e}"


def check_store(url: str) -> None:
    """A --store that is not a usable URL, or does not answer: one line, exit 2."""
    from fisproxy.store import StoreUnavailable, open_store, redacted
    from fisproxy.store.url import redis_url

    try:
        redis_url(url)
        store = open_store(url, Path("unused"))
    except ValueError as e:
        fail(str(e))
    except StoreUnavailable as e:
        fail(f"--store {redacted(url)}: {e}")
    store.close()


def listed(args: argparse.Namespace, flag: str, variable: str) -> list[str]:
    """A repeatable flag's values, else the environment variable's (comma separated)."""
    given = getattr(args, flag)
    if given is not None:
        return [v.strip() for v in given if v.strip()]
    return [v.strip() for v in os.environ.get(variable, "").split(",") if v.strip()]


def control_credentials(args: argparse.Namespace) -> list[str]:
    """--control-credentials flags, else $FISPROXY_CONTROL_CREDENTIALS (comma separated)."""
    if args.control_credentials is not None:
        return list(args.control_credentials)
    return [c for c in os.environ.get("FISPROXY_CONTROL_CREDENTIALS", "").split(",") if c.strip()]


def run_proxy(args: argparse.Namespace) -> None:
    argv = mitmproxy_args(args)
    host = args.listen_host
    print(f"fisproxy {__version__}: proxy on http://{host}:{args.port}", file=sys.stderr)
    if args.control_port:
        print(f"  control API (FIS, Chaos, health): http://{host}:{args.control_port}", file=sys.stderr)
    print(f"  CA certificate: {args.certs / CA_CERT}", file=sys.stderr)
    if args.store:
        from fisproxy.store import redacted

        print(f"  store: {redacted(args.store)} (shared: every proxy on it is one FIS)", file=sys.stderr)
    else:
        print(f"  state: {args.state}", file=sys.stderr)
    # --port picks this proxy's runtime file (its CA, its control port) when several run.
    print(f"  point SDKs at it:  eval \"$(fisproxy env --port {args.port})\"", file=sys.stderr)
    auth = ControlAuth.from_options(args.control_token, control_credentials(args),
                                    public_metrics=args.public_metrics)
    # Exposure warnings (non-loopback without proxyauth / control auth) are logged by the
    # addon at start-up, so `mitmdump -s` users see them too; not repeated here.
    print(f"  control API authentication: {describe_auth(auth)}", file=sys.stderr)
    from fisproxy.proxy import master as masters

    if args.workers > 1:
        from fisproxy.workers import supervise

        print(f"  workers: {args.workers} processes on the same ports", file=sys.stderr)
        with recorded(args):
            code = supervise(argv, args.workers)
        sys.exit(code)
    with recorded(args):
        run = masters.run_web if args.command == "web" else masters.run_dump
        master = run(argv)
    runtime = master.addons.get("runtime")
    if runtime is not None and runtime.failed:
        sys.exit(1)  # the proxy stopped because it could not start (its log says why)


@contextmanager
def recorded(args: argparse.Namespace) -> Iterator[None]:
    """The runtime file that lets `fisproxy env` / `fisproxy ca` find this proxy, for as long
    as it runs (this process becomes mitmproxy: same pid). A failure to write it is not fatal."""
    proxy = RunningProxy(
        pid=os.getpid(), started=time.time(), version=__version__,
        listen_host=args.listen_host, port=args.port, control_port=args.control_port,
        web_port=args.web_port if args.command == "web" else None,
        certs=str(args.certs.resolve()), state=str(args.state.resolve()),
        aws_endpoint=args.aws_endpoint,
    )
    path = None
    try:
        path = runtimefile.write(proxy)
    except OSError as e:
        print(f"fisproxy: warning: cannot record this proxy in {runtimefile.runtime_dir()} "
              f"({e.strerror}); `fisproxy env` needs --port and --certs", file=sys.stderr)
    try:
        yield
    finally:
        if path is not None:
            runtimefile.remove(path)


def describe_auth(auth: ControlAuth) -> str:
    """For the banner: what is accepted, never the secrets."""
    ways = (["token"] if auth.token else []) + [f"SigV4 as {k}" for k in sorted(auth.credentials)]
    return ", ".join(ways) if ways else "off"


def running_proxy(args: argparse.Namespace) -> RunningProxy | None:
    """The running proxy `env`/`ca` describe: the newest one when neither --port nor --certs
    is given, else the newest one on that port / with that CA folder (None: use defaults)."""
    return runtimefile.find(port=getattr(args, "port", None), certs=args.certs)


def print_env(args: argparse.Namespace) -> None:
    proxy = running_proxy(args)
    host = args.host or (proxy.client_host if proxy else "127.0.0.1")
    port = args.port or (proxy.port if proxy else 8080)
    control_port = args.control_port if args.control_port is not None else (
        proxy.control_port if proxy else 8082)
    certs = args.certs or (Path(proxy.certs) if proxy else default_certs_dir())
    ca = ensure_ca(certs)
    bundle = write_bundle(certs)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address in a URL
    proxy_url = f"http://{host}:{port}"
    lines = {
        "HTTPS_PROXY": proxy_url,
        "HTTP_PROXY": proxy_url,
        "NO_PROXY": "localhost,127.0.0.1,::1",
        "AWS_CA_BUNDLE": str(bundle.resolve()),
        "REQUESTS_CA_BUNDLE": str(bundle.resolve()),
        "SSL_CERT_FILE": str(bundle.resolve()),
        "CURL_CA_BUNDLE": str(bundle.resolve()),
        "NODE_EXTRA_CA_CERTS": str(ca.resolve()),
    }
    if control_port:  # 0: no control listener; the FIS API stays reachable through the proxy
        lines["AWS_ENDPOINT_URL_FIS"] = f"http://{host}:{control_port}"
    if proxy:
        print(f"# the running fisproxy: pid {proxy.pid}, proxy port {proxy.port}, CA in {proxy.certs}")
    else:
        which = " with that --port / --certs" if args.port or args.certs else ""
        print(f"# no running fisproxy found{which}: the values given, else the defaults")
    for name, value in lines.items():
        print(f"export {name}={shlex.quote(value)}")


def print_ca(args: argparse.Namespace) -> None:
    proxy = running_proxy(args)
    ca = ensure_ca(args.certs or (Path(proxy.certs) if proxy else default_certs_dir()))
    port = proxy.port if proxy else 8080
    print(ca.resolve())
    print(f"""
Trust it:
  boto3 / AWS CLI:   export AWS_CA_BUNDLE={ca.resolve()}   (or eval "$(fisproxy env)")
  Node (SDK v3):     export NODE_EXTRA_CA_CERTS={ca.resolve()}
  Java:              keytool -importcert -noprompt -alias fisproxy -file {ca.resolve()} \\
                       -keystore truststore.p12 -storetype PKCS12 -storepass changeit
                     java -Djavax.net.ssl.trustStore=truststore.p12 -Djavax.net.ssl.trustStorePassword=changeit \\
                       -Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort={port} ...
  Debian/Ubuntu:     sudo cp {ca.resolve()} /usr/local/share/ca-certificates/fisproxy.crt && sudo update-ca-certificates
  macOS:             sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {ca.resolve()}""",
          file=sys.stderr)


if __name__ == "__main__":
    main()
