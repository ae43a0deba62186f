"""Templates, small JSON documents and experiment logs in SQLite: `templates` (in creation
order), `docs` (kind, key -> JSON: client tokens, the safety lever, target account
configurations, chaos config) and `logs` (one row per record). Each call is one statement."""

from __future__ import annotations

import json
from typing import Any

from fisproxy.fis.models import ExperimentTemplate
from fisproxy.store.sqlite.connection import StorePart, dumps


class SqliteDocuments(StorePart):
    # ---- templates ----

    def put_template(self, t: ExperimentTemplate) -> None:
        self._conn.run(
            "INSERT INTO templates (id, doc) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET doc = excluded.doc",
            (t.id, dumps(t.wire())),
        )

    def get_template(self, template_id: str) -> ExperimentTemplate | None:
        rows = self._conn.run("SELECT doc FROM templates WHERE id = ?", (template_id,))
        return ExperimentTemplate.model_validate_json(rows[0][0]) if rows else None

    def delete_template(self, template_id: str) -> None:
        self._conn.run("DELETE FROM templates WHERE id = ?", (template_id,))

    def list_templates(self) -> list[ExperimentTemplate]:
        rows = self._conn.run("SELECT doc FROM templates ORDER BY seq")
        return [ExperimentTemplate.model_validate_json(r[0]) for r in rows]

    # ---- small JSON documents ----

    def put_doc(self, kind: str, key: str, value: dict[str, Any]) -> None:
        self._conn.run(
            "INSERT INTO docs (kind, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT(kind, key) DO UPDATE SET value = excluded.value",
            (kind, key, dumps(value)),
        )

    def get_doc(self, kind: str, key: str) -> dict[str, Any] | None:
        rows = self._conn.run("SELECT value FROM docs WHERE kind = ? AND key = ?", (kind, key))
        return json.loads(rows[0][0]) if rows else None

    def list_docs(self, kind: str) -> dict[str, dict[str, Any]]:
        rows = self._conn.run("SELECT key, value FROM docs WHERE kind = ? ORDER BY rowid", (kind,))
        return {key: json.loads(value) for key, value in rows}

    def delete_doc(self, kind: str, key: str) -> None:
        self._conn.run("DELETE FROM docs WHERE kind = ? AND key = ?", (kind, key))

    # ---- experiment logs ----

    def append_log(self, experiment_id: str, record: dict[str, Any]) -> None:
        self._conn.run("INSERT INTO logs (experiment_id, record) VALUES (?, ?)", (experiment_id, dumps(record)))

    def logs(self, experiment_id: str) -> list[dict[str, Any]]:
        rows = self._conn.run("SELECT record FROM logs WHERE experiment_id = ? ORDER BY seq", (experiment_id,))
        return [json.loads(r[0]) for r in rows]
