"""The SQLite store's file format: its tables, the triggers that move the data version, and the
one upgrade of a file an earlier version wrote (the `active` column).

Tables: `templates` and `experiments` (id -> model JSON, in creation order; experiments also
keep an engine-private `runtime` JSON and whether they are `active`, with a partial index of
those, so that reading what runs does not grow with history), `docs` (kind, key -> JSON: client
tokens, the safety lever, target account configurations, chaos config), `logs` (experiment log
records), `requests` (one row per proxied AWS request, for reports), `leases` (name -> holder
until an expiry time), `changes` (change notices, a row each with a growing `seq`), `proxies`
(the registry, rows expiring), `token_buckets` (fleet rate limits), `counters` (metric, labels
-> value) and `meta`, holding the data version: a number that triggers on `experiments` and
`docs` move at every write.
"""

from __future__ import annotations

import json
import sqlite3

from fisproxy.fis.models import ACTIVE_STATUSES

SCHEMA = """
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


def create(db: sqlite3.Connection) -> None:
    """The tables of a new file, or those a file lacks; an older file upgraded."""
    db.executescript(SCHEMA)
    _index_active(db)


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
