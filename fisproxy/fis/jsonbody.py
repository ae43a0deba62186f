"""JSON request bodies for the control APIs, parsed so that no body can break the handler.

`json.loads` alone raises RecursionError on deeply nested input (a few kilobytes of `[`),
turns `1e999` into infinity, accepts `NaN`, and decodes `"\\ud800"` to a lone surrogate, a str
that cannot be encoded (SQLite, pydantic's error locations and UTF-8 output all raise on it).
None of these belongs in a FIS or Chaos API body: `loads` turns them into a `BodyError` (a
ValueError with a message for the client), and refuses nesting deeper than any modelled shape
needs.
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
            for key in item:
                _check_text(key)
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            if isinstance(item, str):
                _check_text(item)
            elif finite and isinstance(item, float) and not math.isfinite(item):
                raise BodyError("a number is too large")
            continue
        if depth > max_depth:
            raise BodyError(f"nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)


def _check_text(text: str) -> None:
    if text.isascii():  # O(1); ASCII is always valid
        return
    try:
        text.encode()
    except UnicodeEncodeError:
        raise BodyError("a string holds a lone surrogate (\\ud800-\\udfff): not valid Unicode") from None
