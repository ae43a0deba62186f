"""What the FIS API keeps in the store beside templates and experiments, and its lookups.

Templates and experiments are the store's own records (experiments belong to the engine, which
persists every change). The rest are documents by kind:

| kind | key | holds |
|---|---|---|
| `experiment-tags` | experiment id | tags added later (kept apart, so the engine's writes of the experiment and the API's never overwrite each other) |
| `target-account/<template id>` | account id | a TargetAccountConfiguration |
| `experiment-target-accounts` | experiment id | the template's configurations when the experiment started |
| `safety-lever` | lever id | its SafetyLeverState (absent: disengaged) |
| `client-token` | `<operation>/<token>` | the id an idempotent call created, and a fingerprint of its request |
| `experiment-report` | experiment id | the state of its FIS report (`fis/reportstate.py`) |
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from fisproxy.fis import ids, reportstate
from fisproxy.fis.api.errors import conflict, not_found
from fisproxy.fis.models import (
    Experiment,
    ExperimentTemplate,
    SafetyLever,
    SafetyLeverState,
    TargetAccountConfiguration,
)
from fisproxy.fis.ports import FisStore

SAFETY_LEVER_IDS = ("default",)

CLIENT_TOKENS = "client-token"
SAFETY_LEVERS = "safety-lever"
EXPERIMENT_TAGS = "experiment-tags"
EXPERIMENT_ACCOUNTS = "experiment-target-accounts"


def _template_accounts(template_id: str) -> str:
    return f"target-account/{template_id}"


class Records:
    """The API's reads and writes of the store. Lookups raise ResourceNotFoundException."""

    def __init__(self, store: FisStore, account_id: str) -> None:
        self.store = store
        self.account_id = account_id

    # ---- templates and experiments ----

    def template(self, template_id: str) -> ExperimentTemplate:
        t = self.store.get_template(template_id)
        if t is None:
            raise not_found(f"Experiment template {template_id} not found")
        return t

    def delete_template(self, template_id: str) -> None:
        """The template and its target account configurations."""
        self.store.delete_template(template_id)
        kind = _template_accounts(template_id)
        for account in self.store.list_docs(kind):
            self.store.delete_doc(kind, account)

    def experiment(self, experiment_id: str) -> Experiment:
        e = self.store.get_experiment(experiment_id)
        if e is None:
            raise not_found(f"Experiment {experiment_id} not found")
        return self.with_tags(e)

    def with_tags(self, e: Experiment) -> Experiment:
        """`e` with the tags added to it through the API since it started, and the state of
        its report (`fis/reportstate.py`)."""
        doc = self.store.get_doc(EXPERIMENT_TAGS, e.id)
        if doc is not None:
            e.tags = dict(doc["tags"])
        e.experiment_report = reportstate.experiment_report(self.store, e)
        return e

    def put_experiment_tags(self, experiment_id: str, tags: Mapping[str, str]) -> None:
        self.store.put_doc(EXPERIMENT_TAGS, experiment_id, {"tags": dict(tags)})

    # ---- target account configurations ----

    def template_accounts(self, template_id: str) -> list[TargetAccountConfiguration]:
        docs = self.store.list_docs(_template_accounts(template_id))
        return [TargetAccountConfiguration.model_validate(doc) for doc in docs.values()]

    def template_account(self, template_id: str, account_id: str) -> TargetAccountConfiguration | None:
        doc = self.store.get_doc(_template_accounts(template_id), account_id)
        return TargetAccountConfiguration.model_validate(doc) if doc is not None else None

    def put_template_account(self, template_id: str, config: TargetAccountConfiguration) -> None:
        self.store.put_doc(_template_accounts(template_id), config.account_id, config.wire())
        self._count_accounts(template_id)

    def delete_template_account(self, template_id: str, account_id: str) -> None:
        self.store.delete_doc(_template_accounts(template_id), account_id)
        self._count_accounts(template_id)

    def _count_accounts(self, template_id: str) -> None:
        t = self.template(template_id)
        count = len(self.store.list_docs(_template_accounts(template_id)))
        if t.target_account_configurations_count != count:
            t.target_account_configurations_count = count
            self.store.put_template(t)

    def experiment_accounts(self, experiment_id: str) -> list[TargetAccountConfiguration]:
        doc = self.store.get_doc(EXPERIMENT_ACCOUNTS, experiment_id)
        return [TargetAccountConfiguration.model_validate(a) for a in doc["accounts"]] if doc else []

    def put_experiment_accounts(self, experiment_id: str, accounts: Sequence[TargetAccountConfiguration]) -> None:
        self.store.put_doc(EXPERIMENT_ACCOUNTS, experiment_id, {"accounts": [a.wire() for a in accounts]})

    # ---- safety levers: a persisted kill switch ----

    def lever(self, lever_id: str, region: str) -> SafetyLever:
        if lever_id not in SAFETY_LEVER_IDS:
            raise not_found(f"Safety lever {lever_id} not found (valid: {', '.join(SAFETY_LEVER_IDS)})")
        doc = self.store.get_doc(SAFETY_LEVERS, lever_id)
        state = SafetyLeverState.model_validate(doc) if doc else SafetyLeverState(status="disengaged")
        return SafetyLever(id=lever_id, arn=ids.safety_lever_arn(region, self.account_id, lever_id), state=state)

    def put_lever_state(self, lever_id: str, state: SafetyLeverState) -> None:
        self.store.put_doc(SAFETY_LEVERS, lever_id, state.wire())

    # ---- clientToken idempotency ----

    def replay(self, operation: str, token: str, request: Mapping[str, Any]) -> str | None:
        """The id created by an earlier call of `operation` with `token`, or None.
        ConflictException if the token was used with different parameters."""
        doc = self.store.get_doc(CLIENT_TOKENS, f"{operation}/{token}")
        if doc is None:
            return None
        if doc["fingerprint"] != _fingerprint(request):
            raise conflict(f"clientToken {token} was already used with different parameters")
        return str(doc["id"])

    def remember(self, operation: str, token: str, request: Mapping[str, Any], resource_id: str) -> None:
        self.store.put_doc(CLIENT_TOKENS, f"{operation}/{token}",
                           {"id": resource_id, "fingerprint": _fingerprint(request)})


def _fingerprint(data: Mapping[str, Any]) -> str:
    body = {k: v for k, v in data.items() if k != "clientToken"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
