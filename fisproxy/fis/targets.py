"""What every target shares: its selection mode, its error, the role target's access keys.

A target names resources by ARN (`resourceArns`) or by `resourceTags` / `filters`, then keeps
`selectionMode` of them: `ALL`, `COUNT(n)` (n at random) or `PERCENT(n)` (rounded down). That
grammar is defined here only: templates are checked against it when they are written
(`models.py`) and resolved with it when an experiment starts. The resolution itself, on the
upstream, is `resources/resolve.py`. An `aws:iam:role` target may also map access keys to
itself explicitly: `parameters: {"accessKeyIds": "AKIA1,AKIA2"}`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from typing import TypeVar

ROLE = "aws:iam:role"
ACCESS_KEYS_PARAMETER = "accessKeyIds"

# ASCII digits only (`\d` also takes other scripts' digits, which int() reads).
_SELECTION = re.compile(r"ALL|(?P<kind>COUNT|PERCENT)\((?P<n>[0-9]{1,9})\)")

T = TypeVar("T")


class SelectionModeError(ValueError):
    """A selectionMode outside the grammar; `problem` says why, without the field's name."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"selectionMode: {problem}")
        self.problem = problem


def parse_selection_mode(mode: str | None) -> tuple[str, int | None]:
    """`ALL` (or None) -> ("ALL", None), `COUNT(3)` -> ("COUNT", 3), `PERCENT(50)` ->
    ("PERCENT", 50); SelectionModeError otherwise.

    n is at least 1: FIS's docs define COUNT(n) as n targets chosen at random (COUNT(1) the
    smallest example) and PERCENT(n) as n percent of them, and a mode that can select nothing
    would leave the target empty on every run (the experiment fails, or its actions are
    skipped), which no template means: COUNT(0) is refused like PERCENT(0), when the template
    is written."""
    if mode is None:
        return "ALL", None
    m = _SELECTION.fullmatch(mode)
    if m is None:
        shown = mode if len(mode) <= 64 else mode[:61] + "..."
        # Undecodable bytes (lone surrogates) escaped: messages must encode as UTF-8.
        shown = shown.encode("utf-8", "backslashreplace").decode()
        raise SelectionModeError(f'must be ALL, COUNT(n) or PERCENT(n), got "{shown}"')
    if m["kind"] is None:
        return "ALL", None
    n = int(m["n"])
    if m["kind"] == "COUNT" and n < 1:
        raise SelectionModeError(f'COUNT needs at least 1, got "{mode}"')
    if m["kind"] == "PERCENT" and not 1 <= n <= 100:
        raise SelectionModeError(f'PERCENT takes 1-100, got "{mode}"')
    return m["kind"], n


def select(resources: Sequence[T], mode: str | None, rng: random.Random) -> tuple[T, ...]:
    """Apply a selection mode; random choices come from `rng`, order stays as given."""
    kind, n = parse_selection_mode(mode)
    if n is None:  # ALL
        return tuple(resources)
    k = n if kind == "COUNT" else len(resources) * n // 100
    k = min(k, len(resources))
    chosen = sorted(rng.sample(range(len(resources)), k))
    return tuple(resources[i] for i in chosen)


def access_key_ids(parameters: Mapping[str, str] | None) -> tuple[str, ...]:
    """The explicit `accessKeyIds` of a role target (comma and/or space separated)."""
    raw = (parameters or {}).get(ACCESS_KEYS_PARAMETER, "")
    return tuple(k for k in re.split(r"[\s,]+", raw) if k)
