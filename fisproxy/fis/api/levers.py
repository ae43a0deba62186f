"""The safety lever, a persisted kill switch: GetSafetyLever, UpdateSafetyLeverState. Engaged,
it cancels every running experiment and refuses new ones (StartExperiment: ConflictException)
until it is disengaged."""

from __future__ import annotations

from fisproxy.fis.api.errors import conflict
from fisproxy.fis.api.experiments import ExperimentRunner
from fisproxy.fis.api.records import Records
from fisproxy.fis.api.wire import OperationInput
from fisproxy.fis.fielderror import parse
from fisproxy.fis.inputs import UpdateSafetyLeverStateRequest
from fisproxy.fis.models import SafetyLeverState
from fisproxy.fis.outputs import SafetyLeverResponse


class LeverOperations:
    def __init__(self, records: Records, engine: ExperimentRunner) -> None:
        self.records = records
        self.engine = engine

    def get_safety_lever(self, inp: OperationInput, region: str) -> SafetyLeverResponse:
        return SafetyLeverResponse(safety_lever=self.records.lever(inp.params["id"], region))

    def update_safety_lever_state(self, inp: OperationInput, region: str) -> SafetyLeverResponse:
        lever = self.records.lever(inp.params["id"], region)
        req = parse(UpdateSafetyLeverStateRequest, inp.body)
        if lever.state.status == req.state.status:
            raise conflict(f"Safety lever {lever.id} is already {lever.state.status}")
        lever.state = SafetyLeverState(status=req.state.status, reason=req.state.reason)
        # Persist first: a restart while cancelling must not forget the lever was engaged.
        self.records.put_lever_state(lever.id, lever.state)
        if req.state.status == "engaged":
            self.engine.cancel_all(req.state.reason or "Safety lever engaged")
        return SafetyLeverResponse(safety_lever=lever)
