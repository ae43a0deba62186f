"""Every setting of `fisproxy run` / `fisproxy web`, declared once.

A `Setting` says which mitmproxy option it is (a `fisproxy_*` option declared here, or one of
mitmproxy's own such as `listen_host`), its command-line flag and environment variable, its
type, default and help, and the parser that checks a value. Everything else comes from the
table `SETTINGS`:

- the `fisproxy_*` options the addon declares in `load` (`declare_options`);
- the flags of `fisproxy run` and `fisproxy web`, their help, and the values `--set` and the
  environment may give (cli/flags.py, through `Setting.flag_help` and `Setting.from_text`);
- the errors: a parser says what is wrong with a value, `SettingError` puts the name in front
  as the user wrote it (`--aws-endpoint`, `$FISPROXY_AWS_ENDPOINT`, `fisproxy_aws_endpoint`);
- the frozen `Settings` the addons read, parsed once per change in `configure`;
- the README's table of settings (`markdown_table`; `python -m fisproxy.proxy.settings`
  prints it).

Secrets (`secret=True`) are never part of an error message, and the addon keeps their values
out of mitmproxy's options once read (`SecretOptions`), so mitmweb's options editor and its
`/options.json` show `(hidden)` or a URL without its password.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fisproxy.fis.passrole import RolePolicy, parse_role_patterns
from fisproxy.fis.proxyfaults import Placement
from fisproxy.proxy.auth import ControlAuth, is_loopback, parse_credentials, parse_token
from fisproxy.proxy.browser import BrowserGuard, parse_hosts, parse_origins

RUN_AND_WEB = ("run", "web")
HIDDEN = "(hidden)"


def default_state_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "fisproxy" / "fisproxy.sqlite"


def default_certs_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "fisproxy" / "certs"


class SettingError(ValueError):
    """A value a setting cannot take: `<the name as given>: <what is wrong>`, one line."""

    def __init__(self, given_as: str, problem: str) -> None:
        super().__init__(f"{given_as}: {problem}")
        self.given_as = given_as
        self.problem = problem


# ---- parsers: a value as typed (int, str, list) -> the value fisproxy uses ------------------
# Each raises ValueError saying what is wrong, without the setting's name (SettingError adds
# it, as the user wrote it) and without quoting a secret.

def parse_port(value: int) -> int:
    if not 0 < value < 65536:
        raise ValueError(f"{value} is not a port (1-65535)")
    return value


def parse_port_or_off(value: int) -> int:
    if not 0 <= value < 65536:
        raise ValueError(f"{value} is not a port (1-65535, or 0 for none)")
    return value


def _optional_port(value: int | None) -> int | None:
    return None if value is None else parse_port(value)


def parse_endpoint(url: str) -> tuple[str, str, int]:
    """`http://127.0.0.1:5000` -> ("http", "127.0.0.1", 5000)."""
    split = urlsplit(url)
    if split.scheme not in ("http", "https") or not split.hostname:
        raise ValueError(f"expected http(s)://host[:port], got {url!r}")
    if split.path not in ("", "/"):
        raise ValueError(f"no path allowed, got {url!r}")
    try:
        port = split.port or (443 if split.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"not a valid port in {url!r}") from None
    return split.scheme, split.hostname, port


def _endpoint(url: str | None) -> str | None:
    if url:
        parse_endpoint(url)
    return url or None


def parse_placement(spec: str | None) -> Placement:
    """`az=us-east-1a,subnet=subnet-0abc` -> Placement."""
    if not spec:
        return Placement()
    fields: dict[str, str] = {}
    for part in spec.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep or key not in ("az", "az-id", "subnet") or not value.strip():
            raise ValueError(f"expected az=...,az-id=...,subnet=..., got {spec!r}")
        fields[key] = value.strip()
    return Placement(az=fields.get("az"), az_id=fields.get("az-id"), subnet=fields.get("subnet"))


def _store(url: str | None) -> str | None:
    """A usable store URL, or None: the SQLite file of the state setting."""
    if not url or not url.strip():
        return None
    from fisproxy.store.url import redis_url

    return redis_url(url)


def _path(value: str) -> Path:
    if not value:
        raise ValueError("an empty path")
    return Path(value).expanduser()


def _templates(paths: Sequence[str]) -> tuple[Path, ...]:
    """Every file readable and valid now, so a bad one stops start-up with one line."""
    from fisproxy.fis.templates_file import load_templates

    files = tuple(Path(p).expanduser() for p in paths)
    for path in files:
        if not path.is_file() or not os.access(path, os.R_OK):
            raise ValueError(f"cannot read {path}")
        load_templates(path)  # ValueError naming the file, the line and the field
    return files


def _account_id(account: str) -> str:
    if not (account.isdigit() and len(account) == 12):
        raise ValueError(f"must be 12 digits, got {account!r}")
    return account


def _at_least_one(value: int) -> int:
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def _workers(value: int) -> int:
    if not 1 <= value <= 64:
        raise ValueError(f"{value}: expected 1 to 64")
    return value


def _redacted_store(url: Any) -> str:
    from fisproxy.store.url import redacted

    return redacted(str(url))


def _hidden_credentials(entries: Any) -> list[str]:
    """`AKID:SECRET` entries as `AKID:(hidden)`: the key ids are not secret."""
    return [f"{e.strip().partition(':')[0]}:{HIDDEN}" if ":" in e else HIDDEN
            for e in entries if e.strip()]


# ---- the declaration --------------------------------------------------------------------

@dataclass(frozen=True)
class Setting:
    """One setting: the mitmproxy option, the flag, the environment variable, type, default,
    help and parser. `option` None: a command-line setting only (`--workers`); `flag` None:
    an option only (`--set fisproxy_account_id=...`)."""

    name: str  # the key of its value in `Settings.from_values` (`aws_endpoint`)
    typespec: Any  # mitmproxy's typespec: int, bool, str, str | None, int | None, Sequence[str]
    default: Any  # a value, or a callable computing it (paths under the user's folders)
    help: str  # one paragraph, no type and no default (mitmproxy's advice for option help)
    option: str | None = None
    flag: str | None = None
    env: str | None = None  # gives the flag's default (`fisproxy run` / `fisproxy web`)
    metavar: str | None = None
    parse: Callable[[Any], Any] | None = None  # None: the value as typed
    secret: bool = False  # never echoed; hidden from mitmproxy's options once read
    shown: Callable[[Any], Any] | None = None  # how a secret may be shown (default: hidden)
    mitmproxy_owned: bool = False  # declared by mitmproxy itself (listen_host, confdir...)
    commands: tuple[str, ...] = RUN_AND_WEB  # the commands that take the flag
    default_text: str | None = None  # how help and the README show the default

    def default_value(self) -> Any:
        return self.default() if callable(self.default) else self.default

    def check(self, value: Any, given_as: str | None = None) -> Any:
        """The parsed value, or SettingError naming the setting as `given_as` (default: the
        option's name) with the parser's words."""
        try:
            return self.parse(value) if self.parse is not None else value
        except ValueError as e:
            raise SettingError(given_as or self.option or self.flag or self.name, str(e)) from None

    def from_text(self, text: str, given_as: str) -> Any:
        """A value as written in `--set` or an environment variable, typed as the option is
        (a list: comma-separated items)."""
        if self.typespec is bool:
            if text.lower() in ("true", "1", "yes", "on"):
                return True
            if text.lower() in ("false", "0", "no", "off", ""):
                return False
            raise SettingError(given_as, f"expected true or false, got {text!r}")
        if self.typespec in (int, int | None):
            if not text and self.typespec is not int:
                return None
            try:
                return int(text)
            except ValueError:
                raise SettingError(given_as, f"not a whole number: {text!r}") from None
        if self.typespec == Sequence[str]:
            return [item.strip() for item in text.split(",") if item.strip()]
        if self.typespec == (str | None):
            return text or None
        return text

    def as_set_values(self, value: Any) -> list[str]:
        """`option=value` strings for mitmproxy's `--set` (a list option: one per item)."""
        assert self.option is not None
        if value is None:
            return []
        if isinstance(value, list | tuple):
            return [f"{self.option}={item}" for item in value]
        if isinstance(value, bool):
            return [f"{self.option}={'true' if value else 'false'}"]
        return [f"{self.option}={value}"]

    def shown_value(self, value: Any) -> Any:
        """The value as it may appear anywhere (mitmweb, logs, files): secrets hidden."""
        if not self.secret or value in (None, "", []):
            return value
        return self.shown(value) if self.shown is not None else HIDDEN

    def default_shown(self) -> str:
        if self.default_text is not None:
            return self.default_text
        value = self.default_value()
        if value is None or value == []:
            return "unset"
        if isinstance(value, bool):
            return "on" if value else "off"
        return str(value)

    def flag_help(self) -> str:
        """The flag's help: the option's paragraph, then its default, environment variable
        and option name."""
        where = []
        if self.default_text is not None or self.default_value() not in (None, False, []):
            where.append(f"default: {self.default_shown()}")
        if self.env:
            where.append(f"${self.env}")
        if self.option and not self.mitmproxy_owned:
            where.append(f"option {self.option}")
        return f"{self.help} ({'; '.join(where)})" if where else self.help


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "listen_host", str, "127.0.0.1", option="listen_host", flag="--listen-host",
        metavar="HOST", mitmproxy_owned=True,
        help="Address the proxy and the control API listen on. 0.0.0.0 (or ::) is every "
             "interface: then protect the proxy with proxyauth and the control API with a "
             "token or credentials.",
    ),
    Setting(
        "port", int, 8080, option="listen_port", flag="--port", metavar="PORT",
        parse=parse_port, mitmproxy_owned=True,
        help="Port of the proxy (HTTP, and HTTPS through CONNECT with TLS interception).",
    ),
    Setting(
        "control_port", int, 8082, option="fisproxy_control_port", flag="--control-port",
        metavar="PORT", parse=parse_port_or_off,
        help="Port of the control API (FIS API, LocalStack Chaos API, health, metrics, "
             "reports), plain HTTP bound to the listen host (127.0.0.1 when that is empty). 0 "
             "disables it; the FIS API stays reachable through the proxy as "
             "fis.<region>.amazonaws.com.",
    ),
    Setting(
        "aws_endpoint", str | None, None, option="fisproxy_aws_endpoint", flag="--aws-endpoint",
        env="FISPROXY_AWS_ENDPOINT", metavar="URL", parse=_endpoint,
        default_text="none (real AWS)",
        help="Send all AWS traffic to this endpoint (moto, LocalStack) instead of real AWS, "
             "keeping the original Host header. Unset: traffic goes to AWS unchanged.",
    ),
    Setting(
        "endpoint_port", int | None, None, flag="--endpoint-port", metavar="PORT",
        parse=_optional_port,
        help="Also accept SDKs pointed at http://<listen host>:PORT (endpoint_url, "
             "AWS_ENDPOINT_URL) and forward them to --aws-endpoint (moto, LocalStack).",
    ),
    Setting(
        "store", str | None, None, option="fisproxy_store", flag="--store",
        env="FISPROXY_STORE", metavar="URL", parse=_store, secret=True, shown=_redacted_store,
        default_text="none (the SQLite file of --state)",
        help="Where the state lives when shared: redis://[user:password@]host:port/db (or "
             "rediss://). Every proxy on the same store is one FIS.",
    ),
    Setting(
        "state", str, lambda: str(default_state_path()), option="fisproxy_state",
        flag="--state", env="FISPROXY_STATE", metavar="PATH", parse=_path,
        default_text="~/.local/state/fisproxy/fisproxy.sqlite (under $XDG_STATE_HOME if set)",
        help="SQLite file holding templates, experiments and logs; survives restarts.",
    ),
    Setting(
        "certs", str, lambda: str(default_certs_dir()), option="confdir", flag="--certs",
        env="FISPROXY_CERTS", metavar="DIR", parse=_path, mitmproxy_owned=True,
        default_text="~/.config/fisproxy/certs (under $XDG_CONFIG_HOME if set)",
        help="mitmproxy's confdir, holding the CA (mitmproxy-ca-cert.pem; the private key file "
             "is mode 0600), created if missing.",
    ),
    Setting(
        "templates", Sequence[str], [], option="fisproxy_templates", flag="--templates",
        metavar="FILE", parse=_templates,
        help="YAML or JSON files of experiment templates, created or updated (matched by their "
             "Name tag) at start-up.",
    ),
    Setting(
        "seed", int | None, None, option="fisproxy_seed", flag="--seed", metavar="N",
        default_text="none (random)",
        help="Seed for every random choice (percentage sampling, jitter, target selection), "
             "making runs reproducible.",
    ),
    Setting(
        "placement", str | None, None, option="fisproxy_placement", flag="--placement",
        env="FISPROXY_PLACEMENT", metavar="az=...,subnet=...", parse=parse_placement,
        default_text="none (ECS or EC2 metadata when present)",
        help="Where this proxy runs, for faults targeted at an Availability Zone or subnet: "
             "az=us-east-1a,az-id=use1-az1,subnet=subnet-0abc (any of them).",
    ),
    Setting(
        "quiet", bool, False, option="fisproxy_quiet", flag="--quiet",
        help="Do not log a line per injected fault.",
    ),
    Setting(
        "workers", int, 1, flag="--workers", metavar="N", parse=_workers, commands=("run",),
        help="N proxy processes behind the same ports (SO_REUSEPORT), sharing the store, one core "
             "each; a worker that dies is replaced, and the workers end with fisproxy.",
    ),
    Setting(
        "control_token", str | None, None, option="fisproxy_control_token",
        flag="--control-token", env="FISPROXY_CONTROL_TOKEN", metavar="TOKEN",
        parse=parse_token, secret=True,
        help="Token the control APIs (the control port, and the FIS API through the proxy) "
             "require, as 'Authorization: Bearer <token>' or 'x-fisproxy-token: <token>'. With "
             "this or control credentials set, other requests get 403; GET /_fisproxy/health "
             "stays open. Prefer the environment variable: flags show in ps.",
    ),
    Setting(
        "control_credentials", Sequence[str], [], option="fisproxy_control_credentials",
        flag="--control-credentials", env="FISPROXY_CONTROL_CREDENTIALS", metavar="AKID:SECRET",
        parse=parse_credentials, secret=True, shown=_hidden_credentials,
        help="ACCESS_KEY_ID:SECRET_ACCESS_KEY pairs whose SigV4-signed requests the control APIs "
             "accept: give the AWS CLI or SDK that drives FIS the same keys. Repeatable; "
             "comma-separated in the environment variable.",
    ),
    Setting(
        "metrics_public", bool, False, option="fisproxy_metrics_public", flag="--public-metrics",
        help="Serve /metrics without credentials even when control API authentication is on.",
    ),
    Setting(
        "allowed_hosts", Sequence[str], [], option="fisproxy_allowed_hosts", flag="--allowed-host",
        env="FISPROXY_ALLOWED_HOSTS", metavar="NAME", parse=parse_hosts,
        help="Host names the control APIs answer to besides IP addresses, localhost, *.localhost, "
             "the FIS API's hostnames and the listen host: names or *.domain patterns ('*': any), "
             "such as a compose service name. Requests for other names get 403, so a web page "
             "cannot reach the API by DNS rebinding. Repeatable; comma-separated in the "
             "environment variable.",
    ),
    Setting(
        "allowed_origins", Sequence[str], [], option="fisproxy_allowed_origins",
        flag="--allowed-origin", env="FISPROXY_ALLOWED_ORIGINS", metavar="ORIGIN",
        parse=parse_origins,
        help="Origins (scheme://host[:port]) of web pages allowed to change things through the "
             "control APIs, besides fisproxy's own pages; other pages' requests get 403 (CSRF). "
             "Repeatable; comma-separated in the environment variable.",
    ),
    Setting(
        "allowed_roles", Sequence[str], [], option="fisproxy_allowed_roles", flag="--allowed-role",
        env="FISPROXY_ALLOWED_ROLES", metavar="PATTERN", parse=parse_role_patterns,
        default_text="none (any role; resource actions against real AWS need a list or an "
                     "authenticated control API)",
        help="Role ARNs (patterns with * and ?) experiment templates may name: fisproxy's "
             "iam:PassRole. Unset: any role, except that resource actions against an upstream "
             "not on this machine (real AWS) need this list or control API authentication. "
             "Repeatable; comma-separated in the environment variable.",
    ),
    Setting(
        "web_port", int, 8081, option="web_port", flag="--web-port", metavar="PORT",
        parse=parse_port, mitmproxy_owned=True, commands=("web",),
        help="Port of mitmweb's UI.",
    ),
    Setting(
        "account_id", str, "123456789012", option="fisproxy_account_id", parse=_account_id,
        help="AWS account id used in FIS ARNs.",
    ),
    Setting(
        "fault_header", bool, True, option="fisproxy_fault_header",
        help="Add an x-fisproxy-fault header (experiment/action/kind) to every faulted response.",
    ),
    Setting(
        "max_active_experiments", int, 5, option="fisproxy_max_active_experiments",
        parse=_at_least_one,
        help="How many experiments may be active at once (FIS's quota: 5 by default, "
             "adjustable).",
    ),
    Setting(
        "fail_unperformable", bool, False, option="fisproxy_fail_unperformable",
        flag="--fail-unperformable",
        help="Fail an experiment at start when one of its actions is one fisproxy cannot perform "
             "(it needs an agent on a host or in a cluster, or AWS performs it through an API it "
             "does not publish), or when the upstream does not implement what an action needs. "
             "Off: such actions end skipped, saying why, and the rest of the experiment runs.",
    ),
    Setting(
        "reuse_port", bool, False, option="fisproxy_reuse_port",
        help="Open the control port with SO_REUSEPORT (set by `fisproxy run --workers N`, whose "
             "workers share their ports).",
    ),
)

