"""`fisproxy run` and `fisproxy web`: check the settings, then run mitmdump (or mitmweb) with
fisproxy's addons, in this process or as `--workers N` processes.

Before mitmproxy starts, every setting is checked with its parser (proxy/settings.py) and the
ports, the store, the state file and the CA are tried, so a bad value ends with one line and
exit code 2 rather than a traceback. The settings then become mitmproxy options (`--set`
values given to mitmproxy in this process, never on a command line), and the proxy records
itself in a runtime file (runtimefile.py) for as long as it runs.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fisproxy import __version__
from fisproxy.cli import runtimefile
from fisproxy.cli.flags import CliError, Resolved, add_setting_flags, resolve
from fisproxy.cli.runtimefile import RunningProxy
from fisproxy.cli.statefile import state_problem
from fisproxy.proxy.auth import ControlAuth
from fisproxy.proxy.certs import CA_CERT, ensure_ca
from fisproxy.proxy.settings import BY_NAME, SettingError, parse_endpoint

ENDPOINT_CHECK_SECONDS = 2.0
# mitmproxy options fisproxy sets unless the user --set them.
MITMPROXY_DEFAULTS = ("connection_strategy=lazy", "flow_detail=0")


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="start the proxy (mitmdump with the fisproxy addon)",
                         description="Start the proxy: mitmdump with the fisproxy addon.")
    add_setting_flags(run, "run")
    run.set_defaults(handler=run_proxy)
    web = sub.add_parser("web", help="start mitmweb with the fisproxy addon",
                         description="Start mitmweb (the proxy with its web UI) with the fisproxy addon.")
    add_setting_flags(web, "web")
    web.set_defaults(handler=run_proxy)


# ---- checks ------------------------------------------------------------------------------

def check_port(host: str, port: int, what: str) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            reason = "is already in use" if e.errno == errno.EADDRINUSE else f"cannot be bound ({e.strerror})"
            raise CliError(f"{what} {host}:{port} {reason}") from None


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


def check_store(url: str, given_as: str) -> None:
    """A store that does not answer: one line. Its warnings (Redis without appendonly) are the
    proxy's to log, once, when it opens the store: not repeated by this check."""
    from fisproxy.store import StoreUnavailable, open_store, redacted

    store_logger = logging.getLogger("fisproxy.store")
    level = store_logger.level
    store_logger.setLevel(logging.ERROR)
    try:
        store = open_store(url, Path("unused"))
    except StoreUnavailable as e:
        raise CliError(f"{given_as} {redacted(url)}: {e}") from None
    except ValueError as e:  # the Redis client not installed (the URL was checked before)
        raise CliError(str(e)) from None
    finally:
        store_logger.setLevel(level)
    store.close()


def check(args: argparse.Namespace, settings: Resolved) -> None:
    """What cannot wait for mitmproxy: ports, store, state file, CA; the endpoint's answer."""
    v = settings.values
    command = args.command
    if v.get("workers", 1) > 1 and command == "web":
        raise CliError("--workers: mitmweb runs as one process (use `fisproxy run --workers N`)")
    host = v["listen_host"]
    check_port(host, v["port"], "proxy port")
    if v["control_port"]:
        check_port(host, v["control_port"], "control port")
    if command == "web":
        check_port("127.0.0.1", v["web_port"], "web port")
    if v["endpoint_port"] is not None:
        if not v["aws_endpoint"]:
            # An SDK pointed at the proxy signs for the proxy's host: only an upstream that does
            # not check signatures (moto, LocalStack) can take such requests.
            raise CliError("--endpoint-port needs --aws-endpoint (moto or LocalStack; real AWS "
                           "would reject requests signed for the proxy's address)")
        check_port(host, v["endpoint_port"], "endpoint port")
    if v["store"]:
        check_store(v["store"], settings.given_as.get("store", "--store"))
    else:
        problem = state_problem(v["state"])
        if problem:
            raise CliError(f"{settings.given_as.get('state', '--state')} {v['state']}: {problem}")
    try:
        ensure_ca(v["certs"])
    except OSError as e:
        raise CliError(f"cannot create {e.filename}: {e.strerror}") from None
    if v["aws_endpoint"]:
        _, endpoint_host, endpoint_port = parse_endpoint(v["aws_endpoint"])
        problem = unreachable(endpoint_host, endpoint_port)
        if problem:
            # Not fatal: moto or LocalStack often start after the proxy (docker compose).
            sys.stderr.write(f"fisproxy: warning: --aws-endpoint {v['aws_endpoint']} does not "
                             f"answer ({problem}); starting anyway, AWS calls get a 502 until it "
                             "does\n")


