"""The proxy registry and the shared counters in SQLite: `proxies` (heartbeats: rows expiring),
`token_buckets` (fleet rate limits) and `counters` (metric, labels -> value). Each write that
reads first is one BEGIN IMMEDIATE transaction: atomic across the processes on the file."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from fisproxy.store.base import MAX_COUNTER_SERIES, CounterKey, counter_field
from fisproxy.store.sqlite.connection import StorePart, check_ttl, dumps


class SqliteRegistry(StorePart):
    # ---- proxy registry ----

    def register_proxy(self, proxy_id: str, info: Mapping[str, Any], ttl_seconds: float) -> None:
        check_ttl(ttl_seconds)
        now = time.time()
        self._conn.run_all([
            ("INSERT INTO proxies (id, info, last_seen, expires) VALUES (?, ?, ?, ?) "
             "ON CONFLICT(id) DO UPDATE SET info = excluded.info, last_seen = excluded.last_seen, "
             "expires = excluded.expires", (proxy_id, dumps(dict(info)), now, now + ttl_seconds)),
            ("DELETE FROM proxies WHERE expires <= ?", (now,)),
        ])

    def list_proxies(self) -> list[dict[str, Any]]:
        rows = self._conn.run("SELECT id, info, last_seen FROM proxies WHERE expires > ? ORDER BY id",
                              (time.time(),))
        return [{**json.loads(info), "id": pid, "last_seen": seen} for pid, info, seen in rows]

    def count_proxies(self) -> int:
        rows = self._conn.run("SELECT COUNT(*) FROM proxies WHERE expires > ?", (time.time(),))
        return int(rows[0][0])

    # ---- shared counters ----

    def take_tokens(self, key: str, per_second: float, burst: float, want: int, ttl_seconds: float) -> int:
        now = time.time()
        with self._conn.transaction() as db:  # atomic across the processes on the file
            row = db.execute("SELECT tokens, stamp FROM token_buckets WHERE key = ?", (key,)).fetchone()
            tokens, stamp = (float(burst), now) if row is None else (float(row[0]), float(row[1]))
            tokens = min(float(burst), tokens + max(0.0, now - stamp) * per_second)
            taken = max(0, min(int(want), int(tokens)))
            db.execute(
                "INSERT INTO token_buckets (key, tokens, stamp, expires) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET tokens = excluded.tokens, stamp = excluded.stamp, "
                "expires = excluded.expires", (key, tokens - taken, now, now + ttl_seconds))
            db.execute("DELETE FROM token_buckets WHERE expires < ?", (now,))
        return taken

    def incr_counters(self, counts: Mapping[CounterKey, int]) -> int:
        items = [(*counter_field(key), int(n)) for key, n in counts.items() if n]
        if not items:
            return 0
        dropped = 0
        with self._conn.transaction() as db:
            series: dict[str, int] = {}
            for metric, labels, n in items:
                field = dumps(labels)
                if db.execute(
                    "UPDATE counters SET value = value + ? WHERE metric = ? AND labels = ?",
                    (n, metric, field),
                ).rowcount:
                    continue
                if metric not in series:
                    series[metric] = db.execute(
                        "SELECT COUNT(*) FROM counters WHERE metric = ?", (metric,)).fetchone()[0]
                if series[metric] >= MAX_COUNTER_SERIES:
                    dropped += 1
                    continue
                db.execute("INSERT INTO counters (metric, labels, value) VALUES (?, ?, ?)",
                           (metric, field, n))
                series[metric] += 1
        return dropped

    def read_counters(self) -> dict[CounterKey, int]:
        rows = self._conn.run("SELECT metric, labels, value FROM counters")
        return {(metric, *json.loads(labels)): value for metric, labels, value in rows}
