"""Which IAM role signs a request: access key id -> role, learned from STS traffic.

FIS's inject-api actions fault only calls signed by the targeted roles. The proxy sees the access
key id of every SigV4 request and, in STS responses passing through it, which principal a key
belongs to (AssumeRole* returns new keys with the assumed-role ARN; GetCallerIdentity names the
caller). Roles are compared by (account, role name): an assumed-role ARN
(`arn:aws:sts::123:assumed-role/name/session`) loses the role's path, so the path cannot count.
"""

from __future__ import annotations

from typing import NamedTuple


class RoleRef(NamedTuple):
    """A role as FIS targeting compares it: account and role name (no path, no partition)."""

    account: str
    name: str


def role_ref(arn: str) -> RoleRef | None:
    """The role behind a principal ARN, or None when the principal is not a role.

    `arn:<partition>:iam::<account>:role/<path>/<name>` and
    `arn:<partition>:sts::<account>:assumed-role/<name>/<session>` both give (account, name).
    """
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return None
    _, _, service, _, account, resource = parts
    if service == "iam" and resource.startswith("role/"):
        name = resource.rsplit("/", 1)[1]
    elif service == "sts" and resource.startswith("assumed-role/"):
        segments = resource.split("/")
        if len(segments) < 2:
            return None
        name = segments[1]
    else:
        return None
    if not account or not name:
        return None
    return RoleRef(account, name)


def role_arn(principal_arn: str) -> str:
    """The IAM role ARN for an assumed-role ARN (path unknown, so none); others unchanged."""
    ref = role_ref(principal_arn)
    if ref is None or ":iam::" in principal_arn:
        return principal_arn
    partition = principal_arn.split(":", 2)[1]
    return f"arn:{partition}:iam::{ref.account}:role/{ref.name}"


class Identities:
    """Access key id -> principal, as learned; lookups are a dict get (hot path)."""

    def __init__(self) -> None:
        self._principals: dict[str, str] = {}
        self._roles: dict[str, RoleRef] = {}

    def learn(self, access_key: str, principal_arn: str) -> bool:
        """Record the principal for a key; True when this changed what is known."""
        principal = role_arn(principal_arn)
        if self._principals.get(access_key) == principal:
            return False
        self._principals[access_key] = principal
        ref = role_ref(principal)
        if ref is None:
            self._roles.pop(access_key, None)
        else:
            self._roles[access_key] = ref
        return True

    def role_of(self, access_key: str | None) -> RoleRef | None:
        if access_key is None:
            return None
        return self._roles.get(access_key)

    def principal_of(self, access_key: str) -> str | None:
        return self._principals.get(access_key)

    def items(self) -> list[tuple[str, str]]:
        return list(self._principals.items())
