"""`fisproxy report`, `experiments` and `proxies`: read results from a running proxy, a shared
store or a state file, and render them.

Where from, and how to log in, is controlclient.py's: `--control-url`, `--store`, `--state`,
else the FIS of this shell or of this folder's proxy, said on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fisproxy.cli.controlclient import Source, add_source_args, source
from fisproxy.cli.flags import CliError
from fisproxy.reports.model import Report
from fisproxy.reports.present import align_columns, experiment_row, iso
from fisproxy.reports.text import render_table

__all__ = ["CliError", "Source", "dispatch", "register"]


# ---- argument parsing -----------------------------------------------------------------------

def register(subparsers: Any) -> None:
    """Add `report` and `experiments` to the `fisproxy` subcommands."""
    report = subparsers.add_parser(
        "report", help="per action and operation: requests, faults, SDK calls, retries, backoff, outcome")
    report.add_argument("experiment_id", metavar="EXPERIMENT_ID")
    report.add_argument("--format", choices=("table", "json", "html", "pdf"), default="table",
                        help="table (default), json for scripts, html (a self-contained page), pdf")
    report.add_argument("--html", dest="format", action="store_const", const="html",
                        help="the HTML page (same as --format html)")
    report.add_argument("--pdf", dest="format", action="store_const", const="pdf",
                        help="the PDF, as FIS delivers it (same as --format pdf)")
    report.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="write the report there (a PDF goes to <experiment>.pdf when stdout is a terminal)")
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
        out = command(args)
        if isinstance(out, bytes) or getattr(args, "output", None) is not None:
            _write_binary(args, out.encode() if isinstance(out, str) else out)
        else:
            sys.stdout.write(out)
    except CliError as e:
        sys.stderr.write(f"fisproxy {args.command}: error: {e}\n")
        raise SystemExit(2) from None
    return True


def _report(args: argparse.Namespace) -> str | bytes:
    chosen = source(args)
    if args.format == "table":
        return render_table(Report.model_validate_json(chosen.report(args.experiment_id, "json")))
    body = chosen.report(args.experiment_id, args.format)
    if args.format == "pdf":
        return body
    return body.decode() + ("\n" if args.format == "json" else "")


def _write_binary(args: argparse.Namespace, body: bytes) -> None:
    """To --output, or stdout unless it is a terminal (then `<experiment>.pdf`, said on stderr)."""
    path: Path | None = args.output
    if path is None and not sys.stdout.isatty():
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
        return
    path = path or Path(f"{args.experiment_id}.{args.format}")
    try:
        path.write_bytes(body)
    except OSError as e:
        raise CliError(f"cannot write {path}: {e.strerror or e}") from None
    sys.stderr.write(f"fisproxy report: wrote {path}\n")


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
