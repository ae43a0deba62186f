"""Request records in SQLite (`requests`: one row per proxied AWS request, for reports): written
in batches of about a second's worth by `requestlog.Recorder`, one transaction each, never per
request."""

from __future__ import annotations

import json

from fisproxy.requestlog import RequestRecord
from fisproxy.store.sqlite.connection import StorePart, dumps


class SqliteRequests(StorePart):
    def append_requests(self, records: list[RequestRecord]) -> None:
        """Insert `records` in one transaction (all or none)."""
        if not records:
            return
        rows = [
            (r.time, r.duration_ms, r.service, r.operation, r.region, dumps(list(r.faults)),
             r.status, r.invocation_id, r.attempt)
            for r in records
        ]
        with self._conn.transaction("BEGIN") as db:
            db.executemany(
                "INSERT INTO requests (time, duration_ms, service, operation, region, faults, "
                "status, invocation_id, attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def requests_between(self, start: float, end: float) -> list[RequestRecord]:
        """Records with `start <= time <= end`, oldest first."""
        rows = self._conn.run(
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
            with self._conn.locked() as db:
                n = db.execute(
                    "DELETE FROM requests WHERE rowid IN "
                    "(SELECT rowid FROM requests WHERE time < ? LIMIT ?)", (t, batch),
                ).rowcount
            deleted += n
            if n < batch:
                return deleted
