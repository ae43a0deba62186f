"""`fisproxy report`, `experiments` and `proxies`: read results from a running proxy or a state file.

Where from: `--control-url` (a running proxy's control API), `--state` (its SQLite file, also
readable while the proxy runs), or by default the control API at `$AWS_ENDPOINT_URL_FIS` or
http://127.0.0.1:8082 if it answers, else the default state file.

The control API is read with plain HTTP, not boto3: the local API needs no credentials, and
neither should listing experiments on a laptop or in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from fisproxy.fis.models import Experiment
from fisproxy.proxy.settings import default_state_path
from fisproxy.reports.model import Report
from fisproxy.reports.present import align_columns, experiment_row, iso
from fisproxy.reports.service import build, render
from fisproxy.reports.text import render_table
from fisproxy.store import Store

DEFAULT_CONTROL_URL = "http://127.0.0.1:8082"
TIMEOUT_SECONDS = 10.0
PROBE_TIMEOUT_SECONDS = 1.0


class CliError(Exception):
    """One line for stderr; the command exits with status 2."""


class Source(Protocol):
    def report(self, experiment_id: str, fmt: str) -> bytes:
        """The report as `service.render` makes it (json, html, pdf)."""
        ...

    def experiments(self) -> list[Experiment]: ...

    def proxies(self) -> list[dict[str, Any]]: ...


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
    _source_args(report)
    experiments = subparsers.add_parser("experiments", help="list experiments: id, template, state, start, end")
    experiments.add_argument("--format", choices=("table", "json"), default="table")
    _source_args(experiments)
    proxies = subparsers.add_parser("proxies", help="the proxies sharing this FIS: id, placement, version, last seen")
    proxies.add_argument("--format", choices=("table", "json"), default="table")
    _source_args(proxies)


def _source_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--control-url", metavar="URL",
                       help=f"a running proxy's control API (default {DEFAULT_CONTROL_URL} if it answers)")
    group.add_argument("--state", type=Path, metavar="PATH",
                       help="read this state file instead (default: the proxy's default state file)")


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
    source = _source(args)
    if args.format == "table":
        return render_table(Report.model_validate_json(source.report(args.experiment_id, "json")))
    body = source.report(args.experiment_id, args.format)
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
    rows = [experiment_row(e) for e in _source(args).experiments()]
    if args.format == "json":
        return json.dumps(rows, indent=2) + "\n"
    if not rows:
        return "no experiments\n"
    header = ["id", "template", "state", "start", "end"]
    cells = [[r["id"], r["templateId"] or "-", r["state"], r["startTime"] or "-", r["endTime"] or "-"] for r in rows]
    return "\n".join(align_columns([header, *cells])) + "\n"


def _proxies(args: argparse.Namespace) -> str:
    rows = _source(args).proxies()
    if args.format == "json":
        return json.dumps(rows, indent=2) + "\n"
    if not rows:
        return "no proxies\n"
    header = ["id", "placement", "version", "store", "last seen"]
    cells = [[r.get("id", "-"), ",".join(f"{k}={v}" for k, v in (r.get("placement") or {}).items()) or "-",
              r.get("version", "-"), r.get("store", "-"), iso(r["last_seen"]) if r.get("last_seen") else "-"]
             for r in rows]
    return "\n".join(align_columns([header, *cells])) + "\n"


def _source(args: argparse.Namespace) -> Source:
    if args.state is not None:
        return StateFile(args.state)
    if args.control_url is not None:
        return ControlApi(args.control_url)
    default_url = os.environ.get("AWS_ENDPOINT_URL_FIS") or DEFAULT_CONTROL_URL
    control = ControlApi(default_url)
    if control.reachable():
        return control
    return StateFile(Path(os.environ.get("FISPROXY_STATE") or default_state_path()))


# ---- sources --------------------------------------------------------------------------------

class StateFile:
    """A state file, read directly (the proxy may be running: SQLite WAL allows it)."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise CliError(f"no state file at {path} (start the proxy, or pass --state or --control-url)")
        self.path = path

    def report(self, experiment_id: str, fmt: str) -> bytes:
        store = Store(self.path)
        try:
            return render(build(store, experiment_id, with_dashboards=False), fmt)
        except KeyError:
            raise CliError(f"no experiment {experiment_id} in {self.path}") from None
        finally:
            store.close()

    def experiments(self) -> list[Experiment]:
        store = Store(self.path)
        try:
            return store.list_experiments()
        finally:
            store.close()

    def proxies(self) -> list[dict[str, Any]]:
        store = Store(self.path)
        try:
            return store.list_proxies()
        finally:
            store.close()


class ControlApi:
    """A running proxy's control API, over plain HTTP (never through HTTP_PROXY)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def reachable(self) -> bool:
        try:
            health = self._get("/_fisproxy/health", timeout=PROBE_TIMEOUT_SECONDS)
        except CliError:
            return False
        return isinstance(health, dict) and health.get("status") == "ok"

    def report(self, experiment_id: str, fmt: str) -> bytes:
        path = f"/_fisproxy/experiments/{quote(experiment_id, safe='')}/report?format={fmt}"
        return self._fetch(path, TIMEOUT_SECONDS * 6)

    def experiments(self) -> list[Experiment]:
        ids: list[str] = []
        token: str | None = None
        while True:
            query = f"?{urlencode({'nextToken': token})}" if token else ""
            page = self._get(f"/experiments{query}")
            ids += [summary["id"] for summary in page.get("experiments", [])]
            token = page.get("nextToken")
            if not token:
                break
        # ListExperiments has no start/end times: GetExperiment has.
        return [Experiment.model_validate(self._get(f"/experiments/{quote(i, safe='')}")["experiment"]) for i in ids]

    def proxies(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._get("/_fisproxy/proxies")["proxies"]
        return rows

    def _get(self, path: str, timeout: float = TIMEOUT_SECONDS) -> Any:
        try:
            return json.loads(self._fetch(path, timeout))
        except ValueError:
            raise CliError(f"{self.url}{path} did not answer JSON: is it a fisproxy control API?") from None

    def _fetch(self, path: str, timeout: float) -> bytes:
        try:
            with self._opener.open(self.url + path, timeout=timeout) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as e:
            raise CliError(_http_error(e)) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise CliError(f"cannot reach the control API at {self.url}: {reason}") from None


def _http_error(e: urllib.error.HTTPError) -> str:
    try:
        message = json.loads(e.read()).get("message")
    except (ValueError, AttributeError):
        message = None
    return message or f"HTTP {e.code} from {e.url}"
