"""Experiments in SQLite: `experiments` (id -> model JSON and the engine's `RunState`, in
creation order, with whether each is `active`: a partial index keeps reading what runs
independent of history) and the data version in `meta` (moved by triggers at every write of an
experiment or a document). Each save is announced by its change row, in the same transaction."""

from __future__ import annotations

from typing import Any

from fisproxy.fis.models import ACTIVE_STATUSES, Experiment
from fisproxy.fis.ports import EXPERIMENT_CHANGES
from fisproxy.fis.runstate import RunState
from fisproxy.store.sqlite.changes import change_rows
from fisproxy.store.sqlite.connection import StorePart, dumps


class SqliteExperiments(StorePart):
    def put_experiment(self, e: Experiment, runtime: RunState | None = None) -> None:
        """Insert or replace `e`; `runtime` None keeps the stored runtime. Its change row is
        written in the same transaction."""
        doc, active = dumps(e.wire()), int(e.state.status in ACTIVE_STATUSES)
        upsert: tuple[str, tuple[Any, ...]]
        if runtime is None:
            upsert = ("INSERT INTO experiments (id, doc, active) VALUES (?, ?, ?) "
                      "ON CONFLICT(id) DO UPDATE SET doc = excluded.doc, active = excluded.active",
                      (e.id, doc, active))
        else:
            upsert = ("INSERT INTO experiments (id, doc, runtime, active) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT(id) DO UPDATE SET doc = excluded.doc, runtime = excluded.runtime, "
                      "active = excluded.active", (e.id, doc, runtime.model_dump_json(), active))
        self._conn.run_all([upsert, *change_rows(EXPERIMENT_CHANGES, e.id)])

    def get_experiment(self, experiment_id: str) -> Experiment | None:
        rows = self._conn.run("SELECT doc FROM experiments WHERE id = ?", (experiment_id,))
        return Experiment.model_validate_json(rows[0][0]) if rows else None

    def get_runtime(self, experiment_id: str) -> RunState | None:
        rows = self._conn.run("SELECT runtime FROM experiments WHERE id = ?", (experiment_id,))
        return RunState.model_validate_json(rows[0][0]) if rows and rows[0][0] is not None else None

    def list_experiments(self) -> list[Experiment]:
        rows = self._conn.run("SELECT doc FROM experiments ORDER BY seq")
        return [Experiment.model_validate_json(r[0]) for r in rows]

    def list_active_experiments(self) -> list[Experiment]:
        rows = self._conn.run("SELECT doc FROM experiments WHERE active ORDER BY seq")
        return [Experiment.model_validate_json(r[0]) for r in rows]

    def data_version(self) -> str | None:
        rows = self._conn.run("SELECT value FROM meta WHERE name = 'data_version'")
        return str(rows[0][0]) if rows else None
