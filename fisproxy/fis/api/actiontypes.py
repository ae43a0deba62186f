"""What fisproxy can do: GetAction and ListActions (the action catalogue, `fis/actions.py`),
GetTargetResourceType and ListTargetResourceTypes (what those actions target)."""

from __future__ import annotations

from fisproxy.fis import actions as action_catalog
from fisproxy.fis import ids, targets
from fisproxy.fis.api.errors import not_found
from fisproxy.fis.api.paging import page
from fisproxy.fis.api.wire import OperationInput
from fisproxy.fis.models import (
    Action,
    ActionParameter,
    ActionSummary,
    ActionTarget,
    TargetResourceType,
    TargetResourceTypeParameter,
    TargetResourceTypeSummary,
)
from fisproxy.fis.outputs import (
    GetActionResponse,
    GetTargetResourceTypeResponse,
    ListActionsResponse,
    ListTargetResourceTypesResponse,
)

# The parameters a target of each resource type takes (fisproxy's own).
_TARGET_PARAMETERS = {
    targets.ROLE: {targets.ACCESS_KEYS_PARAMETER: TargetResourceTypeParameter(
        description="fisproxy: comma-separated access key ids whose calls count as this role's.",
        required=False,
    )},
}


class ActionTypeOperations:
    def __init__(self, account_id: str) -> None:
        self.account_id = account_id

    def _summary(self, spec: action_catalog.ActionSpec, region: str) -> ActionSummary:
        return ActionSummary(
            id=spec.action_id,
            arn=ids.action_arn(region, self.account_id, spec.action_id),
            description=spec.description,
            targets={key: ActionTarget(resource_type=rt) for key, rt in spec.targets.items()},
        )

    def get_action(self, inp: OperationInput, region: str) -> GetActionResponse:
        spec = action_catalog.ACTIONS.get(inp.params["id"])
        if spec is None:
            raise not_found(f"Action {inp.params['id']} not found")
        parameters = {name: ActionParameter(description=doc.description, required=doc.required)
                      for name, doc in spec.parameters.items()}
        action = Action(**dict(self._summary(spec, region)), parameters=parameters)
        return GetActionResponse(action=action)

    def list_actions(self, inp: OperationInput, region: str) -> ListActionsResponse:
        summaries = [self._summary(spec, region) for spec in action_catalog.ACTIONS.values()]
        items, token = page(summaries, inp.params)
        return ListActionsResponse(actions=items, next_token=token)

    def get_target_resource_type(self, inp: OperationInput, region: str) -> GetTargetResourceTypeResponse:
        name = inp.params["resourceType"]
        description = action_catalog.target_resource_types().get(name)
        if description is None:
            raise not_found(f"Target resource type {name} not found")
        found = TargetResourceType(resource_type=name, description=description,
                                   parameters=_TARGET_PARAMETERS.get(name, {}))
        return GetTargetResourceTypeResponse(target_resource_type=found)

    def list_target_resource_types(self, inp: OperationInput, region: str) -> ListTargetResourceTypesResponse:
        summaries = [TargetResourceTypeSummary(resource_type=name, description=description)
                     for name, description in action_catalog.target_resource_types().items()]
        items, token = page(summaries, inp.params)
        return ListTargetResourceTypesResponse(target_resource_types=items, next_token=token)
