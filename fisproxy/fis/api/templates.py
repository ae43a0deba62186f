"""Experiment templates: CreateExperimentTemplate, Get, Update, Delete and List, and the same
writes for templates files (`templates_file.py`: templates as code)."""

from __future__ import annotations

from fisproxy.fis import ids
from fisproxy.fis.api.errors import denied, quota
from fisproxy.fis.api.paging import page
from fisproxy.fis.api.records import Records
from fisproxy.fis.api.wire import OperationInput
from fisproxy.fis.fielderror import parse
from fisproxy.fis.inputs import CreateExperimentTemplateRequest, UpdateExperimentTemplateRequest
from fisproxy.fis.models import (
    ExperimentTemplate,
    ExperimentTemplateExperimentOptions,
    ExperimentTemplateSummary,
)
from fisproxy.fis.outputs import ExperimentTemplateResponse, ListExperimentTemplatesResponse
from fisproxy.fis.passrole import RolePolicy
from fisproxy.fis.templaterules import validate_template

MAX_TEMPLATES = 500


def _options(req: CreateExperimentTemplateRequest) -> ExperimentTemplateExperimentOptions:
    """The request's experiment options with FIS's defaults filled in."""
    options = req.experiment_options or ExperimentTemplateExperimentOptions()
    return ExperimentTemplateExperimentOptions(
        account_targeting=options.account_targeting or "single-account",
        empty_target_resolution_mode=options.empty_target_resolution_mode or "fail",
    )


class TemplateOperations:
    def __init__(self, records: Records, *, max_templates: int = MAX_TEMPLATES,
                 roles: RolePolicy | None = None) -> None:
        self.records = records
        self.max_templates = max_templates
        self.roles = roles or RolePolicy()

    # ---- the writes (the API's and templates files') ----

    def create(self, req: CreateExperimentTemplateRequest, region: str) -> ExperimentTemplate:
        store = self.records.store
        if req.client_token:
            found = self.records.replay("CreateExperimentTemplate", req.client_token, req.wire())
            if found and (t := store.get_template(found)):
                return t
        if len(store.list_templates()) >= self.max_templates:
            raise quota(f"You have reached the quota of {self.max_templates} experiment templates")
        template_id = ids.new_template_id()
        created = ids.now()
        template = ExperimentTemplate(
            id=template_id,
            arn=ids.template_arn(region, self.records.account_id, template_id),
            description=req.description,
            targets=req.targets,
            actions=req.actions,
            stop_conditions=req.stop_conditions,
            creation_time=created,
            last_update_time=created,
            role_arn=req.role_arn,
            tags=req.tags,
            log_configuration=req.log_configuration,
            experiment_options=_options(req),
            experiment_report_configuration=req.experiment_report_configuration,
        )
        store.put_template(template)
        if req.client_token:
            self.records.remember("CreateExperimentTemplate", req.client_token, req.wire(), template_id)
        return template

    def replace(self, template_id: str, req: CreateExperimentTemplateRequest) -> ExperimentTemplate:
        """Make template `template_id` exactly `req` (templates as code: the file wins), keeping
        its id, ARN and creation time. Unchanged content is not rewritten."""
        old = self.records.template(template_id)
        new = old.model_copy(update={
            "description": req.description,
            "targets": req.targets,
            "actions": req.actions,
            "stop_conditions": req.stop_conditions,
            "role_arn": req.role_arn,
            "tags": req.tags,
            "log_configuration": req.log_configuration,
            "experiment_options": _options(req),
            "experiment_report_configuration": req.experiment_report_configuration,
        })
        if new.wire() == old.wire():
            return old
        new.last_update_time = ids.now()
        self.records.store.put_template(new)
        return new

    def update(self, template_id: str, req: UpdateExperimentTemplateRequest) -> ExperimentTemplate:
        updated = req.apply_to(self.records.template(template_id))
        validate_template(updated)
        if (refusal := self.roles.refusal(updated.role_arn, updated.actions)) is not None:
            raise denied(refusal)
        updated.last_update_time = ids.now()
        self.records.store.put_template(updated)
        return updated

    # ---- the operations ----

    def create_experiment_template(self, inp: OperationInput, region: str) -> ExperimentTemplateResponse:
        req = parse(CreateExperimentTemplateRequest, inp.body)
        if (refusal := self.roles.refusal(req.role_arn, req.actions)) is not None:
            raise denied(refusal)  # a caller's template; templates files are the operator's
        return ExperimentTemplateResponse(experiment_template=self.create(req, region))

    def get_experiment_template(self, inp: OperationInput, region: str) -> ExperimentTemplateResponse:
        return ExperimentTemplateResponse(experiment_template=self.records.template(inp.params["id"]))

    def update_experiment_template(self, inp: OperationInput, region: str) -> ExperimentTemplateResponse:
        req = parse(UpdateExperimentTemplateRequest, inp.body)
        return ExperimentTemplateResponse(experiment_template=self.update(inp.params["id"], req))

    def delete_experiment_template(self, inp: OperationInput, region: str) -> ExperimentTemplateResponse:
        t = self.records.template(inp.params["id"])
        self.records.delete_template(t.id)
        return ExperimentTemplateResponse(experiment_template=t)

    def list_experiment_templates(self, inp: OperationInput, region: str) -> ListExperimentTemplatesResponse:
        summaries = [ExperimentTemplateSummary.of(t) for t in self.records.store.list_templates()]
        items, token = page(summaries, inp.params)
        return ListExperimentTemplatesResponse(experiment_templates=items, next_token=token)
