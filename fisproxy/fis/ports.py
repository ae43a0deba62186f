"""What the FIS domain needs from storage, as small protocols.

The engine, the FIS API and the experiment log are written against these, never against a
concrete store: `fisproxy/store/` provides them (SQLite embedded, Redis for a fleet). Every
method is blocking and may raise on I/O errors; callers run them off the proxy's event loop.
"""

from __future__ import annotations

from typing import Any, Protocol

from fisproxy.fis.models import Experiment, ExperimentTemplate


class DocStore(Protocol):
    """Small JSON documents by (kind, key): client tokens, tags, levers, identities..."""

    def put_doc(self, kind: str, key: str, value: dict[str, Any]) -> None: ...

    def get_doc(self, kind: str, key: str) -> dict[str, Any] | None: ...

    def list_docs(self, kind: str) -> dict[str, dict[str, Any]]: ...

    def delete_doc(self, kind: str, key: str) -> None: ...


class TemplateStore(Protocol):
    def put_template(self, t: ExperimentTemplate) -> None: ...

    def get_template(self, template_id: str) -> ExperimentTemplate | None: ...

    def delete_template(self, template_id: str) -> None: ...

    def list_templates(self) -> list[ExperimentTemplate]: ...


class ExperimentStore(Protocol):
    def put_experiment(self, e: Experiment, runtime: dict[str, Any] | None = None) -> None:
        """Insert or replace `e`; `runtime` (the engine's RunState) None keeps the stored one."""
        ...

    def get_experiment(self, experiment_id: str) -> Experiment | None: ...

    def get_runtime(self, experiment_id: str) -> dict[str, Any] | None: ...

    def list_experiments(self) -> list[Experiment]: ...


class LogStore(Protocol):
    def append_log(self, experiment_id: str, record: dict[str, Any]) -> None: ...

    def logs(self, experiment_id: str) -> list[dict[str, Any]]: ...


class FisStore(DocStore, TemplateStore, ExperimentStore, LogStore, Protocol):
    """Everything the FIS domain stores."""
