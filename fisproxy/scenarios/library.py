"""What a scenario is: a named template of AWS's FIS scenario library, written for parameters.

AWS's scenario library (https://docs.aws.amazon.com/fis/latest/userguide/scenario-library.html)
is a console feature: a scenario is an experiment template with shared parameters (the zone,
the tags, the durations, the Regions). Each scenario here is one function from its parameters to
the template, ready for `aws fis create-experiment-template --cli-input-json file://...`:
`render(name, params)`. Parameters are strings, checked here (a bad one is a `ValueError` naming
it and what it takes).

What AWS's published content leaves to the user is filled so the template is accepted as is:
the experiment role (`roleArn`, which the content leaves empty), no `logConfiguration` without a
destination (the content's `{"logSchemaVersion": 2}` alone is refused). Targets that need a value
only the user has (the roles whose launches to pause, an EKS cluster) are left out with their
actions unless given, as AWS's pages tell users to do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from fisproxy.fis.ids import format_duration, parse_duration

Template = dict[str, Any]
Check = Callable[[str], str]


@dataclass(frozen=True)
class Param:
    """One shared parameter: its default (None: absent unless given) and what it is."""

    default: str | None
    help: str
    check: Check = str


@dataclass(frozen=True)
class Scenario:
    name: str  # the CLI's name: az-power-interruption
    title: str  # AWS's: "AZ Availability: Power Interruption"
    summary: str
    source: str  # the AWS page it follows
    params: Mapping[str, Param]
    build: Callable[[Mapping[str, str]], Template] = field(repr=False)


SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str, title: str, summary: str, source: str, params: Mapping[str, Param]) -> Callable[
        [Callable[[Mapping[str, str]], Template]], Callable[[Mapping[str, str]], Template]]:
    """Register a scenario's builder under `name`."""
    def add(build: Callable[[Mapping[str, str]], Template]) -> Callable[[Mapping[str, str]], Template]:
        SCENARIOS[name] = Scenario(name, title, summary, source, {**COMMON, **params}, build)
        return build
    return add


def render(name: str, given: Mapping[str, str]) -> Template:
    """The template of scenario `name` for the `given` parameters (the others at their
    defaults). ValueError naming an unknown scenario or parameter, or a bad value."""
    spec = SCENARIOS.get(name)
    if spec is None:
        raise ValueError(f'unknown scenario "{name}" (one of: {", ".join(sorted(SCENARIOS))})')
    unknown = sorted(set(given) - set(spec.params))
    if unknown:
        raise ValueError(f'{name} has no parameter "{unknown[0]}" (valid: {", ".join(spec.params)})')
    values: dict[str, str] = {}
    for key, param in spec.params.items():
        raw = given.get(key, param.default)
        if raw is None:
            continue
        try:
            values[key] = param.check(raw)
        except ValueError as e:
            raise ValueError(f"{key}: {e}") from None
    template = spec.build(values)
    template.setdefault("tags", {"Name": spec.title})
    template["roleArn"] = values["roleArn"]
    template.setdefault("stopConditions", [{"source": "none"}])
    if "logGroupArn" in values:
        template["logConfiguration"] = {"logSchemaVersion": 2,
                                        "cloudWatchLogsConfiguration": {"logGroupArn": values["logGroupArn"]}}
    template.setdefault("experimentOptions", {"accountTargeting": "single-account",
                                              "emptyTargetResolutionMode": "skip"})
    return template


# ---- parameter checks ----------------------------------------------------------------------

_ZONE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+[a-z]$")
_ZONE_ID = re.compile(r"^[a-z]{2,4}\d+-az\d+$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_ARN = re.compile(r"^arn:[\w-]+:[\w-]+:[\w-]*:\d*:.+$")


def zone(value: str) -> str:
    if not _ZONE.match(value):
        raise ValueError(f'must be an Availability Zone name like us-east-1a, got "{value}"')
    return value


def zone_id(value: str) -> str:
    if not _ZONE_ID.match(value):
        raise ValueError(f'must be an Availability Zone ID like use1-az1, got "{value}"')
    return value


def region(value: str) -> str:
    if not _REGION.match(value):
        raise ValueError(f'must be a Region like eu-west-1, got "{value}"')
    return value


def duration(value: str) -> str:
    d = parse_duration(value)
    if not timedelta(0) < d <= timedelta(hours=12):
        raise ValueError(f'must be an ISO 8601 duration up to PT12H, got "{value}"')
    return value


def arns(value: str) -> str:
    items = [a.strip() for a in value.split(",") if a.strip()]
    bad = [a for a in items if not _ARN.match(a)]
    if not items or bad:
        raise ValueError(f'must be ARNs, comma-separated, got "{value}"')
    return ",".join(items)


def arn(value: str) -> str:
    if "," in value or not _ARN.match(value.strip()):
        raise ValueError(f'must be one ARN, got "{value}"')
    return value.strip()


def tag(value: str) -> str:
    key, sep, val = value.partition("=")
    if not sep or not key.strip():
        raise ValueError(f'must be Key=Value, got "{value}"')
    return f"{key.strip()}={val.strip()}"


def percent(value: str) -> str:
    if not value.isdigit() or not 0 <= int(value) <= 100:
        raise ValueError(f'must be an integer 0-100, got "{value}"')
    return value


def whole(value: str) -> str:
    if not value.isdigit():
        raise ValueError(f'must be a whole number, got "{value}"')
    return value


def numbers(value: str) -> str:
    items = [v.strip() for v in value.split(",")]
    if not items or not all(v.isdigit() for v in items):
        raise ValueError(f'must be whole numbers, comma-separated, got "{value}"')
    return ",".join(items)


def zones(value: str) -> str:
    return ",".join(zone(z.strip()) for z in value.split(",") if z.strip())


COMMON: Mapping[str, Param] = {
    "roleArn": Param("arn:aws:iam::123456789012:role/fis-experiment",
                     "the experiment role FIS acts with (the published content leaves it empty)", arn),
    "logGroupArn": Param(None, "a CloudWatch Logs group for the experiment log (absent: no log delivery)", arn),
}


# ---- helpers for the builders ----------------------------------------------------------------

def seconds(value: str) -> float:
    return parse_duration(value).total_seconds()


def iso(total: float) -> str:
    """`PT25M`, `PT1H`, `PT18S`: the shortest spelling of `total` seconds (at least one)."""
    return format_duration(timedelta(seconds=max(1.0, round(total))))


def tagged(values: Mapping[str, str], key: str, value: str) -> dict[str, str]:
    """A target's resourceTags: the scenario's default tag, or the `tags` parameter (one
    Key=Value for every target), or the default value under the `tagKey` parameter."""
    if "tags" in values:
        k, _, v = values["tags"].partition("=")
        return {k: v}
    return {values.get("tagKey", key): value}


def region_of(zone_name: str) -> str:
    return zone_name[:-1]
