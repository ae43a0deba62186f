"""What is particular to the SQLite store: WAL with full sync, every acknowledged write
surviving `kill -9` of the writing process, and a change subscriber that fell behind the kept
change rows being told to resync."""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from fisproxy.fis.runstate import RunState
from fisproxy.store import Store, open_store
from fisproxy.store import sqlite as sqlite_store
from fisproxy.store.sqlite import changes as sqlite_changes
from tests.helpers import clean_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "deep" / "dir" / "state.sqlite")
    yield s
    s.close()


def test_open_store_without_a_url_is_sqlite_at_the_state_path(tmp_path: Path) -> None:
    for url in (None, "", "  "):
        s = open_store(url, tmp_path / f"state{len(url or '')}.sqlite")
        try:
            assert isinstance(s, sqlite_store.SqliteStore)
            assert s.path == tmp_path / f"state{len(url or '')}.sqlite" and s.path.exists()
        finally:
            s.close()


def test_creates_parent_dirs_and_uses_wal(store: Store) -> None:
    assert store.path.exists()
    assert store._conn.run("PRAGMA journal_mode")[0][0] == "wal"
    assert store._conn.run("PRAGMA synchronous")[0][0] == 2  # FULL


def test_a_subscriber_that_fell_behind_the_kept_changes_resyncs(
    store: Store, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sqlite_changes, "CHANGES_KEPT", 5)
    got: queue.Queue[tuple[str, str | None]] = queue.Queue()
    release = threading.Event()

    def slow(kind: str, key: str | None) -> None:
        got.put((kind, key))
        release.wait(5)  # holds the poller while 200 more changes are published

    store.subscribe(["experiment", "chaos"], slow)
    store.publish_change("experiment", "first")
    assert got.get(timeout=2) == ("experiment", "first")
    for i in range(200):
        store.publish_change("experiment", f"E{i}")
    assert store._conn.run("SELECT COUNT(*) FROM changes")[0][0] < 110  # pruned as it goes
    release.set()
    resync = {got.get(timeout=2), got.get(timeout=2)}
    assert resync == {("chaos", None), ("experiment", None)}
    store.publish_change("chaos", "after")
    assert got.get(timeout=2) == ("chaos", "after")  # and notices flow again


_WRITER = textwrap.dedent("""
    import sys
    from fisproxy.fis.runstate import RunState
    from fisproxy.store import Store
    from tests.store.samples import make_experiment, make_template
    s = Store(sys.argv[1])
    i = 0
    while True:
        s.put_template(make_template(f"EXT{i}"))
        s.put_experiment(make_experiment(f"EXP{i}"), RunState(region=f"r-{i}"))
        s.put_doc("tok", str(i), {"i": i})
        s.append_log("EXP", {"i": i})
        print(i, flush=True)  # acknowledged: all four writes of round i returned
        i += 1
""")


def test_acknowledged_writes_survive_kill_9(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(db)], stdout=subprocess.PIPE, cwd=ROOT,
                            env=clean_env(PYTHONPATH=str(ROOT)), text=True)
    assert proc.stdout is not None
    acked = -1
    deadline = time.monotonic() + 60
    try:
        while acked < 30 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # Lines printed before the kill but not yet read are acknowledged too.
    for line in proc.stdout.read().split():
        acked = int(line)
    assert acked >= 30, "the writer did not get going"

    s = Store(db)
    try:
        for i in range(acked + 1):
            assert s.get_template(f"EXT{i}") is not None, i
            assert s.get_experiment(f"EXP{i}") is not None, i
            assert s.get_runtime(f"EXP{i}") == RunState(region=f"r-{i}")
            assert s.get_doc("tok", str(i)) == {"i": i}
        assert [r["i"] for r in s.logs("EXP")][: acked + 1] == list(range(acked + 1))
    finally:
        s.close()
