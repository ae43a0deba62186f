"""Change notices in SQLite (`fis.ports.ChangeFeed`) between the processes on one file:
`changes`, a row per notice with a growing `seq`. A saved experiment is announced by its save
itself, its row in the same transaction (`experiments.py`). The first `subscribe` starts a
thread that polls for rows past its cursor every POLL_SECONDS, on its own connection; only the
last CHANGES_KEPT rows are kept, and a subscriber that fell further behind is told to resync.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fisproxy.fis.ports import ChangeCallback, DataCallback, Subscription
from fisproxy.store.base import Subscribers
from fisproxy.store.sqlite.connection import Connection, Statement, StorePart, connect

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # how often a subscriber looks for new change rows
CHANGES_KEPT = 10_000  # change rows kept; a subscriber further behind resyncs


def change_rows(kind: str, key: str) -> list[Statement]:
    """The statements of one change notice: its row, and the rows too old to keep."""
    return [("INSERT INTO changes (kind, key) VALUES (?, ?)", (kind, key)),
            ("DELETE FROM changes WHERE seq <= last_insert_rowid() - ?", (CHANGES_KEPT,))]


class SqliteChanges(StorePart):
    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self._subscribers = Subscribers()
        self._poller: _ChangePoller | None = None

    def publish_change(self, kind: str, key: str, data: dict[str, Any] | None = None) -> None:
        """A change row; `data` is not kept (subscribers read the file, as cheap as a row)."""
        self._conn.run_all(change_rows(kind, key))

    def subscribe(self, kinds: Iterable[str], callback: ChangeCallback,
                  with_data: DataCallback | None = None) -> Subscription:
        """Notices carry no data here: `with_data` is never called, every notice reaches
        `callback`."""
        sub = self._subscribers.add(kinds, callback)
        with self._conn.lock:
            if self._poller is None:
                self._poller = _ChangePoller(self._conn.path, self._subscribers)
        return sub

    def _stop_listening(self) -> None:
        with self._conn.lock:
            poller, self._poller = self._poller, None
        if poller is not None:
            poller.stop()


class _ChangePoller:
    """The thread that reads new `changes` rows for this store's subscribers, on its own
    connection (so it never waits for the store's lock)."""

    def __init__(self, path: Path, subscribers: Subscribers) -> None:
        self._db = connect(path)
        self._subscribers = subscribers
        self._cursor = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]
        self._stop = threading.Event()
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="fisproxy-store-changes", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.wait(POLL_SECONDS):
                self._poll()
        finally:
            self._db.close()

    def _poll(self) -> None:
        try:
            rows = self._db.execute(
                "SELECT seq, kind, key FROM changes WHERE seq > ? ORDER BY seq", (self._cursor,)
            ).fetchall()
        except sqlite3.Error as e:  # the cursor stays: nothing is lost, the next poll retries
            if not self._failing:
                logger.warning("fisproxy: reading change notices failed (%s); retrying", e)
            self._failing = True
            return
        if self._failing:
            logger.info("fisproxy: reading change notices again")
            self._failing = False
        if not rows:
            return
        if rows[0][0] > self._cursor + 1:  # the rows in between were pruned: we fell behind
            self._subscribers.resync()
        else:
            for _, kind, key in rows:
                self._subscribers.deliver(kind, key)
        self._cursor = rows[-1][0]

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(5)
