"""Caller identity learned from STS responses passing through the proxy.

A successful `AssumeRole`, `AssumeRoleWithWebIdentity` or `AssumeRoleWithSAML` hands out a new
access key id for a role session; `GetCallerIdentity` names the principal behind the key that
signed it. Either gives an (access key id, principal ARN) pair, which lets FIS role targets
(`aws:iam:role`) match later requests signed with that key. Only those two fields are read:
secrets and session tokens are never returned, stored or logged.

Responses are query XML (`<AssumeRoleResponse xmlns=...><AssumeRoleResult>...`, namespace
ignored as botocore does) or JSON (awsJson: the output shape at the top level; or the older
query-compatible JSON that keeps the `...Response`/`...Result` wrappers).
"""

from __future__ import annotations

import json
from typing import Any
from xml.etree import ElementTree

from fisproxy.aws.call import AwsCall

_ASSUME_OPERATIONS = frozenset({"AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"})
_IDENTITY_OPERATION = "GetCallerIdentity"


def learn_credentials(call: AwsCall, status: int, body: bytes) -> tuple[str, str] | None:
    """(access key id, principal ARN) from a 2xx STS response to `call`, or None."""
    if not 200 <= status < 300 or "sts" not in call.names or not body:
        return None
    operation = call.operation
    if operation in _ASSUME_OPERATIONS:
        found = _read(body, (("Credentials", "AccessKeyId"), ("AssumedRoleUser", "Arn")))
        key, arn = found
    elif operation == _IDENTITY_OPERATION:
        key = call.access_key
        (arn,) = _read(body, (("Arn",),))
    else:
        return None
    if key and arn:
        return key, arn
    return None


def _read(body: bytes, paths: tuple[tuple[str, ...], ...]) -> list[str | None]:
    """The text at each path (relative to the result element), from XML or JSON."""
    text = body.lstrip()
    if text.startswith(b"{"):
        try:
            data = json.loads(text)
        except ValueError:
            return [None] * len(paths)
        return [_json_path(data, path) for path in paths]
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        return [None] * len(paths)
    return [_xml_path(root, path) for path in paths]


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _xml_path(root: ElementTree.Element, path: tuple[str, ...]) -> str | None:
    # The path's first element may sit in `<XResult>` (query) or at the top: search for it.
    for start in root.iter():
        if _local(start.tag) != path[0]:
            continue
        node: ElementTree.Element | None = start
        for name in path[1:]:
            node = next((c for c in node if _local(c.tag) == name), None) if node is not None else None
        if node is not None and node.text and node.text.strip():
            return node.text.strip()
    return None


def _json_path(data: Any, path: tuple[str, ...]) -> str | None:
    # Unwrap `{"AssumeRoleResponse": {"AssumeRoleResult": {...}}}` if present.
    while isinstance(data, dict) and path[0] not in data and len(data) >= 1:
        wrapper = next(
            (v for k, v in data.items() if k.endswith(("Response", "Result")) and isinstance(v, dict)),
            None,
        )
        if wrapper is None:
            break
        data = wrapper
    for name in path:
        if not isinstance(data, dict):
            return None
        data = data.get(name)
    return data if isinstance(data, str) and data else None