def mitmproxy_args(args: argparse.Namespace, settings: Resolved) -> list[str]:
    """The mitmproxy arguments for these settings: `--set` values (secrets among them: these
    are handed over in memory or through a pipe, never as a command line). fisproxy's addons
    are built into its masters (proxy/master.py)."""
    options: list[str] = []
    for name, raw in settings.raw.items():
        setting, value = BY_NAME[name], settings.values[name]
        if setting.option is None:
            continue
        if isinstance(value, Path):  # files and folders: absolute, as health and logs show them
            raw = str(value.resolve())
        elif name == "templates":
            raw = [str(p.resolve()) for p in value]
        options += setting.as_set_values(raw)
    chosen = {o.partition("=")[0] for o in settings.other_options}
    options += [o for o in MITMPROXY_DEFAULTS if o.partition("=")[0] not in chosen]
    if args.command == "web" and "web_open_browser" not in chosen:
        options.append("web_open_browser=false")
    endpoint_port = settings.values["endpoint_port"]
    if endpoint_port is not None:
        host = settings.values["listen_host"]
        bind = f"[{host}]" if ":" in host else host
        options += ["mode=regular",
                    f"mode=reverse:{settings.values['aws_endpoint']}@{bind}:{endpoint_port}"]
    options += settings.other_options
    argv = []
    for option in options:
        argv += ["--set", option]
    return argv


# ---- running ------------------------------------------------------------------------------

def run_proxy(args: argparse.Namespace) -> None:
    try:
        settings = resolve(args, args.command)
    except SettingError as e:
        raise CliError(str(e)) from None
    check(args, settings)
    argv = mitmproxy_args(args, settings)
    banner(args, settings)
    if settings.values.get("workers", 1) > 1:
        from fisproxy.cli.workers import supervise

        with recorded(args, settings):
            code = supervise(argv, settings.values["workers"])
        sys.exit(code)
    from fisproxy.proxy import master as masters

    with recorded(args, settings):
        run = masters.run_web if args.command == "web" else masters.run_dump
        master = run(argv)
    runtime = master.addons.get("runtime")
    if runtime is not None and runtime.failed:
        sys.exit(1)  # the proxy stopped because it could not start (its log says why)


def banner(args: argparse.Namespace, settings: Resolved) -> None:
    v = settings.values
    host, say = v["listen_host"], sys.stderr.write
    say(f"fisproxy {__version__}: proxy on http://{host}:{v['port']}\n")
    if v["control_port"]:
        say(f"  control API (FIS, Chaos, health): http://{host}:{v['control_port']}\n")
    say(f"  CA certificate: {v['certs'].resolve() / CA_CERT}\n")
    if v["store"]:
        say(f"  store: {BY_NAME['store'].shown_value(v['store'])} (shared: every proxy on it is one FIS)\n")
    else:
        say(f"  state: {v['state'].resolve()}\n")
    # --port picks this proxy's runtime file (its CA, its control port) when several run.
    say(f"  point SDKs at it:  eval \"$(fisproxy env --port {v['port']})\"\n")
    auth = ControlAuth(v["control_token"], v["control_credentials"], v["metrics_public"])
    # Exposure warnings (non-loopback without proxyauth / control auth) are logged by the
    # addon at start-up, so `mitmdump -s` users see them too; not repeated here.
    say(f"  control API authentication: {describe_auth(auth)}\n")
    if v.get("workers", 1) > 1:
        say(f"  workers: {v['workers']} processes on the same ports\n")


def describe_auth(auth: ControlAuth) -> str:
    """For the banner: what is accepted, never the secrets."""
    ways = (["token"] if auth.token else []) + [f"SigV4 as {k}" for k in sorted(auth.credentials)]
    return ", ".join(ways) if ways else "off"


@contextmanager
def recorded(args: argparse.Namespace, settings: Resolved) -> Iterator[None]:
    """The runtime file that lets the other commands find this proxy, for as long as it runs
    (this process becomes mitmproxy, or supervises the workers: same pid). A failure to write
    it is not fatal."""
    v = settings.values
    certs, state = v["certs"].resolve(), v["state"].resolve()
    proxy = RunningProxy(
        pid=os.getpid(), started=time.time(), version=__version__,
        listen_host=v["listen_host"], port=v["port"], control_port=v["control_port"],
        web_port=v["web_port"] if args.command == "web" else None,
        certs=str(certs), state=str(state),
        store=BY_NAME["store"].shown_value(v["store"]), aws_endpoint=v["aws_endpoint"],
        folder=runtimefile.folder_of(Path.cwd(), certs, state),
    )
    path = None
    try:
        path = runtimefile.write(proxy)
    except OSError as e:
        sys.stderr.write(f"fisproxy: warning: cannot record this proxy in "
                         f"{runtimefile.runtime_dir()} ({e.strerror}); `fisproxy env` needs "
                         "--port and --certs\n")
    try:
        yield
    finally:
        if path is not None:
            runtimefile.ended(path, time.time())


__all__ = ["check_port", "register", "run_proxy", "unreachable"]
