"""Leases in SQLite (`fis.ports.LeaseStore`): `leases` (name -> holder until an expiry time),
taken in one UPSERT, so atomic under SQLite's write lock across every process on the file;
times are this host's clock, which every process on the file shares."""

from __future__ import annotations

import time

from fisproxy.store.sqlite.connection import StorePart, check_ttl


class SqliteLeases(StorePart):
    def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        return self.claim_lease(name, holder, ttl_seconds) == 0.0

    def claim_lease(self, name: str, holder: str, ttl_seconds: float) -> float:
        check_ttl(ttl_seconds)
        now = time.time()
        # One statement: SQLite's write lock makes the check and the write atomic across every
        # process on the file. The WHERE lets the holder renew and anyone take an expired lease.
        with self._conn.locked() as db:
            taken = db.execute(
                "INSERT INTO leases (name, holder, expires) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires "
                "WHERE leases.holder = excluded.holder OR leases.expires <= ?",
                (name, holder, now + ttl_seconds, now),
            ).rowcount
            if taken == 1:
                return 0.0
            rows = db.execute("SELECT expires FROM leases WHERE name = ?", (name,)).fetchall()
        return max(0.001, rows[0][0] - now) if rows else 0.001

    def release_lease(self, name: str, holder: str) -> None:
        self._conn.run("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))
        # Leases of holders that died stay as expired rows: drop those an hour past expiry.
        self._conn.run("DELETE FROM leases WHERE expires < ?", (time.time() - 3600,))

    def lease_holder(self, name: str) -> str | None:
        rows = self._conn.run("SELECT holder FROM leases WHERE name = ? AND expires > ?", (name, time.time()))
        return rows[0][0] if rows else None
