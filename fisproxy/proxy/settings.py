"""The addon's `fisproxy_*` options: declared once, validated once into a frozen `Settings`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fisproxy.fis.passrole import RolePolicy
from fisproxy.fis.proxyfaults import Placement
from fisproxy.proxy.auth import ControlAuth, is_loopback
from fisproxy.proxy.browser import BrowserGuard

OPTION_NAMES = frozenset({
    "fisproxy_control_port", "fisproxy_aws_endpoint", "fisproxy_state", "fisproxy_templates",
    "fisproxy_seed", "fisproxy_account_id", "fisproxy_fault_header", "fisproxy_quiet",
    "fisproxy_control_token", "fisproxy_control_credentials", "fisproxy_metrics_public",
    "fisproxy_placement", "fisproxy_max_active_experiments", "fisproxy_store", "fisproxy_reuse_port",
    "fisproxy_allowed_hosts", "fisproxy_allowed_origins", "fisproxy_allowed_roles",
    "listen_host",
})


def default_state_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "fisproxy" / "fisproxy.sqlite"


def declare_options(loader: Any) -> None:
    """Every `fisproxy_*` option, with its help (shown by `--options` and mitmweb)."""
    loader.add_option(
        "fisproxy_control_port", int, 8082,
        "Port of the control API (FIS API, LocalStack Chaos API, health, metrics, reports), "
        "plain HTTP bound to listen_host (127.0.0.1 when listen_host is empty). 0 disables it; "
        "the FIS API stays reachable through the proxy as fis.<region>.amazonaws.com.",
    )
    loader.add_option(
        "fisproxy_aws_endpoint", str | None, None,
        "Send all AWS traffic to this endpoint (moto, LocalStack) instead of real AWS, "
        "keeping the original Host header. Unset: traffic goes to AWS unchanged.",
    )
    loader.add_option(
        "fisproxy_state", str, str(default_state_path()),
        "SQLite file holding templates, experiments and logs; survives restarts.",
    )
    loader.add_option(
        "fisproxy_store", str | None, None,
        "Where the state lives when shared: redis://[user:password@]host:port/db (or rediss://). "
        "Every proxy on the same store is one FIS. Unset: the SQLite file of fisproxy_state.",
    )
    loader.add_option(
        "fisproxy_templates", Sequence[str], [],
        "YAML or JSON files of experiment templates, created or updated (matched by their "
        "Name tag) at start-up.",
    )
    loader.add_option(
        "fisproxy_seed", int | None, None,
        "Seed for every random choice (percentage sampling, jitter, target selection), "
        "making runs reproducible. Unset: random.",
    )
    loader.add_option("fisproxy_account_id", str, "123456789012", "AWS account id used in FIS ARNs.")
    loader.add_option(
        "fisproxy_fault_header", bool, True,
        "Add an x-fisproxy-fault header (experiment/action/kind) to every faulted response.",
    )
    loader.add_option("fisproxy_quiet", bool, False, "Do not log a line per injected fault.")
    loader.add_option(
        "fisproxy_control_token", str | None, None,
        "Token the control APIs (the control port, and the FIS API through the proxy) require, "
        "as 'Authorization: Bearer <token>' or 'x-fisproxy-token: <token>'. With this or "
        "fisproxy_control_credentials set, other requests get 403; GET /_fisproxy/health "
        "stays open.",
    )
    loader.add_option(
        "fisproxy_control_credentials", Sequence[str], [],
        "ACCESS_KEY_ID:SECRET_ACCESS_KEY pairs whose SigV4-signed requests the control APIs "
        "accept: give the AWS CLI or SDK that drives FIS the same credentials.",
    )
    loader.add_option(
        "fisproxy_placement", str | None, None,
        "Where this proxy runs, for faults targeted at an Availability Zone or subnet: "
        "az=us-east-1a,az-id=use1-az1,subnet=subnet-0abc (any of them).",
    )
    loader.add_option(
        "fisproxy_max_active_experiments", int, 5,
        "How many experiments may be active at once (FIS's quota: 5 by default, adjustable).",
    )
    loader.add_option(
        "fisproxy_reuse_port", bool, False,
        "Open the control port with SO_REUSEPORT (set by `fisproxy run --workers N`, whose "
        "workers share their ports).",
    )
    loader.add_option(
        "fisproxy_metrics_public", bool, False,
        "Serve /metrics without credentials even when control API authentication is on.",
    )
    loader.add_option(
        "fisproxy_allowed_hosts", Sequence[str], [],
        "Host names the control APIs answer to besides IP addresses, localhost, *.localhost, the "
        "FIS API's hostnames and listen_host: names or *.domain patterns ('*': any). Requests for "
        "other names get 403, so a web page cannot reach the API by DNS rebinding.",
    )
    loader.add_option(
        "fisproxy_allowed_origins", Sequence[str], [],
        "Origins (scheme://host[:port]) of web pages allowed to change things through the "
        "control APIs, besides fisproxy's own pages; other pages' requests get 403 (CSRF).",
    )
    loader.add_option(
        "fisproxy_allowed_roles", Sequence[str], [],
        "Role ARNs (patterns with * and ?) experiment templates may name: fisproxy's "
        "iam:PassRole. Unset: any role, except that resource actions against an upstream not "
        "on this machine (real AWS) need this list or control API authentication.",
    )


@dataclass(frozen=True)
class Settings:
    control_host: str
    control_port: int
    aws_endpoint: str | None
    aws_endpoint_parts: tuple[str, str, int] | None  # scheme, host, port
    state: Path
    store_url: str | None
    templates: tuple[Path, ...]
    seed: int | None
    account_id: str
    fault_header: bool
    quiet: bool
    control_auth: ControlAuth
    placement: Placement
    max_active_experiments: int = 5
    reuse_port: bool = False
    browser: BrowserGuard = BrowserGuard()
    roles: RolePolicy = RolePolicy()

    @classmethod
    def from_options(cls, options: Any) -> Settings:
        if not 0 <= options.fisproxy_control_port <= 65535:
            raise ValueError(f"fisproxy_control_port: not a port: {options.fisproxy_control_port}")
        endpoint = options.fisproxy_aws_endpoint or None
        parts = parse_endpoint(endpoint) if endpoint else None
        templates = tuple(Path(t).expanduser() for t in options.fisproxy_templates)
        for path in templates:
            if not path.is_file():
                raise ValueError(f"fisproxy_templates: cannot read {path}")
        account = options.fisproxy_account_id
        if not (account.isdigit() and len(account) == 12):
            raise ValueError(f"fisproxy_account_id: must be 12 digits, got {account!r}")
        auth = ControlAuth.from_options(
            options.fisproxy_control_token, options.fisproxy_control_credentials,
            public_metrics=options.fisproxy_metrics_public,
        )
        return cls(
            control_host=options.listen_host or "127.0.0.1",
            control_port=options.fisproxy_control_port,
            aws_endpoint=endpoint,
            aws_endpoint_parts=parts,
            state=Path(options.fisproxy_state).expanduser(),
            store_url=_store_url(options.fisproxy_store),
            templates=templates,
            seed=options.fisproxy_seed,
            account_id=account,
            fault_header=options.fisproxy_fault_header,
            quiet=options.fisproxy_quiet,
            control_auth=auth,
            placement=parse_placement(options.fisproxy_placement),
            max_active_experiments=max(1, options.fisproxy_max_active_experiments),
            reuse_port=options.fisproxy_reuse_port,
            browser=BrowserGuard.from_options(options.fisproxy_allowed_hosts,
                                              options.fisproxy_allowed_origins, options.listen_host),
            roles=role_policy(options.fisproxy_allowed_roles, parts, auth),
        )


def parse_endpoint(url: str) -> tuple[str, str, int]:
    """`http://127.0.0.1:5000` -> ("http", "127.0.0.1", 5000); ValueError naming the option."""
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or not split.hostname:
        raise ValueError(f"fisproxy_aws_endpoint: expected http(s)://host[:port], got {url!r}")
    if split.path not in ("", "/"):
        raise ValueError(f"fisproxy_aws_endpoint: no path allowed, got {url!r}")
    try:
        port = split.port or (443 if split.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"fisproxy_aws_endpoint: not a valid port in {url!r}") from None
    return split.scheme, split.hostname, port


def role_policy(patterns: Sequence[str], endpoint: tuple[str, str, int] | None,
                auth: ControlAuth) -> RolePolicy:
    """The roles callers may pass; the upstream is "on this machine" when it is a loopback
    address (moto, LocalStack started beside the proxy)."""
    local = endpoint is not None and is_loopback(endpoint[1])
    name = "real AWS" if endpoint is None else f"the upstream {endpoint[0]}://{endpoint[1]}:{endpoint[2]}"
    return RolePolicy.from_options(patterns, remote_upstream=not local, authenticated=auth.enabled,
                                   upstream_name=name)


def parse_placement(spec: str | None) -> Placement:
    """`az=us-east-1a,subnet=subnet-0abc` -> Placement; ValueError naming the option."""
    if not spec:
        return Placement()
    fields: dict[str, str] = {}
    for part in spec.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or key not in ("az", "az-id", "subnet") or not value.strip():
            raise ValueError(f"fisproxy_placement: expected az=...,az-id=...,subnet=..., got {spec!r}")
        fields[key] = value.strip()
    return Placement(az=fields.get("az"), az_id=fields.get("az-id"), subnet=fields.get("subnet"))


def _store_url(url: str | None) -> str | None:
    """A usable --store URL or None; ValueError naming the option (never the password)."""
    if not url or not url.strip():
        return None
    from fisproxy.store.url import redis_url

    try:
        return redis_url(url)
    except ValueError as e:
        raise ValueError(str(e).replace("--store", "fisproxy_store", 1)) from None
