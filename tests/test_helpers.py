"""The test helpers that keep the suite from leaking processes: a start that fails stops what
it started, and the end-of-session check finds a process that outlived its test, orphans too."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

from tests.helpers import SESSION_MARK, clean_env, leftover_processes, run_group, start_process

SLEEPER = "import sys, time; time.sleep(600)"  # argv[1] tags it, so the test can look for it


def processes_tagged(tag: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        try:
            if tag in p.cmdline() and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def test_start_process_stops_a_process_that_never_gets_ready(tmp_path: Path) -> None:
    tag = f"never-ready-{uuid.uuid4().hex}"
    with pytest.raises(TimeoutError, match="sleeper not ready after 1s"):
        start_process([sys.executable, "-c", SLEEPER, tag], tmp_path / "log", lambda: False, "sleeper",
                      timeout=1)
    assert processes_tagged(tag) == []


def test_start_process_reports_an_early_exit_with_the_log(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"(?s)quitter exited with 3.*no such option"):
        start_process([sys.executable, "-c", "import sys; print('no such option'); sys.exit(3)"],
                      tmp_path / "log", lambda: False, "quitter", timeout=30)


def test_leftover_processes_finds_a_child_and_an_orphan_by_the_mark() -> None:
    mark = uuid.uuid4().hex
    env = clean_env(**{SESSION_MARK: mark})
    child = subprocess.Popen([sys.executable, "-c", SLEEPER, "child"], env=env)
    # The shell starts a sleeper in the background and exits: the sleeper is re-parented.
    orphan_pid = int(subprocess.run(
        ["sh", "-c", f"{sys.executable} -c '{SLEEPER}' orphan >/dev/null 2>&1 & echo $!"],
        env=env, capture_output=True, text=True, timeout=30, check=True).stdout)
    try:
        orphan = psutil.Process(orphan_pid)
        assert orphan.ppid() != psutil.Process().pid
        found = {p.pid for p in leftover_processes(mark)}
        assert {child.pid, orphan_pid} <= found
        assert child.pid not in {p.pid for p in leftover_processes(mark, spared={child.pid})}
    finally:
        child.kill()
        child.wait()
        psutil.Process(orphan_pid).kill()
    psutil.wait_procs([orphan], timeout=10)
    assert {child.pid, orphan_pid} & {p.pid for p in leftover_processes(mark)} == set()


def test_run_group_kills_what_the_program_left_behind() -> None:
    tag = f"left-behind-{uuid.uuid4().hex}"
    result = run_group(["sh", "-c", f"{sys.executable} -c '{SLEEPER}' {tag} >/dev/null 2>&1 & echo started"],
                       timeout=30, env=clean_env(), text=True)
    assert result.returncode == 0 and result.stdout.strip() == "started"
    psutil.wait_procs(processes_tagged(tag), timeout=10)
    assert processes_tagged(tag) == []


def test_every_file_listed_to_run_first_exists() -> None:
    """tests/conftest.py's LONGEST_FIRST names files by path: one renamed or moved would quietly
    lose its place at the front and could again be left running alone at the end."""
    from tests.conftest import LONGEST_FIRST
    from tests.helpers import ROOT

    assert [path for path in LONGEST_FIRST if not (ROOT / path).is_file()] == []