BY_NAME: Mapping[str, Setting] = {s.name: s for s in SETTINGS}
BY_OPTION: Mapping[str, Setting] = {s.option: s for s in SETTINGS if s.option}
# The options the addon reads into `Settings`: its own, and mitmproxy's listen_host.
OPTION_NAMES = frozenset(
    s.option for s in SETTINGS if s.option and (not s.mitmproxy_owned or s.name == "listen_host"))


def declare_options(loader: Any) -> None:
    """The `fisproxy_*` options, with their help (shown by `--options` and mitmweb)."""
    for s in SETTINGS:
        if s.option and not s.mitmproxy_owned:
            loader.add_option(s.option, s.typespec, s.default_value(), s.help)


# ---- the settings the addons read ------------------------------------------------------

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
    fail_unperformable: bool = False

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> Settings:
        """From parsed values, by setting name (`parse_options`)."""
        endpoint = values["aws_endpoint"]
        parts = parse_endpoint(endpoint) if endpoint else None
        auth = ControlAuth(values["control_token"], values["control_credentials"],
                           values["metrics_public"])
        try:
            listen_name = parse_hosts([values["listen_host"] or ""])  # answered to, by its name
        except ValueError as e:
            raise SettingError("listen_host", str(e)) from None
        return cls(
            control_host=values["listen_host"] or "127.0.0.1",
            control_port=values["control_port"],
            aws_endpoint=endpoint,
            aws_endpoint_parts=parts,
            state=values["state"],
            store_url=values["store"],
            templates=values["templates"],
            seed=values["seed"],
            account_id=values["account_id"],
            fault_header=values["fault_header"],
            quiet=values["quiet"],
            control_auth=auth,
            placement=values["placement"],
            max_active_experiments=values["max_active_experiments"],
            reuse_port=values["reuse_port"],
            browser=BrowserGuard((*values["allowed_hosts"], *listen_name), values["allowed_origins"]),
            roles=role_policy(values["allowed_roles"], parts, auth),
            fail_unperformable=values["fail_unperformable"],
        )


