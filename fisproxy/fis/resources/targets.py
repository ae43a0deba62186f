"""What a target resolved to: typed, JSON-safe, enough for the actions that use it.

`ResolvedTarget.resources` keeps, per resource, its ARN, its id in its own service (instance
id, cluster name, table name, ...) and `details`: the upstream's description of it (the item
of DescribeInstances, DescribeDBClusters, ...), which filters were applied to and actions read
(availability zone, cluster of a task, spot request of an instance). `to_json` / `from_json`
let the engine keep it with the experiment.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class TargetResource:
    arn: str
    id: str
    details: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class ResolvedTarget:
    """One experiment target after resolution and selection.

    `by_arn`: named by resourceArns (an empty result is never skipped). `parameters`: the
    target's own parameters (an ElastiCache target's availabilityZoneIdentifier, a Lambda
    target's functionQualifier), which actions read. `access_keys`: an `aws:iam:role` target's
    explicit accessKeyIds.
    """

    name: str
    resource_type: str
    resources: tuple[TargetResource, ...]
    parameters: Mapping[str, str] = field(default_factory=dict)
    by_arn: bool = False
    access_keys: tuple[str, ...] = ()

    @property
    def arns(self) -> tuple[str, ...]:
        return tuple(r.arn for r in self.resources)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(r.id for r in self.resources)

    @property
    def empty(self) -> bool:
        return not self.resources and not self.access_keys

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "resource_type": self.resource_type,
            "resources": [{"arn": r.arn, "id": r.id, "details": dict(r.details)} for r in self.resources],
            "parameters": dict(self.parameters),
            "by_arn": self.by_arn,
            "access_keys": list(self.access_keys),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ResolvedTarget:
        return cls(
            name=data["name"],
            resource_type=data["resource_type"],
            resources=tuple(TargetResource(r["arn"], r["id"], r.get("details") or {}) for r in data["resources"]),
            parameters=dict(data.get("parameters") or {}),
            by_arn=bool(data.get("by_arn")),
            access_keys=tuple(data.get("access_keys") or ()),
        )


def jsonable(value: Any) -> Any:
    """A botocore answer as plain JSON data (timestamps as ISO 8601 strings, bytes dropped)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return None
    return value
