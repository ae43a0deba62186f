"""What FIS does to AWS resources, performed on the upstream with the experiment role.

- `resolve.resolve_target`: a template target resolved on the upstream (`listers.py` per type),
  into a `targets.ResolvedTarget`.
- `base`: the `ResourceAction` interface, `ActionContext`, `perform`; one module per service
  family implements the actions (`ec2`, `rds`, `ssm`, ...) and registers them by action id.
- `scoped`: pure helpers for the resource-scoped faults the proxy applies (Lambda, Kinesis).
"""

from fisproxy.fis.resources import (  # noqa: F401 - importing registers the actions
    arc,
    cloudwatch,
    directconnect,
    dynamodb,
    ec2,
    ecs,
    eks,
    elasticache,
    network,
    rds,
    s3,
    ssm,
)
from fisproxy.fis.resources.base import (
    IMPLEMENTATIONS,
    ActionContext,
    RecoverableAction,
    ResourceAction,
    WaitingAction,
    implementation,
    perform,
)
from fisproxy.fis.resources.resolve import resolve_target
from fisproxy.fis.resources.targets import ResolvedTarget, TargetResource

__all__ = [
    "IMPLEMENTATIONS",
    "ActionContext",
    "ResolvedTarget",
    "ResourceAction",
    "TargetResource",
    "RecoverableAction",
    "WaitingAction",
    "implementation",
    "perform",
    "resolve_target",
]
