"""Command-line flags from the settings' declaration (proxy/settings.py), and the values they
resolve to: a flag, else `--set`, else the environment variable, else the default.

Each value is checked by its setting's parser, and an error names it as the user gave it
(`--aws-endpoint`, `--set fisproxy_aws_endpoint`, `$FISPROXY_AWS_ENDPOINT`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fisproxy.proxy.settings import BY_OPTION, SETTINGS, Setting, SettingError


class CliError(Exception):
    """One line for stderr (`fisproxy <command>: error: ...`); the command exits with 2."""


def add_flag(parser: argparse.ArgumentParser | Any, setting: Setting, *, help: str | None = None,
             dest: str | None = None) -> None:
    """The setting's flag on `parser` (default None: `resolve` finds the value)."""
    assert setting.flag is not None
    kwargs: dict[str, Any] = {"dest": dest or setting.name, "default": None,
                              "help": (help or setting.flag_help()).replace("%", "%%")}
    if setting.typespec is bool:
        kwargs["action"] = "store_true"
    else:
        kwargs["metavar"] = setting.metavar
        if setting.typespec == Sequence[str]:
            kwargs["action"] = "append"
        elif setting.typespec in (int, int | None):
            kwargs["type"] = int
    parser.add_argument(setting.flag, **kwargs)


def add_setting_flags(parser: argparse.ArgumentParser, command: str) -> None:
    for setting in SETTINGS:
        if setting.flag and command in setting.commands:
            add_flag(parser, setting)
    parser.add_argument("--set", dest="setoptions", action="append", default=[],
                        metavar="OPTION=VALUE",
                        help="any mitmproxy or fisproxy_* option (fisproxy's: see --help's list, "
                             "or the README); wins over the flag of the same setting")


@dataclass
class Resolved:
    """The settings of one `fisproxy run` / `web`: parsed values by setting name, the values as
    typed (what mitmproxy's options get), and the `--set` options that are not fisproxy's."""

    values: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    given_as: dict[str, str] = field(default_factory=dict)  # how the user gave it; absent: default
    other_options: list[str] = field(default_factory=list)  # `option=value` for mitmproxy


def resolve(args: argparse.Namespace, command: str) -> Resolved:
    """Every setting `command` takes, from its flag, `--set`, environment variable or default;
    SettingError (a ValueError) naming the first bad one as the user gave it."""
    resolved = Resolved()
    set_values: dict[str, list[str]] = {}
    for item in args.setoptions:
        option, sep, text = item.partition("=")
        setting = BY_OPTION.get(option)
        if setting is None or not sep:
            resolved.other_options.append(item)  # mitmproxy checks its own
        else:
            set_values.setdefault(setting.name, []).append(text)
    for setting in SETTINGS:
        if not (setting.flag and command in setting.commands) and setting.name not in set_values:
            continue  # an option only (account_id...): its option default applies
        raw, given_as = _value(setting, args, set_values.get(setting.name))
        if given_as is not None:
            resolved.given_as[setting.name] = given_as
        resolved.raw[setting.name] = raw
        resolved.values[setting.name] = setting.check(raw, given_as or setting.flag)
    return resolved


def _value(setting: Setting, args: argparse.Namespace, set_texts: list[str] | None) -> tuple[Any, str | None]:
    """The value as typed, and how it was given (None: the default)."""
    flag_value = getattr(args, setting.name, None) if setting.flag else None
    is_list = setting.typespec == Sequence[str]
    if set_texts is not None:
        given_as = f"--set {setting.option}"
        texts = [setting.from_text(t, given_as) for t in set_texts]
        if is_list:  # list options add up, as in mitmproxy
            return [*(flag_value or []), *(v for t in texts for v in t)], given_as
        return texts[-1], given_as
    if flag_value is not None:
        return flag_value, setting.flag
    if setting.env and os.environ.get(setting.env):
        given_as = f"${setting.env}"
        return setting.from_text(os.environ[setting.env], given_as), given_as
    return setting.default_value(), None


__all__ = ["CliError", "Resolved", "SettingError", "add_flag", "add_setting_flags", "resolve"]
