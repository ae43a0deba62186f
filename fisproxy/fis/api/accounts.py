"""Target account configurations of a template (Create, Get, Update, Delete, List), and the
copies an experiment keeps of them (GetExperimentTargetAccountConfiguration, List...)."""

from __future__ import annotations

from fisproxy.fis.api.errors import conflict, not_found, quota
from fisproxy.fis.api.paging import page
from fisproxy.fis.api.records import Records
from fisproxy.fis.api.wire import OperationInput
from fisproxy.fis.fielderror import parse
from fisproxy.fis.inputs import (
    CreateTargetAccountConfigurationRequest,
    UpdateTargetAccountConfigurationRequest,
)
from fisproxy.fis.models import TargetAccountConfiguration
from fisproxy.fis.outputs import (
    ListTargetAccountConfigurationsResponse,
    TargetAccountConfigurationResponse,
)

MAX_TARGET_ACCOUNTS = 10


class AccountOperations:
    def __init__(self, records: Records) -> None:
        self.records = records

    def _existing(self, template_id: str, account_id: str) -> TargetAccountConfiguration:
        self.records.template(template_id)
        config = self.records.template_account(template_id, account_id)
        if config is None:
            raise not_found(f"Target account configuration {account_id} not found for template {template_id}")
        return config

    def create_target_account_configuration(
        self, inp: OperationInput, region: str
    ) -> TargetAccountConfigurationResponse:
        template_id, account_id = inp.params["experimentTemplateId"], inp.params["accountId"]
        req = parse(CreateTargetAccountConfigurationRequest, inp.body)
        records = self.records
        records.template(template_id)
        key = f"{template_id}/{account_id}/{req.client_token}"
        if req.client_token and records.replay("CreateTargetAccountConfiguration", key, req.wire()):
            if (earlier := records.template_account(template_id, account_id)) is not None:
                return TargetAccountConfigurationResponse(target_account_configuration=earlier)
        if records.template_account(template_id, account_id) is not None:
            raise conflict(f"Target account configuration {account_id} already exists for template {template_id}")
        if len(records.template_accounts(template_id)) >= MAX_TARGET_ACCOUNTS:
            raise quota(f"At most {MAX_TARGET_ACCOUNTS} target account configurations per experiment template")
        config = TargetAccountConfiguration(role_arn=req.role_arn, account_id=account_id, description=req.description)
        records.put_template_account(template_id, config)
        if req.client_token:
            records.remember("CreateTargetAccountConfiguration", key, req.wire(), account_id)
        return TargetAccountConfigurationResponse(target_account_configuration=config)

    def get_target_account_configuration(
        self, inp: OperationInput, region: str
    ) -> TargetAccountConfigurationResponse:
        config = self._existing(inp.params["experimentTemplateId"], inp.params["accountId"])
        return TargetAccountConfigurationResponse(target_account_configuration=config)

    def update_target_account_configuration(
        self, inp: OperationInput, region: str
    ) -> TargetAccountConfigurationResponse:
        template_id = inp.params["experimentTemplateId"]
        config = self._existing(template_id, inp.params["accountId"])
        req = parse(UpdateTargetAccountConfigurationRequest, inp.body)
        updated = config.model_copy(update=req.model_dump(exclude_unset=True, exclude_none=True))
        self.records.put_template_account(template_id, updated)
        return TargetAccountConfigurationResponse(target_account_configuration=updated)

    def delete_target_account_configuration(
        self, inp: OperationInput, region: str
    ) -> TargetAccountConfigurationResponse:
        template_id, account_id = inp.params["experimentTemplateId"], inp.params["accountId"]
        config = self._existing(template_id, account_id)
        self.records.delete_template_account(template_id, account_id)
        return TargetAccountConfigurationResponse(target_account_configuration=config)

    def list_target_account_configurations(
        self, inp: OperationInput, region: str
    ) -> ListTargetAccountConfigurationsResponse:
        template_id = inp.params["experimentTemplateId"]
        self.records.template(template_id)
        items, token = page(self.records.template_accounts(template_id), inp.params)
        return ListTargetAccountConfigurationsResponse(target_account_configurations=items, next_token=token)

    def get_experiment_target_account_configuration(
        self, inp: OperationInput, region: str
    ) -> TargetAccountConfigurationResponse:
        experiment_id, account_id = inp.params["experimentId"], inp.params["accountId"]
        self.records.experiment(experiment_id)
        for config in self.records.experiment_accounts(experiment_id):
            if config.account_id == account_id:
                return TargetAccountConfigurationResponse(target_account_configuration=config)
        raise not_found(f"Target account configuration {account_id} not found for experiment {experiment_id}")

    def list_experiment_target_account_configurations(
        self, inp: OperationInput, region: str
    ) -> ListTargetAccountConfigurationsResponse:
        experiment_id = inp.params["experimentId"]
        self.records.experiment(experiment_id)
        items, token = page(self.records.experiment_accounts(experiment_id), inp.params)
        return ListTargetAccountConfigurationsResponse(target_account_configurations=items, next_token=token)
