"""The one interface of the fault kinds, and what a kind may use beyond the flow.

Each kind's module imports this one, never the package: the package (`__init__.py`) imports
every kind for `KINDS`, so a kind importing it would make a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from mitmproxy import http

from fisproxy.aws.call import AwsCall
from fisproxy.fis.faults import Fault, Phase
from fisproxy.proxy.sink import FaultSink


@dataclass(frozen=True, slots=True)
class Env:
    """What a kind may need beyond the flow: the identified call, the upload sink, and the
    mark to put on the flow (mitmweb comment, x-fisproxy-fault header)."""

    call: AwsCall
    sink: FaultSink
    mark: Callable[[http.HTTPFlow], None]


class FaultKind(Protocol):
    phases: frozenset[Phase]

    async def apply(self, flow: http.HTTPFlow, fault: Fault, phase: Phase, env: Env) -> None: ...
