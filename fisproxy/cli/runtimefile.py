"""Where the proxies are: one small JSON file per `fisproxy run` / `fisproxy web` process, so
`fisproxy env`, `ca`, `report`, `experiments` and `proxies` reach the right proxy without
being told.

The file is written before mitmproxy starts. Its name holds the port and the pid
(`proxy-8080-12345.json`), so several proxies on one host never overwrite each other's file.
When the proxy ends, its file says so (`stopped`); a file left by a killed process is
recognised by its dead pid. Files of ended proxies are cleared by the next proxy that starts,
except the newest one of each folder: "the last proxy of this folder" is what commands read
once it stopped (its state file).

A proxy belongs to a folder when it was started there with its `--certs` or `--state` inside
it, as `make run` does (`--certs certs --state state/fisproxy.sqlite` in the clone). Commands
run in that folder, or below it, talk to that proxy (`choose`).

The folder of the files is `$FISPROXY_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR/fisproxy` (per
user, cleared at logout), else `$XDG_STATE_HOME/fisproxy/run` (default
`~/.local/state/fisproxy/run`). The test suite sets `$FISPROXY_RUNTIME_DIR` to a folder of its
own, so its proxies are never found by a user's shell. The files hold no secrets: no control
token, no credentials, store URLs without their password.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

PREFIX = "proxy-"


class RunningProxy(BaseModel):
    """What clients need to find one proxy (running, or the last one of its folder)."""

    model_config = ConfigDict(frozen=True)

    pid: int
    started: float  # time.time() at start
    version: str
    listen_host: str
    port: int
    control_port: int  # 0: no control listener
    web_port: int | None = None  # mitmweb's UI (fisproxy web)
    certs: str  # absolute path of the CA folder (mitmproxy's confdir)
    state: str  # absolute path of the SQLite state file
    store: str | None = None  # the shared store's URL, without its password
    aws_endpoint: str | None = None
    folder: str | None = None  # the folder it was started in, holding its --certs or --state
    stopped: float | None = None  # time.time() when it ended

    @property
    def client_host(self) -> str:
        """The address clients on this host reach the proxy at."""
        return "127.0.0.1" if self.listen_host in ("", "0.0.0.0", "::") else self.listen_host

    @property
    def control_url(self) -> str | None:
        if not self.control_port:
            return None
        host = self.client_host
        return f"http://[{host}]:{self.control_port}" if ":" in host else f"http://{host}:{self.control_port}"

    def describe(self) -> str:
        """`the fisproxy on port 8080 (pid 123)`, for one line on stderr."""
        return f"the fisproxy on port {self.port} (pid {self.pid})"

    @property
    def alive(self) -> bool:
        return self.stopped is None and pid_alive(self.pid)


def folder_of(cwd: Path, certs: Path, state: Path) -> str | None:
    """`cwd` when the proxy's CA folder or state file is inside it, else None."""
    cwd = cwd.resolve()
    for path in (certs.resolve(), state.resolve()):
        if path == cwd or cwd in path.parents:
            return str(cwd)
    return None


def runtime_dir() -> Path:
    if os.environ.get("FISPROXY_RUNTIME_DIR"):
        return Path(os.environ["FISPROXY_RUNTIME_DIR"])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "fisproxy"
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "fisproxy" / "run"


def _path(proxy: RunningProxy, folder: Path) -> Path:
    return folder / f"{PREFIX}{proxy.port}-{proxy.pid}.json"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _records(folder: Path) -> Iterator[tuple[Path, RunningProxy | None]]:
    """Every runtime file in `folder`, with its record (None: unreadable or not ours)."""
    try:
        paths = sorted(folder.glob(f"{PREFIX}*.json"))
    except OSError:
        return
    for path in paths:
        try:
            yield path, RunningProxy.model_validate_json(path.read_bytes())
        except (OSError, ValidationError):
            yield path, None


def _save(proxy: RunningProxy, path: Path) -> None:
    partial = path.with_suffix(".tmp")  # atomically: readers never see half a file
    partial.write_text(proxy.model_dump_json(indent=2) + "\n")
    os.replace(partial, path)


