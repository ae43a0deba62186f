"""The `fisproxy` command: its subcommands, each in its own module, and the error conventions
they share.

- `run`, `web` (run.py): the proxy; its flags come from the settings' declaration
  (proxy/settings.py), the one configuration the mitmproxy options come from too.
- `env`, `ca` (env.py): export lines and the CA of the proxy this folder uses.
- `report`, `experiments`, `proxies` (report.py, reading through controlclient.py).
- `scenarios` (scenarios.py): AWS's scenario library (`fisproxy/scenarios/`) as templates.

A command module offers `register(subparsers)`, which adds its parsers and sets their
`handler`; a new command is one more module in `COMMANDS`. A flag argparse does not know
prints the command's usage and `error:` (exit 2); a `CliError` (unreadable files, ports in use,
bad values) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Sequence
from typing import Any

from fisproxy import __version__
from fisproxy.cli import env, report, run, scenarios
from fisproxy.cli.flags import CliError

COMMANDS: tuple[Any, ...] = (run, env, report, scenarios)

DESCRIPTION = """\
fisproxy: AWS Fault Injection Service as a proxy. Start it, point SDKs at it, create FIS
experiment templates and experiments with `aws fis ...`, and matching AWS calls get latency,
throttling, errors or dropped connections in the service's own wire format."""

EPILOG = """\
first steps (moto as the upstream, a stand-in for AWS):
  moto_server -p 5000 &                                  # the upstream (pip install "moto[server]")
  fisproxy run --aws-endpoint http://127.0.0.1:5000      # the proxy, in one shell
  eval "$(fisproxy env --port 8080)"                     # in another: proxy, CA, FIS endpoint
  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
  aws fis list-experiments                               # moto takes any keys; AWS needs real ones

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
    for command in COMMANDS:
        command.register(sub)
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
    try:
        if not report.dispatch(args):
            args.handler(args)
        sys.stdout.flush()
    except CliError as e:
        print(f"fisproxy {args.command}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:
        # `fisproxy env | head -1`: the reader has gone, which is no error of ours. Python's
        # advice (docs: signal, "Note on SIGPIPE"): point stdout at devnull so the flush at
        # exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    main()
