"""A tiny CBOR (RFC 8949) encoder: enough for smithy-rpc-v2-cbor error bodies.

Error documents are small maps of text strings (`{"__type": ..., "message": ...}`), so this
encodes only definite-length items: text, bytes, non-negative and negative integers, booleans,
null, arrays and maps. Floats, tags and indefinite lengths are not needed and raise TypeError.
botocore ships the matching *parser* (`botocore.parsers.RpcV2CBORParser`), the test oracle.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

# Major types (RFC 8949 section 3.1).
_UINT, _NEGINT, _BYTES, _TEXT, _ARRAY, _MAP = 0, 1, 2, 3, 4, 5
_FALSE, _TRUE, _NULL = 0xF4, 0xF5, 0xF6

CborValue = str | bytes | int | bool | None | Sequence["CborValue"] | Mapping[str, "CborValue"]


def _head(major: int, n: int) -> bytes:
    """Initial byte plus argument, in the shortest form (preferred serialisation)."""
    if n < 24:
        return bytes([major << 5 | n])
    for info, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if n < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | info]) + struct.pack(fmt, n)
    raise ValueError(f"integer too large for CBOR: {n}")


def encode(value: CborValue) -> bytes:
    """The CBOR encoding of `value` (map keys keep their insertion order)."""
    out = bytearray()
    _encode_into(out, value)
    return bytes(out)


def _encode_into(out: bytearray, value: CborValue) -> None:
    # bool before int: bool is a subclass of int.
    if value is None:
        out.append(_NULL)
    elif value is True:
        out.append(_TRUE)
    elif value is False:
        out.append(_FALSE)
    elif isinstance(value, int):
        out += _head(_UINT, value) if value >= 0 else _head(_NEGINT, -1 - value)
    elif isinstance(value, str):
        data = value.encode("utf-8")
        out += _head(_TEXT, len(data)) + data
    elif isinstance(value, bytes | bytearray):
        out += _head(_BYTES, len(value)) + value
    elif isinstance(value, Mapping):
        out += _head(_MAP, len(value))
        for key, item in value.items():
            _encode_into(out, key)
            _encode_into(out, item)
    elif isinstance(value, Sequence):
        out += _head(_ARRAY, len(value))
        for item in value:
            _encode_into(out, item)
    else:
        raise TypeError(f"cannot CBOR-encode {type(value).__name__}")