def write(proxy: RunningProxy) -> Path:
    """Record `proxy`; clear the records of ended proxies, but for the newest of each folder.
    Returns the file's path, for `ended`."""
    folder = runtime_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    ended = sorted(((p, r) for p, r in _records(folder) if r is not None and not r.alive),
                   key=lambda pr: pr[1].started, reverse=True)
    kept: set[str] = set() if proxy.folder is None else {proxy.folder}
    for path, record in ended:
        if record.folder is not None and record.folder not in kept:
            kept.add(record.folder)  # the last proxy of its folder
            continue
        path.unlink(missing_ok=True)
    path = _path(proxy, folder)
    _save(proxy, path)
    return path


def ended(path: Path, when: float) -> None:
    """The proxy of `path` stopped: its record stays as its folder's last proxy, if it has a
    folder; else it goes."""
    with contextlib.suppress(OSError, ValidationError):
        record = RunningProxy.model_validate_json(path.read_bytes())
        if record.folder is not None:
            _save(record.model_copy(update={"stopped": when}), path)
            return
    remove(path)


def remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def all_records() -> list[RunningProxy]:
    """Every readable record, running or not, newest first."""
    found = [r for _, r in _records(runtime_dir()) if r is not None]
    return sorted(found, key=lambda r: r.started, reverse=True)


def running() -> list[RunningProxy]:
    """The proxies whose process is alive, newest first."""
    return [r for r in all_records() if r.alive]


def find(*, port: int | None = None, certs: Path | None = None,
         control_port: int | None = None) -> RunningProxy | None:
    """The newest running proxy on `port`, with CA folder `certs` and control port
    `control_port` (each when given)."""
    wanted = str(certs.resolve()) if certs is not None else None
    for proxy in running():
        if ((port is None or proxy.port == port) and (wanted is None or proxy.certs == wanted)
                and (control_port is None or proxy.control_port == control_port)):
            return proxy
    return None


def _nearest(records: list[RunningProxy], cwd: Path) -> list[RunningProxy]:
    """The records whose folder is `cwd` or its nearest ancestor that has one, newest first."""
    cwd = cwd.resolve()
    for folder in (cwd, *cwd.parents):
        here = [r for r in records if r.folder == str(folder)]
        if here:
            return here
    return []


class Ambiguous(Exception):
    """Several proxies run and nothing says which one is meant: the message lists them."""


@dataclass(frozen=True)
class Choice:
    """The proxy a command talks to, and why (one line for stderr)."""

    proxy: RunningProxy | None  # None: no running proxy matched
    why: str
    last: RunningProxy | None = None  # the last proxy of this folder, when none runs


def choose(*, port: int | None = None, certs: Path | None = None,
           control_port: int | None = None, cwd: Path | None = None) -> Choice:
    """Which proxy a command run in `cwd` means.

    1. What the command names (`--port`, `--certs`, `--control-port`): the newest match.
    2. Else the proxy started in this folder (or the nearest folder above it that has one).
    3. Else, if this folder's proxy stopped, none: `last` is the one that ran here (its state,
       its ports), never another folder's proxy.
    4. Else the only proxy running on this host.
    Several running and none of this folder: `Ambiguous` (never a stranger picked silently)."""
    cwd = cwd or Path.cwd()
    live = running()
    if port is not None or certs is not None or control_port is not None:
        named = ", ".join(f"{flag} {value}" for flag, value in
                          (("--port", port), ("--certs", certs), ("--control-port", control_port))
                          if value is not None)
        proxy = find(port=port, certs=certs, control_port=control_port)
        if proxy is not None:
            return Choice(proxy, f"{proxy.describe()}, as {named} says")
        return Choice(None, f"no running fisproxy with {named}")
    here = _nearest(live, cwd)
    if here:
        return Choice(here[0], f"{here[0].describe()}, started in {here[0].folder}")
    last = next(iter(_nearest([r for r in all_records() if not r.alive], cwd)), None)
    if last is not None:
        return Choice(None, f"no fisproxy of this folder running; the last one started in "
                            f"{last.folder} (port {last.port}) stopped", last=last)
    if len(live) == 1:
        return Choice(live[0], f"{live[0].describe()}, the only one running on this host")
    if live:
        listed = "; ".join(p.describe() + (f" started in {p.folder}" if p.folder else "") for p in live)
        raise Ambiguous(f"{len(live)} fisproxy processes run and none was started in this folder "
                        f"({listed}): name one with --port")
    return Choice(None, "no fisproxy running on this host")
