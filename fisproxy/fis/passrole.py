"""Which experiment roles a caller may hand to fisproxy: its `iam:PassRole`.

In AWS, creating a template or starting an experiment with a `roleArn` needs `iam:PassRole` on
that role (https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html): FIS
then acts on resources with it. fisproxy assumes the role with its own upstream credentials,
so without a check anyone who reaches its control API could act with any role those
credentials may assume. `RolePolicy` is that check:

- `--allowed-role PATTERN` (repeatable; `*` and `?` as in IAM policies) lists the roles
  templates may name; any other role is refused when a template is created or updated and when
  an experiment starts.
- Without the list, any role may be named, except that resource actions against an upstream
  that is not on this machine (real AWS, or an endpoint that is not loopback) need the list or
  an authenticated control API (`--control-token`, `--control-credentials`): an anonymous
  caller must not stop real instances with whatever role the proxy can assume.

A refusal is FIS's AccessDeniedException (403) naming `roleArn` and saying how to allow it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from fisproxy.fis.actions import ACTIONS

# What an entry may look like: printable, no spaces; an ARN pattern or `*`.
_ENTRY = re.compile(r"^[\x21-\x7e]{1,2048}$")


def _compile(pattern: str) -> re.Pattern[str]:
    """An IAM-style wildcard pattern: `*` any run of characters, `?` any one; nothing else is
    special (unlike fnmatch's `[...]`)."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def parse_role_patterns(entries: Sequence[str]) -> tuple[str, ...]:
    """Role ARN patterns (blank entries skipped); ValueError saying which entry is wrong."""
    out = []
    for number, entry in enumerate(entries, 1):
        entry = entry.strip()
        if not entry:
            continue
        if not _ENTRY.match(entry) or not (entry == "*" or entry.startswith("arn:")):
            raise ValueError(f"entry {number} is not a role ARN pattern like "
                             f"arn:aws:iam::123456789012:role/fis-* (got {entry[:80]!r})")
        out.append(entry)
    return tuple(out)


@dataclass(frozen=True)
class RolePolicy:
    patterns: tuple[str, ...] = ()
    remote_upstream: bool = False  # the upstream is not on this machine (real AWS)
    authenticated: bool = False  # the control API requires credentials
    upstream_name: str = "real AWS"  # for messages

    @classmethod
    def from_options(cls, patterns: Sequence[str], *, remote_upstream: bool, authenticated: bool,
                     upstream_name: str = "real AWS") -> RolePolicy:
        """ValueError naming the option for an entry that is no role ARN pattern."""
        try:
            out = parse_role_patterns(patterns)
        except ValueError as e:
            raise ValueError(f"fisproxy_allowed_roles: {e}") from None
        return cls(out, remote_upstream, authenticated, upstream_name)

    @cached_property
    def _matchers(self) -> tuple[re.Pattern[str], ...]:
        return tuple(_compile(p) for p in self.patterns)

    def allows(self, role_arn: str) -> bool:
        return any(m.fullmatch(role_arn) for m in self._matchers)

    def refusal(self, role_arn: str | None, actions: Mapping[str, Any] | None, *,
                run_actions: bool = True) -> str | None:
        """Why `role_arn` may not be passed with `actions` (name -> action with `action_id`),
        or None. `run_actions` False: the experiment skips its actions (actionsMode skip-all)."""
        if role_arn is None:
            return None
        if self.patterns:
            if self.allows(role_arn):
                return None
            return (f"roleArn: {role_arn} is not a role this proxy may pass (iam:PassRole): it "
                    f"matches no --allowed-role ({', '.join(self.patterns)})")
        acting = sorted(_resource_actions(actions or {})) if run_actions else []
        if acting and self.remote_upstream and not self.authenticated:
            return (f"roleArn: {role_arn}: {', '.join(acting)} would act on resources of "
                    f"{self.upstream_name} with this role; this proxy passes roles to resource "
                    "actions only when they are listed with --allowed-role PATTERN, or when its "
                    "control API requires authentication (--control-token or --control-credentials)")
        return None


def _resource_actions(actions: Mapping[str, Any]) -> Iterable[str]:
    for name, action in actions.items():
        spec = ACTIONS.get(getattr(action, "action_id", None) or "")
        if spec is not None and spec.kind == "resource":
            yield f"action {name} ({spec.action_id})"
