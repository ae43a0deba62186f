"""The addon's `fisproxy_*` options, validated once into one frozen settings object."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fisproxy.proxy.auth import ControlAuth

# The control listener is a reverse-proxy listener whose target is never contacted: every
# request on it is answered by the addon (connection_strategy=lazy).
CONTROL_TARGET = "http://fisproxy.control.invalid:80"


def default_state_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "fisproxy" / "fisproxy.sqlite"


@dataclass(frozen=True)
class Settings:
    control_host: str
    control_port: int
    aws_endpoint: str | None
    aws_endpoint_parts: tuple[str, str, int] | None  # scheme, host, port
    state: Path
    templates: tuple[Path, ...]
    seed: int | None
    account_id: str
    fault_header: bool
    quiet: bool
    control_auth: ControlAuth

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
        return cls(
            control_host=options.listen_host or "127.0.0.1",
            control_port=options.fisproxy_control_port,
            aws_endpoint=endpoint,
            aws_endpoint_parts=parts,
            state=Path(options.fisproxy_state).expanduser(),
            templates=templates,
            seed=options.fisproxy_seed,
            account_id=account,
            fault_header=options.fisproxy_fault_header,
            quiet=options.fisproxy_quiet,
            control_auth=ControlAuth.from_options(
                options.fisproxy_control_token, options.fisproxy_control_credentials,
                public_metrics=options.fisproxy_metrics_public,
            ),
        )

    def control_mode_spec(self) -> str | None:
        if not self.control_port:
            return None
        host = f"[{self.control_host}]" if ":" in self.control_host else self.control_host
        return f"reverse:{CONTROL_TARGET}@{host}:{self.control_port}"


def parse_endpoint(url: str) -> tuple[str, str, int]:
    """`http://127.0.0.1:5000` -> ("http", "127.0.0.1", 5000); ValueError naming the option."""
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or not split.hostname:
        raise ValueError(f"fisproxy_aws_endpoint: expected http(s)://host[:port], got {url!r}")
    if split.path not in ("", "/"):
        raise ValueError(f"fisproxy_aws_endpoint: no path allowed, got {url!r}")
    port = split.port or (443 if split.scheme == "https" else 80)
    return split.scheme, split.hostname, port
