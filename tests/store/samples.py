"""Sample models and request records the store tests write and read back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fisproxy.fis.models import (
    Experiment,
    ExperimentAction,
    ExperimentActionState,
    ExperimentState,
    ExperimentTemplate,
)
from fisproxy.requestlog import RequestRecord

T = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
T0 = 1_700_000_000.0


def make_template(template_id: str, description: str = "d") -> ExperimentTemplate:
    return ExperimentTemplate.model_validate({
        "id": template_id, "arn": f"arn:aws:fis:us-east-1:123456789012:experiment-template/{template_id}",
        "description": description, "roleArn": "arn:aws:iam::123456789012:role/fis",
        "targets": {"r": {"resourceType": "aws:iam:role", "resourceArns": ["arn:aws:iam::123456789012:role/app"],
                          "selectionMode": "COUNT(1)"}},
        "actions": {"w": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1M"}}},
        "stopConditions": [{"source": "none"}], "creationTime": T, "lastUpdateTime": T, "tags": {"Name": "x"},
    })


def make_experiment(experiment_id: str, status: str = "running") -> Experiment:
    return Experiment(
        id=experiment_id, experiment_template_id="EXT1",
        state=ExperimentState(status=status, reason="r"),  # type: ignore[arg-type]
        actions={"w": ExperimentAction(action_id="aws:fis:wait", parameters={"duration": "PT1M"},
                                       state=ExperimentActionState(status="running"), start_time=T)},
        creation_time=T, start_time=T,
    )


def rec(t: float = T0, **kw: Any) -> RequestRecord:
    fields: dict[str, Any] = {
        "time": t, "duration_ms": 12.5, "service": "dynamodb", "operation": "PutItem",
        "region": "us-east-1", "faults": (), "status": 200, "invocation_id": None, "attempt": None,
    }
    fields.update(kw)
    return RequestRecord(**fields)