def role_policy(patterns: tuple[str, ...], endpoint: tuple[str, str, int] | None,
                auth: ControlAuth) -> RolePolicy:
    """The roles callers may pass; the upstream is "on this machine" when it is a loopback
    address (moto, LocalStack started beside the proxy)."""
    local = endpoint is not None and is_loopback(endpoint[1])
    name = "real AWS" if endpoint is None else f"the upstream {endpoint[0]}://{endpoint[1]}:{endpoint[2]}"
    return RolePolicy(patterns, remote_upstream=not local, authenticated=auth.enabled,
                      upstream_name=name)


def parse_options(options: Any, names: set[str] | frozenset[str],
                  secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The parsed values of the options `names` (those of `OPTION_NAMES`), by setting name;
    SettingError naming the option. `secrets`: the real values of secret options, by option
    name, in place of what mitmproxy's options show."""
    values = {}
    for name in sorted(names & OPTION_NAMES):
        raw = (secrets or {}).get(name, getattr(options, name))
        values[BY_OPTION[name].name] = BY_OPTION[name].check(raw)
    return values


class SecretOptions:
    """Keeps secret option values out of mitmproxy's options: once read, an option holds what
    may be shown (`(hidden)`, a URL without its password), and the real value lives here. A
    new value (mitmweb's options editor, a script) is read, then hidden again."""

    def __init__(self) -> None:
        self._real: dict[str, tuple[Any, Any]] = {}  # option -> (shown value, real value)
        self._to_hide: dict[str, Any] = {}

    def take(self, options: Any, updated: set[str]) -> dict[str, Any]:
        """The real values of the secret options, by option name; `hide` then replaces the
        new ones in `options` by what may be shown."""
        for name in updated & OPTION_NAMES:
            setting = BY_OPTION[name]
            if not setting.secret:
                continue
            current = getattr(options, name)
            known = self._real.get(name)
            if known is not None and current == known[0]:
                continue  # what we showed: the real value stays
            shown = setting.shown_value(current)
            self._real[name] = (shown, current)
            if shown != current:
                self._to_hide[name] = shown
        return {name: real for name, (_, real) in self._real.items()}

    def hide(self, options: Any) -> None:
        """Show the values taken as `(hidden)` or redacted. mitmproxy calls `configure` again
        for them; they are known by then, so the real values stay."""
        hide, self._to_hide = self._to_hide, {}
        if hide:
            options.update(**hide)


# ---- documentation -------------------------------------------------------------------------

def markdown_table() -> str:
    """The README's table of settings."""
    rows = ["| flag | option (`--set`) | environment | default | what it sets |",
            "|---|---|---|---|---|"]
    for s in SETTINGS:
        flag = f"`{s.flag}`" if s.flag else ""
        if s.flag and s.commands != RUN_AND_WEB:
            flag += f" ({', '.join(s.commands)} only)"
        cells = [flag, f"`{s.option}`" if s.option else "", f"`{s.env}`" if s.env else "",
                 s.default_shown(), s.help]
        rows.append("| " + " | ".join([*cells[:3], *(_cell(c) for c in cells[3:])]) + " |")
    return "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    """Text for a Markdown table cell: no column break, no HTML tag, no emphasis."""
    for char, escaped in (("|", "\\|"), ("<", "&lt;"), ("*", "\\*")):
        text = text.replace(char, escaped)
    return text


if __name__ == "__main__":
    import sys

    sys.stdout.write(markdown_table())
