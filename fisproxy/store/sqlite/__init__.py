"""Embedded persistence: SQLite holding FIS models as JSON (the default store).

`SqliteStore` is the `StoreBackend` made of parts with one job each, on one connection:

| module | part |
|---|---|
| `connection.py` | the connection and its lock, transactions, JSON encoding |
| `schema.py` | the file format: every table, the data version's triggers, the upgrade of older files |
| `documents.py` | templates, small JSON documents, experiment logs |
| `experiments.py` | experiments, the active index and data version; each save announced in its transaction |
| `requests.py` | request records (the report) |
| `leases.py` | leases (one schedule holder per experiment) |
| `changes.py` | change notices (rows) and the thread that polls them |
| `registry.py` | the proxy registry (heartbeats) and the shared counters |

Every write is its own committed transaction (autocommit) in WAL mode with `synchronous=FULL`,
so a write that returned survives `kill -9` and power loss. One connection shared by the event
loop and the control API's threads, guarded by a lock. Writes are small and rare (control-plane
changes, experiment state transitions, log records), never per proxied request. Several
processes may share one file (`--workers N`): SQLite's file locks serialise their writes.

What is atomic across the processes on one file: a lease claim (one UPSERT under SQLite's write
lock; times are this host's clock, which every process on the file shares); a save of an
experiment with its change row (one transaction); a batch of request records; a proxy's
registration with the pruning of expired ones; taking tokens and adding to counters (BEGIN
IMMEDIATE: read and written under the write lock). A resync reads the data version in `meta`
(moved by triggers at every write of an experiment or a document), and the active experiments
only when it moved.
"""

from __future__ import annotations

from pathlib import Path

from fisproxy.store.sqlite.changes import SqliteChanges
from fisproxy.store.sqlite.connection import Connection
from fisproxy.store.sqlite.documents import SqliteDocuments
from fisproxy.store.sqlite.experiments import SqliteExperiments
from fisproxy.store.sqlite.leases import SqliteLeases
from fisproxy.store.sqlite.registry import SqliteRegistry
from fisproxy.store.sqlite.requests import SqliteRequests

__all__ = ["SqliteStore", "Store"]


class SqliteStore(SqliteDocuments, SqliteExperiments, SqliteRequests, SqliteLeases, SqliteChanges,
                  SqliteRegistry):
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        super().__init__(Connection(self.path))

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    def close(self) -> None:
        self._stop_listening()
        self._conn.close()


Store = SqliteStore  # the name the rest of the code has always used
