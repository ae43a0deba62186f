"""Pages of list operations: `maxResults` items from the offset a `nextToken` carries.

A token is base64 of exactly `{"offset": <n>}`, read back by a pattern, never by a JSON parser:
a token is client input, and could decode to Infinity or deeply nested arrays.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from fisproxy.fis.api.errors import invalid, shown

DEFAULT_PAGE_SIZE = 100

T = TypeVar("T")

_TOKEN_BODY = re.compile(rb'\{"offset": (0|[1-9][0-9]{0,8})\}')


def page(items: Sequence[T], params: Mapping[str, Any]) -> tuple[list[T], str | None]:
    """The page of `items` that `params` (`nextToken`, `maxResults`) ask for, and the token of
    the next page (None on the last)."""
    token = params.get("nextToken")
    start = _offset(token) if token is not None else 0
    size = params.get("maxResults", DEFAULT_PAGE_SIZE)
    end = start + size
    return list(items[start:end]), _token(end) if end < len(items) else None


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(token: str) -> int:
    try:
        decoded = base64.urlsafe_b64decode(token.encode("ascii"))
    except (ValueError, binascii.Error):  # UnicodeEncodeError is a ValueError
        decoded = b""
    m = _TOKEN_BODY.fullmatch(decoded)
    if m is None:
        raise invalid(f'nextToken: not a token this API issued: "{shown(token)}"')
    return int(m[1])
