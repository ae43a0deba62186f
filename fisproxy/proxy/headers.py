"""A request's headers indexed once, for the per-request path.

mitmproxy's `Headers.get(name)` walks every field and lower-cases its name on each call (about
15 µs with the dozen fields SDKs send); identifying a call reads several headers. `HeaderIndex`
walks the fields once and decodes only the values that are read.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from mitmproxy.http import Headers


class HeaderIndex(Mapping[str, str]):
    """Lower-case name -> value (repeated fields joined with ", ", as `Headers.get` answers),
    decoded as mitmproxy decodes header values. Look names up in lower case."""

    __slots__ = ("_raw",)

    def __init__(self, headers: Headers) -> None:
        raw: dict[bytes, bytes] = {}
        for name, value in headers.fields:
            key = name.lower()
            raw[key] = raw[key] + b", " + value if key in raw else value
        self._raw = raw

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        value = self._raw.get(name.encode("latin-1"))
        return default if value is None else value.decode("utf-8", "surrogateescape")

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return (name.decode("latin-1") for name in self._raw)

    def __len__(self) -> int:
        return len(self._raw)
