"""JSON request bodies for the control APIs, parsed so that no body can break the handler.

`json.loads` alone raises RecursionError on deeply nested input (a few kilobytes of `[`),
turns `1e999` into infinity and accepts `NaN`, none of which a FIS or Chaos API body holds.
`loads` turns all of these into a `BodyError` (a ValueError with a message for the client),
and refuses nesting deeper than any modelled shape needs.
"""

from __future__ import annotations

import json
import math
from typing import Any

# The deepest FIS shape (template -> targets -> name -> filters -> [i] -> values -> [i]) is 7
# levels; the Chaos API's are 3. Room to spare, far below the interpreter's recursion limit.
MAX_DEPTH = 32


class BodyError(ValueError):
    """A body that is not acceptable JSON; `str()` says why, for the client."""


def _no_constant(name: str) -> Any:
    raise BodyError(f"{name} is not a JSON number")


def loads(body: bytes | str, *, max_depth: int = MAX_DEPTH, finite: bool = True) -> Any:
    """The JSON value of `body`; BodyError if it is not JSON, nested deeper than `max_depth`,
    or (with `finite`) holds NaN, Infinity or a number too large for a float."""
    try:
        value = json.loads(body, parse_constant=_no_constant if finite else None)
    except RecursionError:
        raise BodyError(f"nested deeper than {max_depth} levels") from None
    except BodyError:
        raise
    except ValueError as e:  # JSONDecodeError, bytes that are not UTF-8/16/32, huge integers
        raise BodyError(str(e)) from None
    _check(value, max_depth, finite)
    return value


def _check(value: Any, max_depth: int, finite: bool) -> None:
    # Iterative: a check that recursed would fail on exactly the input it guards against.
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            if finite and isinstance(item, float) and not math.isfinite(item):
                raise BodyError("a number is too large")
            continue
        if depth > max_depth:
            raise BodyError(f"nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)
