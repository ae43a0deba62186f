"""Embedded persistence: SQLite holding FIS models as JSON (the default store).

Every write is its own committed transaction (autocommit) in WAL mode with `synchronous=FULL`,
so a write that returned survives `kill -9` and power loss. One connection shared by the event
loop and the control API's threads, guarded by a lock. Writes are small and rare (control-plane
changes, experiment state transitions, log records), never per proxied request. Several
processes may share one file (`--workers N`): SQLite's file locks serialise their writes.

Tables: `templates` and `experiments` (id -> model JSON, in creation order; experiments also
keep an engine-private `runtime` JSON and whether they are `active`, with a partial index of
those, so that reading what runs does not grow with history), `docs` (kind, key -> JSON: client tokens, the safety
lever, target account configurations, chaos config), `logs` (experiment log records) and
`requests` (one row per proxied AWS request, for reports: written in batches of about a
second's worth by `requestlog.Recorder`, one transaction each, never per request).

Coordination between the processes on one file: `leases` (name -> holder until an expiry
time; taken in one UPSERT, so atomic under SQLite's write lock; times are this host's clock,
which every process on the file shares), `changes` (a change counter: each notice is a row
with a growing `seq`; a subscriber thread polls for rows past its cursor every POLL_SECONDS,
on its own connection; only the last CHANGES_KEPT rows are kept, and a subscriber that fell
further behind is told to resync), `proxies` (the registry, rows expiring) and `counters`
(metric, labels -> value). `meta` holds the data version, a number that triggers on
`experiments` and `docs` move at every write: a resync reads it, and the active experiments
only when it moved. Each `put_experiment` adds its change row in the same transaction.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fisproxy.fis.models import ACTIVE_STATUSES, Experiment, ExperimentTemplate
from fisproxy.fis.ports import EXPERIMENT_CHANGES, ChangeCallback, DataCallback, Subscription
from fisproxy.fis.runstate import RunState
from fisproxy.requestlog import RequestRecord
from fisproxy.store.base import MAX_COUNTER_SERIES, CounterKey, Subscribers, counter_field

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # how often a subscriber looks for new change rows
CHANGES_KEPT = 10_000  # change rows kept; a subscriber further behind resyncs

_SCHEMA = """
CREATE TABLE IF NOT EXISTS templates (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS experiments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL, runtime TEXT,
    active INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS docs (
    kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, experiment_id TEXT NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_by_experiment ON logs (experiment_id, seq);
CREATE TABLE IF NOT EXISTS requests (
    time REAL NOT NULL, duration_ms REAL NOT NULL, service TEXT NOT NULL, operation TEXT,
    region TEXT, faults TEXT NOT NULL, status INTEGER, invocation_id TEXT, attempt INTEGER);
CREATE INDEX IF NOT EXISTS requests_by_time ON requests (time);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, key TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS proxies (
    id TEXT PRIMARY KEY, info TEXT NOT NULL, last_seen REAL NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS token_buckets (
    key TEXT PRIMARY KEY, tokens REAL NOT NULL, stamp REAL NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (
    metric TEXT NOT NULL, labels TEXT NOT NULL, value INTEGER NOT NULL, PRIMARY KEY (metric, labels));
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- A random start: a file made again never shows a version seen before.
INSERT OR IGNORE INTO meta (name, value) VALUES ('data_version', abs(random() % 1000000000000));
""" + "".join(
    f"CREATE TRIGGER IF NOT EXISTS {table}_{event.lower()} AFTER {event} ON {table} BEGIN "
    "UPDATE meta SET value = value + 1 WHERE name = 'data_version'; END;\n"
    for table in ("experiments", "docs") for event in ("INSERT", "UPDATE", "DELETE"))


class SqliteStore:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = _connect(self.path)
        self._db.executescript(_SCHEMA)
        _index_active(self._db)
        self._subscribers = Subscribers()
        self._poller: _ChangePoller | None = None

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _transaction(self, statements: Iterable[tuple[str, tuple[Any, ...]]]) -> None:
        """Run `statements` in one transaction: all or none."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    self._db.execute(sql, args)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

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

    def put_experiment(self, e: Experiment, runtime: RunState | None = None) -> None:
        """Insert or replace `e`; `runtime` None keeps the stored runtime. Its change row is
        written in the same transaction."""
        doc, active = _dumps(e.wire()), int(e.state.status in ACTIVE_STATUSES)
        upsert: tuple[str, tuple[Any, ...]]
        if runtime is None:
            upsert = ("INSERT INTO experiments (id, doc, active) VALUES (?, ?, ?) "
                      "ON CONFLICT(id) DO UPDATE SET doc = excluded.doc, active = excluded.active",
                      (e.id, doc, active))
        else:
            upsert = ("INSERT INTO experiments (id, doc, runtime, active) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT(id) DO UPDATE SET doc = excluded.doc, runtime = excluded.runtime, "
                      "active = excluded.active", (e.id, doc, runtime.model_dump_json(), active))
        self._transaction([upsert, *_change(EXPERIMENT_CHANGES, e.id)])

    def get_experiment(self, experiment_id: str) -> Experiment | None:
        rows = self._run("SELECT doc FROM experiments WHERE id = ?", (experiment_id,))
        return Experiment.model_validate_json(rows[0][0]) if rows else None

    def get_runtime(self, experiment_id: str) -> RunState | None:
        rows = self._run("SELECT runtime FROM experiments WHERE id = ?", (experiment_id,))
        return RunState.model_validate_json(rows[0][0]) if rows and rows[0][0] is not None else None

    def list_experiments(self) -> list[Experiment]:
        rows = self._run("SELECT doc FROM experiments ORDER BY seq")
        return [Experiment.model_validate_json(r[0]) for r in rows]

    def list_active_experiments(self) -> list[Experiment]:
        rows = self._run("SELECT doc FROM experiments WHERE active ORDER BY seq")
        return [Experiment.model_validate_json(r[0]) for r in rows]

    def data_version(self) -> str | None:
        rows = self._run("SELECT value FROM meta WHERE name = 'data_version'")
        return str(rows[0][0]) if rows else None

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

    # ---- leases ----

    def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        return self.claim_lease(name, holder, ttl_seconds) == 0.0

    def claim_lease(self, name: str, holder: str, ttl_seconds: float) -> float:
        _check_ttl(ttl_seconds)
        now = time.time()
        # One statement: SQLite's write lock makes the check and the write atomic across every
        # process on the file. The WHERE lets the holder renew and anyone take an expired lease.
        with self._lock:
            taken = self._db.execute(
                "INSERT INTO leases (name, holder, expires) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires "
                "WHERE leases.holder = excluded.holder OR leases.expires <= ?",
                (name, holder, now + ttl_seconds, now),
            ).rowcount
            if taken == 1:
                return 0.0
            rows = self._db.execute("SELECT expires FROM leases WHERE name = ?", (name,)).fetchall()
        return max(0.001, rows[0][0] - now) if rows else 0.001

    def release_lease(self, name: str, holder: str) -> None:
        self._run("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))
        # Leases of holders that died stay as expired rows: drop those an hour past expiry.
        self._run("DELETE FROM leases WHERE expires < ?", (time.time() - 3600,))

    def lease_holder(self, name: str) -> str | None:
        rows = self._run("SELECT holder FROM leases WHERE name = ? AND expires > ?", (name, time.time()))
        return rows[0][0] if rows else None

    # ---- change notices ----

    def publish_change(self, kind: str, key: str, data: dict[str, Any] | None = None) -> None:
        """A change row; `data` is not kept (subscribers read the file, as cheap as a row)."""
        self._transaction(_change(kind, key))

    def subscribe(self, kinds: Iterable[str], callback: ChangeCallback,
                  with_data: DataCallback | None = None) -> Subscription:
        """Notices carry no data here: `with_data` is never called, every notice reaches
        `callback`."""
        sub = self._subscribers.add(kinds, callback)
        with self._lock:
            if self._poller is None:
                self._poller = _ChangePoller(self.path, self._subscribers)
        return sub

    # ---- proxy registry ----

    def register_proxy(self, proxy_id: str, info: Mapping[str, Any], ttl_seconds: float) -> None:
        _check_ttl(ttl_seconds)
        now = time.time()
        self._transaction([
            ("INSERT INTO proxies (id, info, last_seen, expires) VALUES (?, ?, ?, ?) "
             "ON CONFLICT(id) DO UPDATE SET info = excluded.info, last_seen = excluded.last_seen, "
             "expires = excluded.expires", (proxy_id, _dumps(dict(info)), now, now + ttl_seconds)),
            ("DELETE FROM proxies WHERE expires <= ?", (now,)),
        ])

    def list_proxies(self) -> list[dict[str, Any]]:
        rows = self._run("SELECT id, info, last_seen FROM proxies WHERE expires > ? ORDER BY id",
                         (time.time(),))
        return [{**json.loads(info), "id": pid, "last_seen": seen} for pid, info, seen in rows]

    def count_proxies(self) -> int:
        rows = self._run("SELECT COUNT(*) FROM proxies WHERE expires > ?", (time.time(),))
        return int(rows[0][0])

    # ---- shared counters ----

    def take_tokens(self, key: str, per_second: float, burst: float, want: int, ttl_seconds: float) -> int:
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # atomic across the processes on the file
            try:
                row = self._db.execute("SELECT tokens, stamp FROM token_buckets WHERE key = ?", (key,)).fetchone()
                tokens, stamp = (float(burst), now) if row is None else (float(row[0]), float(row[1]))
                tokens = min(float(burst), tokens + max(0.0, now - stamp) * per_second)
                taken = max(0, min(int(want), int(tokens)))
                self._db.execute(
                    "INSERT INTO token_buckets (key, tokens, stamp, expires) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET tokens = excluded.tokens, stamp = excluded.stamp, "
                    "expires = excluded.expires", (key, tokens - taken, now, now + ttl_seconds))
                self._db.execute("DELETE FROM token_buckets WHERE expires < ?", (now,))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return taken

    def incr_counters(self, counts: Mapping[CounterKey, int]) -> int:
        items = [(*counter_field(key), int(n)) for key, n in counts.items() if n]
        if not items:
            return 0
        dropped = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                series: dict[str, int] = {}
                for metric, labels, n in items:
                    field = _dumps(labels)
                    if self._db.execute(
                        "UPDATE counters SET value = value + ? WHERE metric = ? AND labels = ?",
                        (n, metric, field),
                    ).rowcount:
                        continue
                    if metric not in series:
                        series[metric] = self._db.execute(
                            "SELECT COUNT(*) FROM counters WHERE metric = ?", (metric,)).fetchone()[0]
                    if series[metric] >= MAX_COUNTER_SERIES:
                        dropped += 1
                        continue
                    self._db.execute("INSERT INTO counters (metric, labels, value) VALUES (?, ?, ?)",
                                     (metric, field, n))
                    series[metric] += 1
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return dropped

    def read_counters(self) -> dict[CounterKey, int]:
        rows = self._run("SELECT metric, labels, value FROM counters")
        return {(metric, *json.loads(labels)): value for metric, labels, value in rows}

    def close(self) -> None:
        with self._lock:
            poller, self._poller = self._poller, None
        if poller is not None:
            poller.stop()
        with self._lock:
            self._db.close()


Store = SqliteStore  # the name the rest of the code has always used


def _change(kind: str, key: str) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements of one change notice: its row, and the rows too old to keep."""
    return [("INSERT INTO changes (kind, key) VALUES (?, ?)", (kind, key)),
            ("DELETE FROM changes WHERE seq <= last_insert_rowid() - ?", (CHANGES_KEPT,))]


def _index_active(db: sqlite3.Connection) -> None:
    """The `active` column and its index, on a file written by an earlier version: the column
    filled from each experiment's status, once (every process on the file may try: the first
    does it under the write lock)."""
    def has_column() -> bool:
        return any(row[1] == "active" for row in db.execute("PRAGMA table_info(experiments)"))

    if not has_column():
        db.execute("BEGIN IMMEDIATE")
        try:
            if not has_column():
                db.execute("ALTER TABLE experiments ADD COLUMN active INTEGER NOT NULL DEFAULT 0")
                for seq, doc in db.execute("SELECT seq, doc FROM experiments").fetchall():
                    if json.loads(doc).get("state", {}).get("status") in ACTIVE_STATUSES:
                        db.execute("UPDATE experiments SET active = 1 WHERE seq = ?", (seq,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
    db.execute("CREATE INDEX IF NOT EXISTS experiments_active ON experiments (seq) WHERE active")


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: autocommit, each statement is committed when it returns.
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=5000")
    return db


class _ChangePoller:
    """The thread that reads new `changes` rows for this store's subscribers, on its own
    connection (so it never waits for the store's lock)."""

    def __init__(self, path: Path, subscribers: Subscribers) -> None:
        self._db = _connect(path)
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


def _check_ttl(ttl_seconds: float) -> None:
    if not ttl_seconds > 0:
        raise ValueError(f"a TTL must be positive, not {ttl_seconds!r}")


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)
