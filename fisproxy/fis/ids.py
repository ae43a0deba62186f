"""Identifiers, ARNs, clocks and ISO 8601 durations for the FIS domain.

Real FIS ids look like `EXTCDh1M8HHkhxoaQ` / `EXPhjAXCGY78HV2a4A`: a three-letter prefix and
14-16 alphanumerics. ARNs are `arn:aws:fis:<region>:<account>:<kind>/<id>` with kind
`experiment-template`, `experiment`, `action` or `safety-lever`.
"""

from __future__ import annotations

import re
import secrets
import string
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import BeforeValidator, TypeAdapter, ValidationError

_ALPHABET = string.ascii_letters + string.digits

TEMPLATE_PREFIX = "EXT"
EXPERIMENT_PREFIX = "EXP"


def new_id(prefix: str) -> str:
    """`prefix` + 15 random alphanumerics (inside real FIS's 14-16)."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(15))


def new_template_id() -> str:
    return new_id(TEMPLATE_PREFIX)


def new_experiment_id() -> str:
    return new_id(EXPERIMENT_PREFIX)


def fis_arn(region: str, account_id: str, kind: str, resource_id: str) -> str:
    return f"arn:aws:fis:{region}:{account_id}:{kind}/{resource_id}"


def template_arn(region: str, account_id: str, template_id: str) -> str:
    return fis_arn(region, account_id, "experiment-template", template_id)


def experiment_arn(region: str, account_id: str, experiment_id: str) -> str:
    return fis_arn(region, account_id, "experiment", experiment_id)


def action_arn(region: str, account_id: str, action_id: str) -> str:
    return fis_arn(region, account_id, "action", action_id)


def safety_lever_arn(region: str, account_id: str, lever_id: str) -> str:
    return fis_arn(region, account_id, "safety-lever", lever_id)


_FIS_ARN = re.compile(r"^arn:[\w-]+:fis:(?P<region>[^:]*):(?P<account>[^:]*):(?P<kind>[\w-]+)/(?P<id>\S+)$")


def parse_fis_arn(arn: str) -> tuple[str, str] | None:
    """`(kind, id)` of a FIS resource ARN, or None if `arn` is not one."""
    m = _FIS_ARN.match(arn)
    return (m["kind"], m["id"]) if m else None


def timestamp(t: float) -> datetime:
    """Epoch seconds as a UTC datetime truncated to milliseconds like FIS timestamps
    (`1616432680.927`), so that values survive the epoch-seconds wire format unchanged."""
    d = datetime.fromtimestamp(t, UTC)
    return d.replace(microsecond=d.microsecond // 1000 * 1000)


def now() -> datetime:
    """The current UTC time as a FIS timestamp."""
    return timestamp(time.time())


# ISO 8601 durations as FIS uses them (PT1M, PT2M30S, PT1H, P1D), and shorter ones than AWS
# takes (PT0.5S, PT30S): parsed by pydantic. Before it, fisproxy keeps to the `P...` form (any
# case; pydantic also reads `10:00` and signs) and refuses years and months, which are not
# fixed lengths (pydantic counts 365 and 30 days).
def _iso_8601_form(value: object) -> object:
    if not isinstance(value, str):
        return value
    text = value.strip().upper()
    date_part = text.partition("T")[0]
    if not text.startswith("P") or "Y" in date_part or "M" in date_part:
        raise ValueError("not of the form PnDTnHnMnS")
    return text


_DURATION: TypeAdapter[timedelta] = TypeAdapter(Annotated[timedelta, BeforeValidator(_iso_8601_form)])


def parse_duration(text: str) -> timedelta:
    """An ISO 8601 duration (`PT5M`, `PT1H30M`, `PT2S`) as a timedelta; ValueError otherwise,
    also for a duration too long for a timedelta (`P9999999999D`, 400 digits of seconds)."""
    shown = text if len(text) <= 40 else text[:37] + "..."
    try:
        return _DURATION.validate_python(text)
    except ValidationError as e:
        problem = e.errors()[0]["msg"]
        if "too large" in problem or "exceed" in problem:
            raise ValueError(f"duration too long: {shown!r}") from None
        raise ValueError(f"not an ISO 8601 duration like PT5M: {shown!r}") from None


def format_duration(d: timedelta) -> str:
    """The shortest `PT..H..M..S` spelling of `d` (for documentation and logs)."""
    total = d.total_seconds()
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    out = "PT"
    if hours:
        out += f"{int(hours)}H"
    if minutes:
        out += f"{int(minutes)}M"
    if seconds or out == "PT":
        out += f"{seconds:g}S"
    return out
