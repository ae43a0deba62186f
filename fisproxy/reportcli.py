"""`fisproxy report`, `experiments` and `proxies`: read results from a running proxy, a shared
store or a state file, and render them.

Where from, and how to log in, is controlclient.py's: `--control-url`, `--store`, `--state`,
else the FIS of this shell or of this folder's proxy, said on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from fisproxy.cliflags import CliError
from fisproxy.controlclient import Source, add_source_args, source
from fisproxy.report import (
    align_columns,
    experiment_row,
    iso,
    render_html,
    render_table,
)

__all__ = ["CliError", "Source", "dispatch", "register"]


# ---- argument parsing -----------------------------------------------------------------------

def register(subparsers: Any) -> None:
    """Add `report` and `experiments` to the `fisproxy` subcommands."""
    report = subparsers.add_parser(
        "report", help="per action and operation: requests, faults, SDK calls, retries, backoff, outcome")
    report.add_argument("experiment_id", metavar="EXPERIMENT_ID")
    report.add_argument("--format", choices=("table", "json", "html"), default="table",
                        help="table (default), json for scripts, html (self-contained page)")
    add_source_args(report)
    experiments = subparsers.add_parser("experiments", help="list experiments: id, template, state, start, end")
    experiments.add_argument("--format", choices=("table", "json"), default="table")
    add_source_args(experiments)
    proxies = subparsers.add_parser("proxies", help="the proxies sharing this FIS: id, placement, version, last seen")
    proxies.add_argument("--format", choices=("table", "json"), default="table")
    add_source_args(proxies)


def dispatch(args: argparse.Namespace) -> bool:
    """Run `report` or `experiments`; False for any other command."""
    commands = {"report": _report, "experiments": _experiments, "proxies": _proxies}
    command = commands.get(args.command)
    if command is None:
        return False
    try:
        sys.stdout.write(command(args))
    except CliError as e:
        sys.stderr.write(f"fisproxy {args.command}: error: {e}\n")
        raise SystemExit(2) from None
    return True


def _report(args: argparse.Namespace) -> str:
    report = source(args).report(args.experiment_id)
    if args.format == "json":
        return json.dumps(report, indent=2) + "\n"
    if args.format == "html":
        return render_html(report)
    return render_table(report)


def _experiments(args: argparse.Namespace) -> str:
    rows = [experiment_row(e) for e in source(args).experiments()]
    if args.format == "json":
        return json.dumps(rows, indent=2) + "\n"
    if not rows:
        return "no experiments\n"
    header = ["id", "template", "state", "start", "end"]
    cells = [[r["id"], r["templateId"] or "-", r["state"], r["startTime"] or "-", r["endTime"] or "-"] for r in rows]
    return "\n".join(align_columns([header, *cells])) + "\n"


def _proxies(args: argparse.Namespace) -> str:
    rows = source(args).proxies()
    if args.format == "json":
        return json.dumps(rows, indent=2) + "\n"
    if not rows:
        return "no proxies\n"
    header = ["id", "placement", "version", "store", "last seen"]
    cells = [[r.get("id", "-"), ",".join(f"{k}={v}" for k, v in (r.get("placement") or {}).items()) or "-",
              r.get("version", "-"), r.get("store", "-"), iso(r["last_seen"]) if r.get("last_seen") else "-"]
             for r in rows]
    return "\n".join(align_columns([header, *cells])) + "\n"

