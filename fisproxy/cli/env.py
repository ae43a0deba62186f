"""`fisproxy env` (export lines that point SDKs at a proxy) and `fisproxy ca` (its CA's path).

Which proxy: the one the flags name, else the one started in this folder, else the only one
running (runtimefile.choose). Both say on stderr which one they chose and why, so the line
stays visible under `eval "$(fisproxy env)"`; several proxies and none of this folder is an
error that lists them, never a stranger picked silently.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from fisproxy.cli import runtimefile
from fisproxy.cli.flags import CliError, add_flag
from fisproxy.proxy.certs import ensure_ca, write_bundle
from fisproxy.proxy.settings import BY_NAME, default_certs_dir

CHOSEN = "default: the proxy started in this folder, else the only one running"


def register(sub: Any) -> None:
    env = sub.add_parser(
        "env", help="print exports that point SDKs at a running fisproxy",
        description="Print export lines (HTTPS_PROXY, the CA bundle variables, AWS_ENDPOINT_URL_FIS) "
                    "for `eval \"$(fisproxy env --port 8080)\"`. With --port, the proxy on that "
                    "port; without, the proxy started in this folder (`make run`, or --certs / "
                    "--state inside it), else the only one running. Which one, and why, is "
                    "said on stderr.")
    env.add_argument("--host", help="host the proxy is reached at (default: the chosen proxy's "
                                    "listen host, or 127.0.0.1)")
    add_flag(env, BY_NAME["port"], help=f"the proxy on this port ({CHOSEN}; none: 8080)")
    add_flag(env, BY_NAME["control_port"],
             help="control API port (default: the chosen proxy's, or 8082)")
    add_flag(env, BY_NAME["certs"], help=f"CA folder of the proxy ({CHOSEN}; none: "
                                         f"{BY_NAME['certs'].default_shown()})")
    env.set_defaults(handler=print_env)

    ca = sub.add_parser(
        "ca", help="print the CA certificate's path (created if missing)",
        description="Print the path of the CA certificate clients must trust (created if "
                    "missing) on stdout, and how to trust it on stderr. Without --certs, the CA "
                    "of the proxy started in this folder, else of the only one running.")
    add_flag(ca, BY_NAME["certs"], help=f"CA folder ({CHOSEN}; none: "
                                        f"{BY_NAME['certs'].default_shown()})")
    ca.set_defaults(handler=print_ca)


def _choose(args: argparse.Namespace) -> runtimefile.Choice:
    try:
        return runtimefile.choose(port=getattr(args, "port", None),
                                  certs=Path(args.certs) if args.certs else None,
                                  control_port=getattr(args, "control_port", None))
    except runtimefile.Ambiguous as e:
        raise CliError(str(e)) from None


def print_env(args: argparse.Namespace) -> None:
    choice = _choose(args)
    proxy = choice.proxy or choice.last  # none running: what the folder's last proxy used
    host = args.host or (proxy.client_host if proxy else "127.0.0.1")
    port = args.port or (proxy.port if proxy else BY_NAME["port"].default_value())
    control_port = args.control_port if args.control_port is not None else (
        proxy.control_port if proxy else BY_NAME["control_port"].default_value())
    certs = args.certs or (Path(proxy.certs) if proxy else default_certs_dir())
    ca = ensure_ca(Path(certs))
    bundle = write_bundle(Path(certs))
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
    # stderr: `eval` runs stdout, and the user must see which proxy the shell now points at.
    chosen = choice.why if choice.proxy else f"{choice.why}: exports for port {port}, CA in {certs}"
    sys.stderr.write(f"fisproxy env: {chosen}\n")
    sys.stdout.write("".join(f"export {name}={shlex.quote(value)}\n" for name, value in lines.items()))


def print_ca(args: argparse.Namespace) -> None:
    choice = _choose(args)
    proxy = choice.proxy or choice.last
    ca = ensure_ca(Path(args.certs) if args.certs else Path(proxy.certs) if proxy else default_certs_dir())
    port = proxy.port if proxy else BY_NAME["port"].default_value()
    sys.stderr.write(f"fisproxy ca: {choice.why}\n")
    sys.stdout.write(f"{ca.resolve()}\n")
    sys.stderr.write(f"""
Trust it:
  boto3 / AWS CLI:   export AWS_CA_BUNDLE={ca.resolve()}   (or eval "$(fisproxy env --port {port})")
  Node (SDK v3):     export NODE_EXTRA_CA_CERTS={ca.resolve()}
  Java:              keytool -importcert -noprompt -alias fisproxy -file {ca.resolve()} \\
                       -keystore truststore.p12 -storetype PKCS12 -storepass changeit
                     java -Djavax.net.ssl.trustStore=truststore.p12 -Djavax.net.ssl.trustStorePassword=changeit \\
                       -Dhttps.proxyHost=127.0.0.1 -Dhttps.proxyPort={port} ...
  Debian/Ubuntu:     sudo cp {ca.resolve()} /usr/local/share/ca-certificates/fisproxy.crt && sudo update-ca-certificates
  macOS:             sudo security add-trusted-cert -d -r trustRoot -k /Library/Keychains/System.keychain {ca.resolve()}
""")
