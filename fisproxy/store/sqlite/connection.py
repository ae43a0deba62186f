"""One SQLite store's connection to its file, and what every part of the store shares: the
lock that guards the connection, transactions, JSON encoding.

Every write is its own committed transaction (autocommit) in WAL mode with `synchronous=FULL`,
so a write that returned survives `kill -9` and power loss. One connection, shared by the event
loop and the control API's threads, guarded by `lock`. Several processes may share one file
(`--workers N`): SQLite's file locks serialise their writes, and `transaction()` (BEGIN
IMMEDIATE: the file's write lock taken first) makes a read-then-write atomic across them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fisproxy.store.sqlite import schema

Statement = tuple[str, tuple[Any, ...]]


class Connection:
    """The connection of one store to its file and how it is used (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.db = connect(self.path)
        schema.create(self.db)

    def run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One statement, committed when it returns."""
        with self.lock:
            return self.db.execute(sql, args).fetchall()

    @contextmanager
    def locked(self) -> Iterator[sqlite3.Connection]:
        """The connection to this store's alone: statements one after the other, each committed
        when it returns (no transaction)."""
        with self.lock:
            yield self.db

    @contextmanager
    def transaction(self, begin: str = "BEGIN IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """The statements run on the yielded connection in one transaction: all or none.
        BEGIN IMMEDIATE takes the file's write lock first, so what they read is not changed by
        another process before they write."""
        with self.lock:
            self.db.execute(begin)
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def run_all(self, statements: Iterable[Statement]) -> None:
        """Run `statements` in one transaction: all or none."""
        with self.transaction() as db:
            for sql, args in statements:
                db.execute(sql, args)

    def close(self) -> None:
        with self.lock:
            self.db.close()


class StorePart:
    """Base of the parts a `SqliteStore` is made of (one job each), sharing one connection.
    A part with state of its own extends `__init__` (cooperatively: super first)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn


def connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: autocommit, each statement is committed when it returns.
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=5000")
    return db


def check_ttl(ttl_seconds: float) -> None:
    if not ttl_seconds > 0:
        raise ValueError(f"a TTL must be positive, not {ttl_seconds!r}")


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)
