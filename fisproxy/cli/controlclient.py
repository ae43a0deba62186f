"""How fisproxy's own commands (`report`, `experiments`, `proxies`) reach a FIS: which one, and
how they log in. `report.py` renders what they read.

Where from, the first that applies (`source`), said on stderr:

1. `--control-url URL` (a running proxy's control API), `--store URL` (a shared Redis store)
   or `--state PATH` (a SQLite state file, readable while the proxy runs);
2. `$AWS_ENDPOINT_URL_FIS`, if it answers: the FIS endpoint `fisproxy env` exported, the one
   `aws fis ...` in this shell uses;
3. `$FISPROXY_STORE`, `$FISPROXY_STATE`: the store `fisproxy run` here would use;
4. the proxy of this folder (runtimefile.choose): its control API while it runs, its state
   file (or store) once it stopped; else the only proxy running;
5. the default state file.

Logging in is what the AWS CLI does: the control token of `--control-token` or
`$FISPROXY_CONTROL_TOKEN` as `Authorization: Bearer`, else a SigV4 signature with the AWS keys
of the environment (or the shared credentials file), which a proxy started with
`--control-credentials` accepts. A refusal says what to set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from fisproxy.cli import runtimefile
from fisproxy.cli.flags import CliError, add_flag
from fisproxy.fis.models import Experiment
from fisproxy.proxy.settings import BY_NAME, default_state_path

TIMEOUT_SECONDS = 10.0
# A report is built when asked, in a process of its own (report.py's ReportBuilder, which allows
# it 600 s): over many records, or on a busy machine, that takes longer than an API call.
REPORT_TIMEOUT_SECONDS = 600.0
PROBE_TIMEOUT_SECONDS = 1.0
DEFAULT_REGION = "us-east-1"


class Source(Protocol):
    """Where `report`, `experiments` and `proxies` read from."""

    def report(self, experiment_id: str, fmt: str) -> bytes:
        """The report as `reports.service.render` makes it (json, html, pdf)."""
        ...

    def experiments(self) -> list[Experiment]: ...

    def proxies(self) -> list[dict[str, Any]]: ...


def add_source_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--control-url", metavar="URL",
                       help="a running proxy's control API (default: $AWS_ENDPOINT_URL_FIS if it "
                            "answers, else the proxy of this folder; see --help of fisproxy)")
    add_flag(group, BY_NAME["store"],
             help="read this shared store directly: redis://[user:password@]host:port/db "
                  "(default: $FISPROXY_STORE)")
    add_flag(group, BY_NAME["state"],
             help="read this SQLite state file directly (default: $FISPROXY_STATE, else the "
                  "state of the proxy of this folder, else "
                  f"{BY_NAME['state'].default_shown()})")
    add_flag(parser, BY_NAME["control_token"],
             help="the control token to send to a proxy that requires one (default: "
                  "$FISPROXY_CONTROL_TOKEN); without one, requests are signed (SigV4) with the "
                  "AWS keys of the environment")


def source(args: argparse.Namespace) -> Source:
    """The source the arguments and the environment name (see the module's docstring). Unless
    a flag named it, says on stderr what is read and why."""
    login = Login.from_environment(args.control_token)
    chosen, why = _source(args, login)
    if why is not None:
        sys.stderr.write(f"fisproxy {args.command}: reading {chosen.name}: {why}\n")
    return chosen


def _source(args: argparse.Namespace, login: Login) -> tuple[Any, str | None]:
    if args.control_url:
        return ControlApi(args.control_url, login), None
    if args.store:
        return StoreSource.open(args.store), None
    if args.state:
        return StoreSource.open(None, Path(args.state)), None
    notes = []
    endpoint = os.environ.get("AWS_ENDPOINT_URL_FIS")
    if endpoint:
        control = ControlApi(endpoint, login)
        if control.reachable():
            return control, "$AWS_ENDPOINT_URL_FIS"
        notes.append(f"$AWS_ENDPOINT_URL_FIS {endpoint} does not answer")
    if os.environ.get("FISPROXY_STORE"):
        return StoreSource.open(os.environ["FISPROXY_STORE"]), _why("$FISPROXY_STORE", notes)
    if os.environ.get("FISPROXY_STATE"):
        return StoreSource.open(None, Path(os.environ["FISPROXY_STATE"])), _why("$FISPROXY_STATE", notes)
    try:
        choice = runtimefile.choose()
    except runtimefile.Ambiguous as e:
        raise CliError(f"{e}, or give --control-url, --store or --state") from None
    proxy = choice.proxy or choice.last
    if proxy is None:
        return StoreSource.open(None, default_state_path()), _why(f"{choice.why}: the default state file", notes)
    if choice.proxy is not None and proxy.control_url:
        return ControlApi(proxy.control_url, login), _why(choice.why, notes)
    if proxy.store is not None:
        if BY_NAME["store"].shown_value(proxy.store) != proxy.store:
            raise CliError(f"{choice.why}; it used the store {proxy.store}: give --store with its "
                           "password (or $FISPROXY_STORE)")
        return StoreSource.open(proxy.store), _why(f"{choice.why}: its store", notes)
    return StoreSource.open(None, Path(proxy.state)), _why(f"{choice.why}: its state file", notes)


def _why(why: str, notes: list[str]) -> str:
    return "; ".join([*notes, why])


# ---- logging in ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Login:
    """What fisproxy's commands present to a control API: a token, else AWS keys (SigV4)."""

    token: str | None
    credentials: Any  # botocore Credentials, or None
    region: str
    token_from: str = "--control-token"

    @classmethod
    def from_environment(cls, token: str | None = None) -> Login:
        token_from = "--control-token"
        if token is None and os.environ.get("FISPROXY_CONTROL_TOKEN"):
            token, token_from = os.environ["FISPROXY_CONTROL_TOKEN"], "$FISPROXY_CONTROL_TOKEN"
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
        return cls(token, None if token else _aws_credentials(), region, token_from)

    def headers(self, method: str, url: str) -> dict[str, str]:
        if self.token:
            return {"Authorization": f"Bearer {self.token}"}
        if self.credentials is None:
            return {}
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method=method, url=url)
        SigV4Auth(self.credentials, "fis", self.region).add_auth(request)
        return {k: v for k, v in request.headers.items() if k.lower().startswith(("authorization", "x-amz-"))}

    def describe(self) -> str:
        if self.token:
            return f"with the token of {self.token_from}"
        if self.credentials is not None:
            return f"signed with access key {self.credentials.access_key}"
        return "without credentials"


