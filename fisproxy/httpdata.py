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
