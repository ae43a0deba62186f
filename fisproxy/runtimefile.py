"""Where the running proxies are: one small JSON file per `fisproxy run` / `fisproxy web`
process, so `fisproxy env` and `fisproxy ca` use the same CA folder and ports as the proxy
without being told.

The file is written before mitmproxy starts and removed when it exits. Its name holds the port
and the pid (`proxy-8080-12345.json`), so several proxies on one host never overwrite each
other's file, and a file left by a killed process is recognised by its dead pid and ignored
(and removed by the next proxy that starts). The folder is `$FISPROXY_RUNTIME_DIR`, else
`$XDG_RUNTIME_DIR/fisproxy` (per user, cleared at logout), else
`$XDG_STATE_HOME/fisproxy/run` (default `~/.local/state/fisproxy/run`). The files hold no
secrets: no control token, no credentials.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

PREFIX = "proxy-"


class RunningProxy(BaseModel):
    """What clients need to find one running proxy."""

    model_config = ConfigDict(frozen=True)

    pid: int
    started: float  # time.time() at start; the newest proxy is the default one
    version: str
    listen_host: str
    port: int
    control_port: int  # 0: no control listener
    web_port: int | None = None  # mitmweb's UI (fisproxy web)
    certs: str  # absolute path of the CA folder (mitmproxy's confdir)
    state: str  # absolute path of the SQLite state file
    aws_endpoint: str | None = None

    @property
    def client_host(self) -> str:
        """The address clients on this host reach the proxy at."""
        return "127.0.0.1" if self.listen_host in ("", "0.0.0.0", "::") else self.listen_host


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


def write(proxy: RunningProxy) -> Path:
    """Record `proxy` (atomically: readers never see half a file); clear stale records.
    Returns the file's path, for `remove`."""
    folder = runtime_dir()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path, record in _records(folder):
        if record is not None and not pid_alive(record.pid):
            path.unlink(missing_ok=True)
    path = _path(proxy, folder)
    partial = path.with_suffix(".tmp")
    partial.write_text(proxy.model_dump_json(indent=2) + "\n")
    os.replace(partial, path)
    return path


def remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def running() -> list[RunningProxy]:
    """The proxies whose process is alive, newest first."""
    live = [r for _, r in _records(runtime_dir()) if r is not None and pid_alive(r.pid)]
    return sorted(live, key=lambda r: r.started, reverse=True)


def find(*, port: int | None = None, certs: Path | None = None) -> RunningProxy | None:
    """The newest running proxy on `port` and with CA folder `certs` (each when given)."""
    wanted = str(certs.resolve()) if certs is not None else None
    for proxy in running():
        if (port is None or proxy.port == port) and (wanted is None or proxy.certs == wanted):
            return proxy
    return None
