"""Experiments: StartExperiment, GetExperiment, StopExperiment, ListExperiments and
ListExperimentResolvedTargets, over the engine that runs them."""

from __future__ import annotations

from typing import Protocol

from fisproxy.fis.api.errors import conflict, denied, not_found, quota
from fisproxy.fis.api.paging import page
from fisproxy.fis.api.records import Records
from fisproxy.fis.api.wire import OperationInput
from fisproxy.fis.fielderror import parse
from fisproxy.fis.inputs import StartExperimentRequest
from fisproxy.fis.models import Experiment, ExperimentSummary, ExperimentTemplate, ResolvedTarget
from fisproxy.fis.outputs import (
    ExperimentResponse,
    ListExperimentResolvedTargetsResponse,
    ListExperimentsResponse,
)
from fisproxy.fis.passrole import RolePolicy

MAX_ACTIVE_EXPERIMENTS = 5  # FIS's default quota; adjustable, as AWS's is on request


class ExperimentRunner(Protocol):
    """What the API needs from the experiment engine (`fis/engine.py`)."""

    def start_experiment(
        self, template: ExperimentTemplate, *, region: str, tags: dict[str, str], actions_mode: str
    ) -> Experiment:
        """Persist a new experiment and return it, `initiating`."""
        ...

    def stop_experiment(self, experiment_id: str) -> Experiment:
        """Return the experiment `stopping` (or as it is, if already terminal)."""
        ...

    def cancel_all(self, reason: str) -> None: ...

    def active_count(self) -> int: ...

    def resolved_targets(self, experiment_id: str) -> list[ResolvedTarget]: ...


class ExperimentOperations:
    def __init__(self, records: Records, engine: ExperimentRunner, *,
                 max_active_experiments: int = MAX_ACTIVE_EXPERIMENTS, roles: RolePolicy | None = None) -> None:
        self.records = records
        self.engine = engine
        self.max_active_experiments = max_active_experiments
        self.roles = roles or RolePolicy()

    def start_experiment(self, inp: OperationInput, region: str) -> ExperimentResponse:
        req = parse(StartExperimentRequest, inp.body)
        records = self.records
        if req.client_token:
            found = records.replay("StartExperiment", req.client_token, req.wire())
            if found and records.store.get_experiment(found):
                return ExperimentResponse(experiment=records.experiment(found))
        template = records.template(req.experiment_template_id)
        lever = records.lever("default", region)
        if lever.state.status != "disengaged":
            raise conflict(f"Safety lever {lever.id} is {lever.state.status}: experiments cannot start "
                           f"({lever.state.reason or 'no reason given'})")
        if self.engine.active_count() >= self.max_active_experiments:
            raise quota(f"You have reached the quota of {self.max_active_experiments} active experiments")
        mode = (req.experiment_options.actions_mode if req.experiment_options else None) or "run-all"
        refusal = self.roles.refusal(template.role_arn, template.actions, run_actions=mode != "skip-all")
        if refusal is not None:
            raise denied(refusal)
        experiment = self.engine.start_experiment(template, region=region, tags=dict(req.tags), actions_mode=mode)
        records.put_experiment_accounts(experiment.id, records.template_accounts(template.id))
        if req.client_token:
            records.remember("StartExperiment", req.client_token, req.wire(), experiment.id)
        return ExperimentResponse(experiment=records.with_tags(experiment))

    def get_experiment(self, inp: OperationInput, region: str) -> ExperimentResponse:
        return ExperimentResponse(experiment=self.records.experiment(inp.params["id"]))

    def stop_experiment(self, inp: OperationInput, region: str) -> ExperimentResponse:
        experiment = self.records.experiment(inp.params["id"])
        return ExperimentResponse(experiment=self.records.with_tags(self.engine.stop_experiment(experiment.id)))

    def list_experiments(self, inp: OperationInput, region: str) -> ListExperimentsResponse:
        template_id = inp.params.get("experimentTemplateId")
        summaries = [
            ExperimentSummary.of(self.records.with_tags(e))
            for e in self.records.store.list_experiments()
            if template_id is None or e.experiment_template_id == template_id
        ]
        items, token = page(summaries, inp.params)
        return ListExperimentsResponse(experiments=items, next_token=token)

    def list_experiment_resolved_targets(
        self, inp: OperationInput, region: str
    ) -> ListExperimentResolvedTargetsResponse:
        experiment = self.records.experiment(inp.params["experimentId"])
        name = inp.params.get("targetName")
        if name is not None and name not in experiment.targets:
            raise not_found(f"Target {name} not found in experiment {experiment.id}")
        resolved = [t for t in self.engine.resolved_targets(experiment.id) if name is None or t.target_name == name]
        items, token = page(resolved, inp.params)
        return ListExperimentResolvedTargetsResponse(resolved_targets=items, next_token=token)
