"""`fisproxy scenarios [NAME [--param k=v]...]`: list AWS's scenarios, or write one as a template.

Without NAME: each scenario's name, title, what it does and its parameters with their defaults.
With NAME: the template as JSON on stdout, for
`aws fis create-experiment-template --cli-input-json file://template.json` (or `--templates`).
A bad name, parameter or value is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from fisproxy.cli.flags import CliError
from fisproxy.scenarios import SCENARIOS, render


def register(subparsers: Any) -> None:
    """Add `scenarios` to the `fisproxy` subcommands."""
    p = subparsers.add_parser(
        "scenarios", help="AWS's FIS scenario library, written as experiment templates",
        description="Without NAME, list AWS's scenarios and their parameters. With NAME, print the "
                    "scenario as an experiment template (JSON) for `aws fis create-experiment-template "
                    "--cli-input-json file://...`.")
    p.add_argument("name", nargs="?", metavar="NAME", help="a scenario (see the list)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="a scenario parameter (zone=us-east-1b, duration=PT10M, ...); repeatable")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> None:
    """`fisproxy scenarios`: the list, or one scenario as a template."""
    if args.name is None:
        print(listing())  # noqa: T201 - the command's output
        return
    try:
        params = dict(_pair(p) for p in args.param)
        template = render(args.name, params)
    except ValueError as e:
        raise CliError(str(e)) from None
    print(json.dumps(template, indent=2))  # noqa: T201


def listing() -> str:
    blocks = []
    for name, s in sorted(SCENARIOS.items()):
        lines = [f"{name}  ({s.title})", f"  {s.summary}", f"  {s.source}"]
        for key, param in s.params.items():
            default = param.default if param.default is not None else "(absent)"
            lines.append(f"    {key}={default}  {param.help}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f'--param takes KEY=VALUE, got "{text}"')
    return key.strip(), value.strip()
