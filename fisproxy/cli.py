"""The `fisproxy` command: run the proxy (mitmdump or mitmweb with the addon), print the
environment that points SDKs at it, and manage its CA.

Flags become mitmproxy options (`fisproxy_*` and core ones), so there is one configuration
system. Bad arguments, unreadable files and ports in use end with one line and exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import os
import shlex
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from fisproxy import __version__, reportcli
from fisproxy.certs import CA_CERT, ensure_ca, write_bundle
from fisproxy.fis.templates_file import load_templates
from fisproxy.proxy.auth import ControlAuth
from fisproxy.proxy.settings import default_state_path, parse_endpoint
from fisproxy.statefile import state_problem

SCRIPT = Path(__file__).parent / "proxy" / "script.py"


def default_certs_dir() -> Path:
    if os.environ.get("FISPROXY_CERTS"):
        return Path(os.environ["FISPROXY_CERTS"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "fisproxy" / "certs"


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        fail(f"{self.prog}: {message}")


def fail(message: str) -> NoReturn:
    print(f"fisproxy: error: {message}" if not message.startswith("fisproxy") else message,
          file=sys.stderr)
    sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="fisproxy", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"fisproxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

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
        p.add_argument("--state", type=Path, default=Path(os.environ.get("FISPROXY_STATE") or default_state_path()),
                       help="SQLite file for templates, experiments and logs")
        p.add_argument("--certs", type=Path, default=default_certs_dir(),
                       help="mitmproxy confdir holding the CA (default ~/.config/fisproxy/certs)")
        p.add_argument("--templates", type=Path, action="append", default=[], metavar="FILE",
                       help="YAML/JSON experiment templates to create or update at start-up")
        p.add_argument("--seed", type=int, help="seed for reproducible sampling and selection")
        p.add_argument("--quiet", action="store_true", help="no log line per injected fault")
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
        p.add_argument("--set", dest="setoptions", action="append", default=[],
                       metavar="OPTION=VALUE", help="any mitmproxy or fisproxy_* option")

    run = sub.add_parser("run", help="start the proxy (mitmdump with the fisproxy addon)")
    proxy_args(run)
    web = sub.add_parser("web", help="start mitmweb with the fisproxy addon")
    proxy_args(web)
    web.add_argument("--web-port", type=int, default=8081, help="mitmweb UI port (default 8081)")

    env = sub.add_parser("env", help="print export lines that point SDKs and the AWS CLI at fisproxy")
    env.add_argument("--host", default="127.0.0.1", help="host the proxy is reached at")
    env.add_argument("--port", type=int, default=8080)
    env.add_argument("--control-port", type=int, default=8082)
    env.add_argument("--certs", type=Path, default=default_certs_dir())

    ca = sub.add_parser("ca", help="create the CA if missing and print its certificate path")
    ca.add_argument("--certs", type=Path, default=default_certs_dir())
    reportcli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
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
    check_port(host, args.port, "proxy port")
    if args.control_port:
        check_port(host, args.control_port, "control port")
    if args.command == "web":
        check_port("127.0.0.1", args.web_port, "web port")
    if args.aws_endpoint:
        try:
            parse_endpoint(args.aws_endpoint)
        except ValueError as e:
            fail(f"--aws-endpoint: {str(e).split(': ', 1)[1]}")
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
    for path in args.templates:
        if not path.is_file() or not os.access(path, os.R_OK):
            fail(f"--templates: cannot read {path}")
        try:
            load_templates(path)  # validated now, so a bad file fails here with one line
        except ValueError as e:
            fail(f"--templates: {e}")
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
    if args.endpoint_port is not None:
        bind = f"[{host}]" if ":" in host else host
        options += ["mode=regular", f"mode=reverse:{args.aws_endpoint}@{bind}:{args.endpoint_port}"]
    if args.seed is not None:
        options.append(f"fisproxy_seed={args.seed}")
    if args.quiet:
        options.append("fisproxy_quiet=true")
    if args.control_token:
        options.append(f"fisproxy_control_token={args.control_token}")
    options += [f"fisproxy_control_credentials={c}" for c in control_credentials(args)]
    if args.public_metrics:
        options.append("fisproxy_metrics_public=true")
    if args.command == "web":
        options += [f"web_port={args.web_port}", "web_open_browser=false"]
    options += args.setoptions
    argv = ["--listen-host", host, "--listen-port", str(args.port), "-s", str(SCRIPT)]
    for option in options:
        argv += ["--set", option]
    return argv


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
    print(f"  state: {args.state}", file=sys.stderr)
    env_hint = "fisproxy env" + (f" --certs {shlex.quote(str(args.certs))}" if args.certs else "")
    print(f"  point SDKs at it:  eval \"$({env_hint})\"", file=sys.stderr)
    auth = ControlAuth.from_options(args.control_token, control_credentials(args),
                                    public_metrics=args.public_metrics)
    # Exposure warnings (non-loopback without proxyauth / control auth) are logged by the
    # addon at start-up, so `mitmdump -s` users see them too; not repeated here.
    print(f"  control API authentication: {describe_auth(auth)}", file=sys.stderr)
    from mitmproxy.tools import main as mitm_main

    if args.command == "web":
        mitm_main.mitmweb(argv)
    else:
        mitm_main.mitmdump(argv)


def describe_auth(auth: ControlAuth) -> str:
    """For the banner: what is accepted, never the secrets."""
    ways = (["token"] if auth.token else []) + [f"SigV4 as {k}" for k in sorted(auth.credentials)]
    return ", ".join(ways) if ways else "off"


def print_env(args: argparse.Namespace) -> None:
    ca = ensure_ca(args.certs)
    bundle = write_bundle(args.certs)
    proxy = f"http://{args.host}:{args.port}"
    lines = {
        "HTTPS_PROXY": proxy,
        "HTTP_PROXY": proxy,
        "NO_PROXY": "localhost,127.0.0.1,::1",
        "AWS_CA_BUNDLE": str(bundle.resolve()),
        "REQUESTS_CA_BUNDLE": str(bundle.resolve()),
        "SSL_CERT_FILE": str(bundle.resolve()),
        "CURL_CA_BUNDLE": str(bundle.resolve()),
        "NODE_EXTRA_CA_CERTS": str(ca.resolve()),
        "AWS_ENDPOINT_URL_FIS": f"http://{args.host}:{args.control_port}",
    }
    for name, value in lines.items():
        print(f"export {name}={shlex.quote(value)}")


def print_ca(args: argparse.Namespace) -> None:
    ca = ensure_ca(args.certs)
    print(ca.resolve())
    print(f"""
Trust it:
  boto3 / AWS CLI:   export AWS_CA_BUNDLE={ca.resolve()}   (or eval "$(fisproxy env)")
  Node (SDK v3):     export NODE_EXTRA_CA_CERTS={ca.resolve()}
  Java:              keytool -importcert -noprompt -alias fisproxy -file {ca.resolve()} \\
                       -keystore truststore.p12 -storetype PKCS12 -storepass changeit
                     java -Djavax.net.ssl.trustStore=truststore.p12 -Djavax.net.ssl.trustStorePassword=changeit \\
                       -Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort=8080 ...
  Debian/Ubuntu:     sudo cp {ca.resolve()} /usr/local/share/ca-certificates/fisproxy.crt && sudo update-ca-certificates
  macOS:             sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {ca.resolve()}""",
          file=sys.stderr)


if __name__ == "__main__":
    main()
