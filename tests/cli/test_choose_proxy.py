"""Which proxy a command talks to (runtimefile.choose): the one the flags name, else the one
started in this folder, else the only one running; never a stranger picked silently. These use
runtime files of live processes (this test's own pid) rather than real proxies: the choice is
made from the files alone. tests/e2e/test_walkthrough.py does it with real proxies."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fisproxy.cli import runtimefile
from fisproxy.cli.runtimefile import RunningProxy
from tests.helpers import VENV_BIN, clean_env

FISPROXY = str(VENV_BIN / "fisproxy")


@pytest.fixture
def run_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FISPROXY_RUNTIME_DIR", str(tmp_path / "run"))
    return tmp_path / "run"


def record(port: int, folder: Path | None, *, started: float, pid: int | None = None,
           certs: Path | None = None, state: Path | None = None) -> RunningProxy:
    base = folder or Path("/elsewhere")
    proxy = RunningProxy(pid=pid or os.getpid(), started=started, version="t", listen_host="127.0.0.1",
                         port=port, control_port=port + 2, certs=str(certs or base / "certs"),
                         state=str(state or base / "state" / "fisproxy.sqlite"),
                         folder=str(folder.resolve()) if folder else None)
    runtimefile.write(proxy)
    return proxy


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_proxy_belongs_to_the_folder_it_was_started_in_with_its_files(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    assert runtimefile.folder_of(clone, clone / "certs", clone / "state" / "f.sqlite") == str(clone.resolve())
    assert runtimefile.folder_of(clone, Path("/tmp/x/certs"), clone / "state.sqlite") == str(clone.resolve())
    # the test suite's proxies: started in the clone, their files elsewhere
    assert runtimefile.folder_of(clone, Path("/tmp/x/certs"), Path("/tmp/x/state.sqlite")) is None


def test_the_proxy_of_this_folder_wins_over_a_newer_stranger(run_dir: Path, tmp_path: Path) -> None:
    clone, other = tmp_path / "clone", tmp_path / "other"
    mine = record(8080, clone, started=1.0)
    record(9090, other, started=2.0)  # newer
    record(9191, None, started=3.0)  # newest, of no folder
    for cwd in (clone, clone / "sub" / "dir"):
        choice = runtimefile.choose(cwd=cwd)
        assert choice.proxy == mine
        assert choice.why == f"the fisproxy on port 8080 (pid {os.getpid()}), started in {clone.resolve()}"
    assert runtimefile.choose(port=9191, cwd=clone).proxy is not None  # a flag names another


def test_the_only_proxy_running_is_chosen_and_said_so(run_dir: Path, tmp_path: Path) -> None:
    record(8080, tmp_path / "other", started=1.0)
    choice = runtimefile.choose(cwd=tmp_path / "here")
    assert choice.proxy is not None and choice.why.endswith("the only one running on this host")


def test_several_strangers_are_an_error_listing_them(run_dir: Path, tmp_path: Path) -> None:
    record(8080, tmp_path / "a", started=1.0)
    record(9090, None, started=2.0)
    with pytest.raises(runtimefile.Ambiguous, match=r"2 fisproxy processes run .*port 9090.*port 8080.*name one with --port"):
        runtimefile.choose(cwd=tmp_path / "here")


def test_the_last_proxy_of_a_folder_is_remembered_once_it_stopped(run_dir: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    path = runtimefile.write(RunningProxy(
        pid=os.getpid(), started=1.0, version="t", listen_host="127.0.0.1", port=8080, control_port=8082,
        certs=str(clone / "certs"), state=str(clone / "state.sqlite"), folder=str(clone.resolve())))
    runtimefile.ended(path, time.time())
    stranger = runtimefile.write(RunningProxy(
        pid=dead_pid(), started=2.0, version="t", listen_host="127.0.0.1", port=9090, control_port=9092,
        certs="/x/certs", state="/x/state.sqlite"))
    runtimefile.ended(stranger, time.time())  # of no folder: forgotten
    assert not stranger.exists()
    choice = runtimefile.choose(cwd=clone)
    assert choice.proxy is None and choice.last is not None and choice.last.state == str(clone / "state.sqlite")
    assert choice.why == f"no fisproxy of this folder running; the last one started in {clone.resolve()} (port 8080) stopped"
    # a proxy running elsewhere is not this folder's: still the last one of this folder
    record(7070, None, started=3.0)
    assert path.exists()  # (and starting it cleared what is not the last of a folder)
    assert runtimefile.choose(cwd=clone).last == choice.last


def shell(script: str, cwd: Path, run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env=clean_env(FISPROXY_RUNTIME_DIR=str(run_dir)))


def test_eval_fisproxy_env_in_a_folder_points_at_its_proxy_and_says_why(run_dir: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    clone.mkdir()
    record(18080, clone, started=1.0, certs=clone / "certs")
    record(19090, tmp_path / "other", started=2.0, certs=tmp_path / "other" / "certs")
    result = shell(f'eval "$({FISPROXY} env)"; echo "proxy=$HTTPS_PROXY fis=$AWS_ENDPOINT_URL_FIS"', clone, run_dir)
    assert result.returncode == 0, result.stderr
    assert "proxy=http://127.0.0.1:18080 fis=http://127.0.0.1:18082" in result.stdout
    # under eval, the choice is still seen: it is on stderr
    assert f"fisproxy env: the fisproxy on port 18080 (pid {os.getpid()}), started in {clone.resolve()}" in result.stderr


def test_fisproxy_env_refuses_to_guess_among_strangers(run_dir: Path, tmp_path: Path) -> None:
    here = tmp_path / "here"
    here.mkdir()
    record(18080, tmp_path / "a", started=1.0)
    record(19090, tmp_path / "b", started=2.0)
    result = shell(f"{FISPROXY} env", here, run_dir)
    assert result.returncode == 2 and result.stdout == ""
    assert "fisproxy env: error: 2 fisproxy processes run" in result.stderr and "--port" in result.stderr
    pinned = shell(f"{FISPROXY} env --port 19090", here, run_dir)
    assert pinned.returncode == 0 and "export HTTPS_PROXY=http://127.0.0.1:19090" in pinned.stdout
    assert "as --port 19090 says" in pinned.stderr


def test_ca_prints_the_path_of_the_folders_proxy(run_dir: Path, tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    clone.mkdir()
    record(18080, clone, started=1.0, certs=clone / "certs")
    result = shell(f"{FISPROXY} ca", clone, run_dir)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{(clone / 'certs' / 'mitmproxy-ca-cert.pem').resolve()}\n"
    assert "fisproxy ca: the fisproxy on port 18080" in result.stderr
