"""What every target shares: its selection mode, its error, the role target's access keys.

A target names resources by ARN (`resourceArns`) or by `resourceTags` / `filters`, then keeps
`selectionMode` of them: `ALL`, `COUNT(n)` (n at random) or `PERCENT(n)` (rounded down). The
resolution itself, on the upstream, is `resources/resolve.py`. An `aws:iam:role` target may
also map access keys to itself explicitly: `parameters: {"accessKeyIds": "AKIA1,AKIA2"}`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from typing import TypeVar

ROLE = "aws:iam:role"
ACCESS_KEYS_PARAMETER = "accessKeyIds"

_SELECTION = re.compile(r"^(ALL|COUNT|PERCENT)(?:\((\d+)\))?$")

T = TypeVar("T")


class TargetError(Exception):
    """A target that cannot be resolved; `reason` is shown as the experiment's state reason.
    `skippable`: the upstream does not implement the API that lists the target's resources
    (moto, LocalStack): the actions using it are skipped, unless the proxy is told to fail."""

    def __init__(self, target_name: str, reason: str, code: str = "InvalidTarget", *,
                 skippable: bool = False) -> None:
        super().__init__(reason)
        self.target_name = target_name
        self.reason = reason
        self.code = code
        self.skippable = skippable


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
