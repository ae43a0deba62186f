"""Experiment targets, resolved once when an experiment starts (fis-spec 2.3).

A target names resources by ARN (`resourceArns`) or by `resourceTags` / `filters`, then keeps
`selectionMode` of them: `ALL`, `COUNT(n)` (n at random) or `PERCENT(n)` (rounded down).
Offline, only ARNs can be resolved; tags and filters on `aws:iam:role` need a `RoleLookup`
(the upstream's IAM ListRoles, see `iam_role_lookup`). An `aws:iam:role` target may also map
access keys to itself explicitly: `parameters: {"accessKeyIds": "AKIA1,AKIA2"}`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

ROLE = "aws:iam:role"
ACCESS_KEYS_PARAMETER = "accessKeyIds"

_SELECTION = re.compile(r"^(ALL|COUNT|PERCENT)(?:\((\d+)\))?$")

# A role as ListRoles describes it, plus its tags as a plain dict under "Tags".
RoleInfo = Mapping[str, Any]
RoleLookup = Callable[[], Sequence[RoleInfo]]
T = TypeVar("T")


class TargetError(Exception):
    """A target that cannot be resolved; `reason` is shown as the experiment's state reason."""

    def __init__(self, target_name: str, reason: str, code: str = "InvalidTarget") -> None:
        super().__init__(reason)
        self.target_name = target_name
        self.reason = reason
        self.code = code


@dataclass(frozen=True, slots=True)
class Resolution:
    """What one target resolved to. `by_arn`: named by resourceArns (empty is never skipped)."""

    name: str
    resource_type: str
    arns: tuple[str, ...]
    access_keys: tuple[str, ...] = ()
    by_arn: bool = False

    @property
    def empty(self) -> bool:
        return not self.arns and not self.access_keys


def parse_selection_mode(mode: str | None) -> tuple[str, int | None]:
    """`ALL` -> ("ALL", None), `COUNT(3)` -> ("COUNT", 3); ValueError otherwise."""
    m = _SELECTION.match((mode or "ALL").strip())
    if not m or (m.group(1) == "ALL") != (m.group(2) is None):
        raise ValueError(f"Invalid selectionMode {mode!r}: expected ALL, COUNT(n) or PERCENT(n).")
    n = None if m.group(2) is None else int(m.group(2))
    if m.group(1) == "PERCENT" and n is not None and not 0 < n <= 100:
        raise ValueError(f"Invalid selectionMode {mode!r}: PERCENT takes 1-100.")
    return m.group(1), n


def select(resources: Sequence[T], mode: str | None, rng: random.Random) -> tuple[T, ...]:
    """Apply a selection mode; random choices come from `rng`, order stays as given."""
    kind, n = parse_selection_mode(mode)
    if kind == "ALL" or n is None:
        return tuple(resources)
    k = n if kind == "COUNT" else len(resources) * n // 100
    k = min(k, len(resources))
    chosen = sorted(rng.sample(range(len(resources)), k))
    return tuple(resources[i] for i in chosen)


def access_key_ids(parameters: Mapping[str, str] | None) -> tuple[str, ...]:
    """The explicit `accessKeyIds` of a role target (comma and/or space separated)."""
    raw = (parameters or {}).get(ACCESS_KEYS_PARAMETER, "")
    return tuple(k for k in re.split(r"[\s,]+", raw) if k)


def _path_values(obj: Any, path: Sequence[str]) -> Iterable[Any]:
    # A filter path walks Pascal-case keys; lists fan out (`Groups.GroupId`).
    if isinstance(obj, list):
        for item in obj:
            yield from _path_values(item, path)
        return
    if not path:
        yield obj
        return
    if isinstance(obj, Mapping) and path[0] in obj:
        yield from _path_values(obj[path[0]], path[1:])


def matches(role: RoleInfo, tags: Mapping[str, str], filters: Sequence[Any]) -> bool:
    """All tags equal (AND) and every filter has one of its values (AND of ORs)."""
    role_tags = role.get("Tags") or {}
    if any(role_tags.get(k) != v for k, v in tags.items()):
        return False
    for f in filters:
        path, values = _filter_fields(f)
        found = {str(v) for v in _path_values(role, path.split("."))}
        if not found.intersection(values):
            return False
    return True


def _filter_fields(f: Any) -> tuple[str, list[str]]:
    if isinstance(f, Mapping):
        return f["path"], list(f.get("values") or [])
    return f.path, list(f.values or [])


def resolve(
    name: str, target: Any, rng: random.Random, lookup: RoleLookup | None = None
) -> Resolution:
    """Resolve one experiment target (an `ExperimentTarget`); TargetError when impossible."""
    resource_type = target.resource_type
    arns = list(target.resource_arns or [])
    tags = dict(target.resource_tags or {})
    filters = list(target.filters or [])
    keys = access_key_ids(target.parameters) if resource_type == ROLE else ()
    try:
        parse_selection_mode(target.selection_mode)
    except ValueError as e:
        raise TargetError(name, str(e), "ConfigurationFailure") from e
    if arns and (tags or filters):
        raise TargetError(
            name, f'Target "{name}" cannot combine resourceArns with resourceTags or filters.',
            "ConfigurationFailure",
        )
    if tags or filters:
        if resource_type != ROLE or lookup is None:
            raise TargetError(
                name,
                f'Target "{name}" ({resource_type}) selects resources by tags or filters, which '
                "fisproxy cannot resolve offline: list them in resourceArns"
                + (" (or run with --aws-endpoint to resolve roles through IAM)."
                   if resource_type == ROLE else "."),
            )
        try:
            roles = lookup()
        except Exception as e:  # any upstream failure is this target's failure
            raise TargetError(
                name, f'Target "{name}": listing IAM roles failed: {e}', "DependentServiceFailure"
            ) from e
        arns = [r["Arn"] for r in roles if matches(r, tags, filters)]
    return Resolution(
        name=name,
        resource_type=resource_type,
        arns=select(arns, target.selection_mode, rng),
        access_keys=keys,
        by_arn=bool(target.resource_arns),
    )


def iam_role_lookup(endpoint: str | None) -> RoleLookup:
    """A RoleLookup that pages through the upstream's IAM ListRoles (+ ListRoleTags). Blocking."""

    def lookup() -> list[dict[str, Any]]:
        from fisproxy.fis.upstream import client

        iam = client("iam", "us-east-1", endpoint)
        roles: list[dict[str, Any]] = []
        for page in iam.get_paginator("list_roles").paginate():
            for role in page["Roles"]:
                tags = iam.list_role_tags(RoleName=role["RoleName"]).get("Tags", [])
                roles.append({**role, "Tags": {t["Key"]: t["Value"] for t in tags}})
        return roles

    return lookup
