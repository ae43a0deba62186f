"""Target resolution on the upstream, as FIS does it at experiment start
(https://docs.aws.amazon.com/fis/latest/userguide/targets.html):

1. list the resources of the target's type with the upstream's own API (`listers.py`), with the
   experiment role's credentials, narrowed by the type's parameters (an ECS target's cluster and
   service, an RDS target's availabilityZoneIdentifiers, ...);
2. keep those named by `resourceArns` (each must exist: a missing one fails the target), or
   those carrying every `resourceTags` pair and matching every filter: a filter's path walks the
   resource's description (elements in Pascal case, lists fan out), any of its values matches;
3. apply `selectionMode` (ALL, COUNT(n), PERCENT(n) rounded down) with the given random
   generator, over the resources in ARN order so a seed gives the same choice every time.

An `aws:iam:role` target given by ARN is taken as is (faults apply to calls signed by the role,
which may live in another account); given by tags or filters it is listed with IAM ListRoles.
Failures are `Failure`s located at the target, whose reason names the target and carries the upstream's message.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fisproxy.fis.failure import Failure
from fisproxy.fis.resources.listers import TYPES, Found, Lookup, TypeSpec, Unlistable
from fisproxy.fis.resources.targets import ResolvedTarget, TargetResource
from fisproxy.fis.targets import ROLE, access_key_ids, parse_selection_mode, select
from fisproxy.fis.upstream import UPSTREAM_ERRORS, describe_error, error_code, lacks_api


def resolve_target(
    name: str, target: Any, clients: Any, region: str, rng: random.Random
) -> ResolvedTarget:
    """Resolve one experiment target (an `ExperimentTarget` or anything with its attributes)
    with the experiment role's `clients` (`RoleSession`) in `region`; Failure (at `name`) on failure.
    An empty result is returned as such: the engine decides (emptyTargetResolutionMode)."""
    resource_type = target.resource_type
    arns = list(target.resource_arns or [])
    tags = dict(target.resource_tags or {})
    filters = [_filter_fields(f) for f in (target.filters or [])]
    parameters = dict(target.parameters or {})
    try:
        parse_selection_mode(target.selection_mode)
    except ValueError as e:
        raise Failure(str(e), "ConfigurationFailure", name) from e
    if arns and (tags or filters):
        raise Failure(f'Target "{name}" cannot combine resourceArns with resourceTags or filters.',
                      "ConfigurationFailure", name)
    keys = access_key_ids(parameters) if resource_type == ROLE else ()
    if resource_type == ROLE and not tags and not filters:
        found = [TargetResource(a, a.rsplit("/", 1)[-1]) for a in arns]
    else:
        found = _find(name, resource_type, Lookup(clients, region, tuple(arns), tags, parameters), filters)
    chosen = select(sorted(found, key=lambda r: r.arn), target.selection_mode, rng)
    return ResolvedTarget(
        name=name,
        resource_type=resource_type,
        resources=tuple(chosen),
        parameters=parameters,
        by_arn=bool(arns),
        access_keys=keys,
    )


def _find(
    name: str, resource_type: str, lookup: Lookup, filters: Sequence[tuple[str, list[str]]]
) -> list[TargetResource]:
    spec = TYPES.get(resource_type)
    if spec is None:
        raise Failure(f'Target "{name}": fisproxy cannot list resources of type {resource_type}.',
                      "ConfigurationFailure", name)
    listed = _listed(name, spec, lookup)
    if lookup.arns:
        by_arn = {f.arn: f for f in listed}
        missing = [a for a in lookup.arns if a not in by_arn]
        if missing:
            raise Failure(f'Target "{name}": {", ".join(missing)} not found on the upstream '
                          f"({spec.api} in {lookup.region}).", "InvalidTarget", name)
        listed = [by_arn[a] for a in dict.fromkeys(lookup.arns)]
    out = []
    for f in listed:
        if lookup.tags and not _has_tags(_tags_of(name, spec, lookup, f), lookup.tags):
            continue
        if not all(_matches(f.details, path, values) for path, values in filters):
            continue
        out.append(TargetResource(f.arn, f.id, f.details))
    return out


def _listed(name: str, spec: TypeSpec, lookup: Lookup) -> list[Found]:
    try:
        return list(spec.list(lookup))
    except Unlistable as e:
        raise Failure(f'Target "{name}": {e.reason}.', e.code, name) from e
    except UPSTREAM_ERRORS as e:
        if lacks_api(e):
            raise Failure(f'Target "{name}": the upstream does not implement {spec.api}: it answered '
                          f"{describe_error(e)}", "DependentServiceFailure", name, skippable=True) from e
        raise Failure(f'Target "{name}": {spec.api} failed on the upstream: {describe_error(e)}',
                      error_code(e), name) from e


def _tags_of(name: str, spec: TypeSpec, lookup: Lookup, found: Found) -> Mapping[str, str]:
    if found.tags is not None or spec.tags is None:
        return found.tags or {}
    try:
        return spec.tags(lookup, found)
    except UPSTREAM_ERRORS as e:
        raise Failure(f'Target "{name}": reading the tags of {found.arn} failed on the upstream: '
                      f"{describe_error(e)}", error_code(e), name) from e


def _has_tags(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    # AND of all pairs; an empty value matches only an empty value, never "any".
    return all(k in have and have[k] == v for k, v in want.items())


def _filter_fields(f: Any) -> tuple[str, list[str]]:
    if isinstance(f, Mapping):
        return str(f["path"]), [str(v) for v in f.get("values") or []]
    return str(f.path), [str(v) for v in f.values or []]


def path_values(obj: Any, path: Sequence[str]) -> Iterable[str]:
    """The values at a filter path. Elements are Pascal case even where the description is
    camel case (`NodegroupName` finds `nodegroupName`); lists fan out (`Groups.GroupId`)."""
    if isinstance(obj, list):
        for item in obj:
            yield from path_values(item, path)
        return
    if not path:
        if obj is not None and not isinstance(obj, Mapping):
            yield _text(obj)
        return
    if isinstance(obj, Mapping):
        want = path[0].lower()
        for key, value in obj.items():
            if str(key).lower() == want:
                yield from path_values(value, path[1:])


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _matches(details: Mapping[str, Any], path: str, values: Sequence[str]) -> bool:
    found = set(path_values(details, path.split(".")))
    wanted = set(values)
    # Booleans are compared as the JSON spelling (true/false) whatever the template's case.
    wanted |= {v.lower() for v in values if v.lower() in ("true", "false")}
    return bool(found & wanted)
