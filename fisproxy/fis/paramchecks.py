"""Action parameter values, checked by the name the catalogue gives each check.

`data/actions.yaml` names a parameter's check (`percentage`, `duration:PT15M`, `one-of:tcp,udp`,
`integer:0-100`); `CHECKS.get(name)` is the function that checks a value against it, raising
ValueError with the problem only (`ActionSpec.validate` in `actions.py` adds the parameter's
name). Values are strings on the wire.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping
from datetime import timedelta

from fisproxy.aws import catalog
from fisproxy.fis.ids import parse_duration

MAX_ACTION_DURATION = timedelta(hours=12)
ALL = "all"  # any service, any operation

ValueCheck = Callable[[str], None]


def names(items: Mapping[str, object] | set[str] | frozenset[str]) -> str:
    return ", ".join(sorted(items))


def did_you_mean(word: str, choices: Mapping[str, object] | frozenset[str] | set[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _int_range(lo: int, hi: int) -> ValueCheck:
    def check(value: str) -> None:
        try:
            n = int(value.strip())
        except ValueError:
            n = None
        if n is None or not lo <= n <= hi:
            raise ValueError(f'must be an integer {lo}-{hi}, got "{value}"')

    return check


def _decimal_range(lo: float, hi: float) -> ValueCheck:
    def check(value: str) -> None:
        try:
            n = float(value.strip())
        except ValueError:
            n = None
        if n is None or not lo <= n <= hi:
            raise ValueError(f'must be a number {lo:g}-{hi:g}, got "{value}"')

    return check


def _duration_up_to(limit: timedelta) -> ValueCheck:
    # AWS takes whole minutes from PT1M for most actions; fisproxy also takes seconds, so
    # experiments can be tested in seconds. The upper bound is AWS's.
    spelled = "PT12H" if limit == MAX_ACTION_DURATION else f"PT{int(limit.total_seconds() // 60)}M"

    def check(value: str) -> None:
        try:
            d = parse_duration(value)
        except ValueError:
            d = None
        if d is None or not timedelta(0) < d <= limit:
            raise ValueError(f'must be an ISO 8601 duration up to {spelled} (like PT5M or PT30S), got "{value}"')

    return check


def _boolean(value: str) -> None:
    if value.strip().lower() not in ("true", "false"):
        raise ValueError(f'must be true or false, got "{value}"')


def _one_of(*choices: str) -> ValueCheck:
    def check(value: str) -> None:
        if value not in choices:
            raise ValueError(f'must be one of {", ".join(choices)}, got "{value}"')

    return check


def _list_of(*choices: str) -> ValueCheck:
    def check(value: str) -> None:
        items = [v.strip() for v in value.split(",")]
        bad = [v for v in items if v not in choices]
        if bad or not items:
            raise ValueError(f'must be a comma-separated list of {", ".join(choices)}, got "{value}"')

    return check


def _json_object(value: str) -> None:
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ValueError(f"must be a JSON object, got {value[:80]!r}")


def _service(value: str) -> None:
    if not catalog.is_known_service(value):
        raise ValueError(f'unknown AWS service "{value}"{did_you_mean(value, catalog.apis_by_signing_name())}')


def _service_or_all(value: str) -> None:
    if value != ALL:
        _service(value)


_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")


def _region(value: str) -> None:
    if not _REGION.match(value):
        raise ValueError(f'must be an AWS region like us-east-1, got "{value}"')


def _error_code(value: str) -> None:
    if not re.fullmatch(r"[A-Za-z][\w.#:-]{0,127}", value):
        raise ValueError(f'must be an error code like ThrottlingException, got "{value}"')


def _exception(value: str) -> None:
    # LocalStack takes any text as the error code (`Internal Server Error`, with spaces).
    if not value.strip() or len(value) > 256 or any(ord(c) < 32 for c in value):
        raise ValueError(f"must be 1-256 printable characters, got {value[:80]!r}")


_ARN = re.compile(r"^arn:[\w-]+:[\w-]+:[\w-]*:\d*:.+$")
_ALARM_ARN = re.compile(r"^arn:[\w-]+:cloudwatch:[a-z0-9-]+:\d{12}:alarm:.+$")


def _arn(value: str) -> None:
    if not _ARN.match(value):
        raise ValueError(f'must be an ARN like arn:aws:ssm:us-east-1::document/AWS-RunShellScript, got "{value}"')


def _alarm_arns(value: str) -> None:
    arns = [a.strip() for a in value.split(",") if a.strip()]
    if not 1 <= len(arns) <= 5:
        raise ValueError(f"must be 1 to 5 alarm ARNs, comma-separated, got {len(arns)}")
    for arn in arns:
        if not _ALARM_ARN.match(arn):
            raise ValueError(f'must be CloudWatch alarm ARNs like arn:aws:cloudwatch:us-east-1:123456789012:alarm:name, got "{arn}"')


class _Checks:
    """Value checks by the name the catalogue uses: a word (`percentage`) or a word with an
    argument after a colon (`integer:0-100`, `one-of:tcp,udp`, `duration:PT15M`)."""

    _FIXED: Mapping[str, ValueCheck] = {
        "duration": _duration_up_to(MAX_ACTION_DURATION),
        "percentage": _int_range(1, 100),
        "milliseconds": _int_range(0, 3_600_000),
        "status-code": _int_range(400, 599),
        "boolean": _boolean,
        "json-object": _json_object,
        "service": _service,
        "service-or-all": _service_or_all,
        "region": _region,
        "error-code": _error_code,
        "exception": _exception,
        "arn": _arn,
        "alarm-arns": _alarm_arns,
    }

    def get(self, name: str) -> ValueCheck:
        if name in self._FIXED:
            return self._FIXED[name]
        word, _, arg = name.partition(":")
        if word == "integer":
            lo, hi = arg.split("-")
            return _int_range(int(lo), int(hi))
        if word == "decimal":
            lo, hi = arg.split("-")
            return _decimal_range(float(lo), float(hi))
        if word == "duration":
            return _duration_up_to(parse_duration(arg))
        if word == "one-of":
            return _one_of(*arg.split(","))
        if word == "list-of":
            return _list_of(*arg.split(","))
        raise KeyError(f"unknown parameter check {name!r}")


CHECKS = _Checks()


def split_names(value: str | None) -> frozenset[str] | None:
    """A comma-separated operation list; None (any) when absent, empty or `all`."""
    if value is None or value.strip().lower() == ALL:
        return None
    names = frozenset(p.strip() for p in value.split(",") if p.strip())
    return names or None
