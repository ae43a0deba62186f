"""Embedded persistence: SQLite holding FIS models as JSON.

Every write is its own committed transaction (autocommit) in WAL mode with `synchronous=FULL`,
so a write that returned survives `kill -9` and power loss. One connection shared by the event
loop and the control API's threads, guarded by a lock. Writes are small and rare (control-plane
changes, experiment state transitions, log records), never per proxied request.

Tables: `templates` and `experiments` (id -> model JSON, in creation order; experiments also
keep an engine-private `runtime` JSON), `docs` (kind, key -> JSON: client tokens, the safety
lever, target account configurations, chaos config), `logs` (experiment log records) and
`requests` (one row per proxied AWS request, for reports: written in batches of about a
second's worth by `requestlog.Recorder`, one transaction each, never per request).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from fisproxy.fis.models import Experiment, ExperimentTemplate
from fisproxy.requestlog import RequestRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS templates (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS experiments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL, runtime TEXT);
CREATE TABLE IF NOT EXISTS docs (
    kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, experiment_id TEXT NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_by_experiment ON logs (experiment_id, seq);
CREATE TABLE IF NOT EXISTS requests (
    time REAL NOT NULL, duration_ms REAL NOT NULL, service TEXT NOT NULL, operation TEXT,
    region TEXT, faults TEXT NOT NULL, status INTEGER, invocation_id TEXT, attempt INTEGER);
CREATE INDEX IF NOT EXISTS requests_by_time ON requests (time);
"""


class Store:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: autocommit, each statement is committed when it returns.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ---- templates ----

    def put_template(self, t: ExperimentTemplate) -> None:
        self._run(
            "INSERT INTO templates (id, doc) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
            (t.id, _dumps(t.wire())),
        )

    def get_template(self, template_id: str) -> ExperimentTemplate | None:
        rows = self._run("SELECT doc FROM templates WHERE id = ?", (template_id,))
        return ExperimentTemplate.model_validate_json(rows[0][0]) if rows else None

    def delete_template(self, template_id: str) -> None:
        self._run("DELETE FROM templates WHERE id = ?", (template_id,))

    def list_templates(self) -> list[ExperimentTemplate]:
        rows = self._run("SELECT doc FROM templates ORDER BY seq")
        return [ExperimentTemplate.model_validate_json(r[0]) for r in rows]

    # ---- experiments ----

    def put_experiment(self, e: Experiment, runtime: dict[str, Any] | None = None) -> None:
        """Insert or replace `e`; `runtime` None keeps the stored runtime."""
        doc = _dumps(e.wire())
        if runtime is None:
            self._run(
                "INSERT INTO experiments (id, doc) VALUES (?, ?) "
                "ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
                (e.id, doc),
            )
        else:
            self._run(
                "INSERT INTO experiments (id, doc, runtime) VALUES (?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET doc = excluded.doc, runtime = excluded.runtime",
                (e.id, doc, _dumps(runtime)),
            )

    def get_experiment(self, experiment_id: str) -> Experiment | None:
        rows = self._run("SELECT doc FROM experiments WHERE id = ?", (experiment_id,))
        return Experiment.model_validate_json(rows[0][0]) if rows else None

    def get_runtime(self, experiment_id: str) -> dict[str, Any] | None:
        rows = self._run("SELECT runtime FROM experiments WHERE id = ?", (experiment_id,))
        return json.loads(rows[0][0]) if rows and rows[0][0] is not None else None

    def list_experiments(self) -> list[Experiment]:
        rows = self._run("SELECT doc FROM experiments ORDER BY seq")
        return [Experiment.model_validate_json(r[0]) for r in rows]

    # ---- small JSON documents ----

    def put_doc(self, kind: str, key: str, value: dict[str, Any]) -> None:
        self._run(
            "INSERT INTO docs (kind, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT(kind, key) DO UPDATE SET value = excluded.value",
            (kind, key, _dumps(value)),
        )

    def get_doc(self, kind: str, key: str) -> dict[str, Any] | None:
        rows = self._run("SELECT value FROM docs WHERE kind = ? AND key = ?", (kind, key))
        return json.loads(rows[0][0]) if rows else None

    def list_docs(self, kind: str) -> dict[str, dict[str, Any]]:
        rows = self._run("SELECT key, value FROM docs WHERE kind = ? ORDER BY rowid", (kind,))
        return {key: json.loads(value) for key, value in rows}

    def delete_doc(self, kind: str, key: str) -> None:
        self._run("DELETE FROM docs WHERE kind = ? AND key = ?", (kind, key))

    # ---- experiment logs ----

    def append_log(self, experiment_id: str, record: dict[str, Any]) -> None:
        self._run("INSERT INTO logs (experiment_id, record) VALUES (?, ?)", (experiment_id, _dumps(record)))

    def logs(self, experiment_id: str) -> list[dict[str, Any]]:
        rows = self._run("SELECT record FROM logs WHERE experiment_id = ? ORDER BY seq", (experiment_id,))
        return [json.loads(r[0]) for r in rows]

    # ---- request records ----

    def append_requests(self, records: list[RequestRecord]) -> None:
        """Insert `records` in one transaction (all or none)."""
        if not records:
            return
        rows = [
            (r.time, r.duration_ms, r.service, r.operation, r.region, _dumps(list(r.faults)),
             r.status, r.invocation_id, r.attempt)
            for r in records
        ]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO requests (time, duration_ms, service, operation, region, faults, "
                    "status, invocation_id, attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def requests_between(self, start: float, end: float) -> list[RequestRecord]:
        """Records with `start <= time <= end`, oldest first."""
        rows = self._run(
            "SELECT time, duration_ms, service, operation, region, faults, status, invocation_id, "
            "attempt FROM requests WHERE time >= ? AND time <= ? ORDER BY time, rowid",
            (start, end),
        )
        return [
            RequestRecord(t, d, svc, op, region, tuple(json.loads(faults)), status, inv, attempt)
            for t, d, svc, op, region, faults, status, inv, attempt in rows
        ]

    def delete_requests_before(self, t: float, *, batch: int = 5000) -> int:
        """Drop records older than `t` (retention); how many went. In batches, releasing the
        lock in between, so the event loop's own store calls never wait behind a long delete."""
        deleted = 0
        while True:
            with self._lock:
                n = self._db.execute(
                    "DELETE FROM requests WHERE rowid IN "
                    "(SELECT rowid FROM requests WHERE time < ? LIMIT ?)", (t, batch),
                ).rowcount
            deleted += n
            if n < batch:
                return deleted

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def open_store(url: str | None, state_path: Path) -> Store:
    """The store: the SQLite file at `state_path` (a shared store URL comes with --store)."""
    if url:
        raise ValueError(f"--store: unsupported store URL {url!r}")
    return Store(state_path)
