"""An unusable `--state` ends `fisproxy run` with one line naming the path and exit code 2
(issue 9.9), never a traceback from inside mitmproxy.

Read-only cases: permission bits do not bind root (these tests run as root in CI), so a file or
folder is made read-only with `chattr +i` (immutable: even root cannot write it) when running
as root, with chmod otherwise; where neither holds (a filesystem without attributes), the test
is skipped, saying why. A path under a regular file is refused for everyone.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fisproxy.cli.statefile import state_problem
from fisproxy.store import Store
from tests.helpers import VENV_BIN, clean_env, free_port


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` (file or folder) unwritable for this process, restored afterwards."""
    if os.geteuid() == 0:
        made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
        if made.returncode != 0:
            pytest.skip(f"running as root and chattr +i fails here ({made.stderr.strip()}): "
                        "no way to make a path read-only for root")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        return
    mode = path.stat().st_mode
    path.chmod(0o555 if path.is_dir() else 0o444)
    try:
        yield
    finally:
        path.chmod(mode)


def sqlite_file(path: Path) -> Path:
    """A real store file, written by the store itself."""
    Store(path).close()
    return path


def garbage(path: Path) -> Path:
    path.write_bytes(b"this is not a database, just bytes " * 100)
    return path


def run_with_state(state: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "fisproxy"), "run", "--port", str(free_port()), "--control-port", str(free_port()),
         "--state", str(state), "--certs", str(tmp_path / "certs")],
        capture_output=True, text=True, timeout=60, env=clean_env(),
    )


def assert_one_line_exit_2(result: subprocess.CompletedProcess[str], state: Path, problem: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert line.count("\n") == 0, line
    assert line == f"fisproxy run: error: --state {state}: {problem}" or (
        line.startswith(f"fisproxy run: error: --state {state}: ") and problem in line), line


# ---- the check itself -----------------------------------------------------------------------

def test_a_new_path_in_a_new_folder_is_usable(tmp_path: Path) -> None:
    state = tmp_path / "a" / "b" / "state.sqlite"
    assert state_problem(state) is None
    assert state_problem(state) is None  # and again, now that it exists
    Store(state).close()  # the store opens what the check left


def test_an_existing_store_is_usable_and_kept(tmp_path: Path) -> None:
    state = sqlite_file(tmp_path / "state.sqlite")
    with sqlite3.connect(state) as db:
        db.execute("INSERT INTO docs (kind, key, value) VALUES ('k', 'v', '1')")
    assert state_problem(state) is None
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT value FROM docs").fetchall() == [("1",)]


def test_a_directory_is_refused(tmp_path: Path) -> None:
    assert state_problem(tmp_path) == "is a directory, not a file"


@pytest.mark.parametrize("content", [b"not a database " * 200, b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_file_that_is_not_sqlite_is_refused_and_left_alone(tmp_path: Path, content: bytes) -> None:
    state = tmp_path / "state.sqlite"
    state.write_bytes(content)
    assert state_problem(state) == "is not a SQLite database"
    assert state.read_bytes() == content


def test_a_path_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    assert state_problem(tmp_path / "plain" / "sub" / "state.sqlite") == f"{tmp_path / 'plain'} is a file, not a folder"


def test_a_read_only_store_file_is_refused(tmp_path: Path) -> None:
    state = sqlite_file(tmp_path / "state.sqlite")
    with read_only(state):
        problem = state_problem(state)
    assert problem is not None and problem.startswith("is read-only"), problem


@pytest.mark.parametrize("existing", [False, True], ids=["new-file", "existing-store"])
def test_a_read_only_folder_is_refused(tmp_path: Path, existing: bool) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    if existing:
        sqlite_file(folder / "state.sqlite")
        for extra in folder.glob("state.sqlite-*"):  # the WAL files must be created anew
            extra.unlink()
    with read_only(folder):
        problem = state_problem(folder / "state.sqlite")
    assert problem is not None and problem.startswith("cannot be opened for writing"), problem


# ---- the command line -----------------------------------------------------------------------

def test_cli_directory(tmp_path: Path) -> None:
    state = tmp_path / "is-a-dir"
    state.mkdir()
    assert_one_line_exit_2(run_with_state(state, tmp_path), state, "is a directory, not a file")


def test_cli_garbage_file(tmp_path: Path) -> None:
    state = garbage(tmp_path / "state.sqlite")
    assert_one_line_exit_2(run_with_state(state, tmp_path), state, "is not a SQLite database")


def test_cli_path_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    state = tmp_path / "plain" / "state.sqlite"
    assert_one_line_exit_2(run_with_state(state, tmp_path), state, "is a file, not a folder")


def test_cli_read_only_file(tmp_path: Path) -> None:
    state = sqlite_file(tmp_path / "state.sqlite")
    with read_only(state):
        result = run_with_state(state, tmp_path)
    assert_one_line_exit_2(result, state, "is read-only")


def test_cli_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder):
        result = run_with_state(folder / "state.sqlite", tmp_path)
    assert_one_line_exit_2(result, folder / "state.sqlite", "cannot be opened for writing")
