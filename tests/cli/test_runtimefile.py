"""The runtime files that let `fisproxy env` / `fisproxy ca` find running proxies: one per
process, dead ones ignored and cleared, unreadable ones ignored."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fisproxy.cli import runtimefile
from fisproxy.cli.runtimefile import RunningProxy


@pytest.fixture(autouse=True)
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FISPROXY_RUNTIME_DIR", str(tmp_path / "run"))
    return tmp_path / "run"


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def proxy(port: int, pid: int | None = None, started: float = 1.0, certs: str = "/c") -> RunningProxy:
    return RunningProxy(pid=pid or os.getpid(), started=started, version="t", listen_host="127.0.0.1",
                        port=port, control_port=port + 2, certs=certs, state="/s/fisproxy.sqlite")


def test_written_proxies_are_found_newest_first(folder: Path) -> None:
    older, newer = proxy(8080, started=1.0), proxy(9090, started=2.0, certs="/other")
    runtimefile.write(older)
    runtimefile.write(newer)
    assert runtimefile.running() == [newer, older]
    assert runtimefile.find() == newer
    assert runtimefile.find(port=8080) == older
    assert runtimefile.find(certs=Path("/other")) == newer
    assert runtimefile.find(port=8080, certs=Path("/other")) is None


def test_remove_forgets_the_proxy(folder: Path) -> None:
    path = runtimefile.write(proxy(8080))
    runtimefile.remove(path)
    runtimefile.remove(path)  # twice is fine
    assert runtimefile.running() == []


def test_a_dead_process_is_ignored_and_cleared_by_the_next_start(folder: Path) -> None:
    stale = runtimefile.write(proxy(8080, pid=dead_pid(), started=5.0))
    assert runtimefile.find() is None and stale.exists()
    live = proxy(8080, started=1.0)
    runtimefile.write(live)
    assert not stale.exists()
    assert runtimefile.find() == live


def test_several_proxies_on_one_port_keep_their_own_files(folder: Path) -> None:
    """A proxy in another network namespace, or one being restarted: no file overwritten."""
    runtimefile.write(proxy(8080, started=1.0))
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        runtimefile.write(proxy(8080, pid=other.pid, started=2.0))
        assert [p.pid for p in runtimefile.running()] == [other.pid, os.getpid()]
    finally:
        other.kill()
        other.wait()
    assert [p.pid for p in runtimefile.running()] == [os.getpid()]


def test_unreadable_files_are_ignored(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "proxy-1-1.json").write_text("{not json")
    (folder / "proxy-2-2.json").write_text('{"pid": 2}')
    runtimefile.write(proxy(8080))
    assert [p.port for p in runtimefile.running()] == [8080]


def test_missing_folder_means_no_proxy(folder: Path) -> None:
    assert runtimefile.running() == [] and runtimefile.find(port=1) is None


def test_folder_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FISPROXY_RUNTIME_DIR")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    assert runtimefile.runtime_dir() == tmp_path / "xdg" / "fisproxy"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert runtimefile.runtime_dir() == tmp_path / "state" / "fisproxy" / "run"


def test_wildcard_listen_host_is_reached_on_loopback() -> None:
    assert proxy(1).model_copy(update={"listen_host": "0.0.0.0"}).client_host == "127.0.0.1"
    assert proxy(1).model_copy(update={"listen_host": "10.0.0.5"}).client_host == "10.0.0.5"
