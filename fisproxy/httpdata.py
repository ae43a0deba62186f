"""Plain HTTP request/response values for the control APIs, so fis/ never sees mitmproxy."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ApiRequest:
    method: str
    path: str  # raw (percent-encoded) path, without the query string
    query: Mapping[str, list[str]] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # case-insensitive in practice
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class ApiResponse:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    @classmethod
    def json(cls, status: int, data: Any, headers: Mapping[str, str] | None = None) -> ApiResponse:
        return cls(
            status,
            {"content-type": "application/json", **(headers or {})},
            json.dumps(data, default=str).encode(),
        )


def header_values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of header `name` (lower-case): repeated headers are kept apart where the
    mapping can (mitmproxy's Headers, http.client and botocore messages have `get_all`)."""
    get_all: Any = getattr(headers, "get_all", None)
    if get_all is not None:
        return list(get_all(name) or [])
    return [v for k, v in headers.items() if k.lower() == name]


def first_header(headers: Mapping[str, str], name: str) -> str | None:
    values = header_values(headers, name)
    return values[0] if values else None