def _aws_credentials() -> Any:
    """The AWS keys the AWS CLI would use here (environment, shared files, profile), without
    asking instance or container metadata (slow off AWS); None if there are none."""
    import botocore.exceptions
    import botocore.session

    session = botocore.session.Session()
    resolver = session.get_component("credential_provider")
    for name in ("container-role", "iam-role"):
        resolver.remove(name)
    try:
        credentials = resolver.load_credentials()
    except botocore.exceptions.BotoCoreError:
        return None
    return credentials.get_frozen_credentials() if credentials is not None else None


# ---- sources -------------------------------------------------------------------------------

class ControlApi:
    """A running proxy's control API, over plain HTTP (never through HTTP_PROXY)."""

    def __init__(self, url: str, login: Login | None = None) -> None:
        self.url = url.rstrip("/")
        self.login = login or Login(None, None, DEFAULT_REGION)
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @property
    def name(self) -> str:
        return f"the control API at {self.url}"

    def reachable(self) -> bool:
        try:
            health = self._get("/_fisproxy/health", timeout=PROBE_TIMEOUT_SECONDS)
        except CliError:
            return False
        return isinstance(health, dict) and health.get("status") == "ok"

    def report(self, experiment_id: str, fmt: str) -> bytes:
        path = f"/_fisproxy/experiments/{quote(experiment_id, safe='')}/report?{urlencode({'format': fmt})}"
        return self._fetch(path, REPORT_TIMEOUT_SECONDS)

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
        url = self.url + path
        request = urllib.request.Request(url, headers=self.login.headers("GET", url))
        try:
            with self._opener.open(request, timeout=timeout) as response:
                body: bytes = response.read()
                return body
        except urllib.error.HTTPError as e:
            raise CliError(self._refused(e)) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise CliError(f"cannot reach the control API at {self.url}: {reason}") from None

    def _refused(self, e: urllib.error.HTTPError) -> str:
        try:
            message = json.loads(e.read()).get("message")
        except (ValueError, AttributeError):
            message = None
        if e.code != 403:
            return message or f"HTTP {e.code} from {e.url}"
        code = e.headers.get("x-amzn-errortype", "AccessDeniedException").split(":")[0]
        how = ("set $FISPROXY_CONTROL_TOKEN (or --control-token) to its control token, or AWS "
               "keys it accepts (its --control-credentials) in AWS_ACCESS_KEY_ID and "
               "AWS_SECRET_ACCESS_KEY")
        return (f"the control API at {self.url} refused a request {self.login.describe()} "
                f"({code}: {message or 'forbidden'}); {how}")


@dataclass
class StoreSource:
    """A store read directly: a SQLite state file (the proxy may be running: SQLite WAL allows
    it) or a shared Redis store."""

    url: str | None
    path: Path

    @classmethod
    def open(cls, url: str | None, path: Path | None = None) -> StoreSource:
        if url:
            from fisproxy.proxy.settings import SettingError

            try:
                BY_NAME["store"].check(url, "--store")
            except SettingError as e:
                raise CliError(str(e)) from None
            return cls(url, Path("unused"))
        assert path is not None
        if not path.is_file():
            raise CliError(f"no state file at {path} (start the proxy, or pass --state, --store "
                           "or --control-url)")
        return cls(None, path)

    @property
    def name(self) -> str:
        return f"the store {BY_NAME['store'].shown_value(self.url)}" if self.url else f"the state file {self.path}"

    def _store(self) -> Any:
        from fisproxy.store import StoreUnavailable, open_store

        try:
            return open_store(self.url, self.path)
        except StoreUnavailable as e:
            raise CliError(f"{self.name}: {e}") from None
        except ValueError as e:  # the Redis client not installed
            raise CliError(str(e)) from None

    def report(self, experiment_id: str, fmt: str) -> bytes:
        from fisproxy.reports.service import build, render

        store = self._store()
        try:
            return render(build(store, experiment_id, with_dashboards=False), fmt)
        except KeyError:
            raise CliError(f"no experiment {experiment_id} in {self.name}") from None
        finally:
            store.close()

    def experiments(self) -> list[Experiment]:
        store = self._store()
        try:
            experiments: list[Experiment] = store.list_experiments()
            return experiments
        finally:
            store.close()

    def proxies(self) -> list[dict[str, Any]]:
        store = self._store()
        try:
            proxies: list[dict[str, Any]] = store.list_proxies()
            return proxies
        finally:
            store.close()
