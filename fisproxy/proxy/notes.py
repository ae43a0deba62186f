"""What the fault injector learned about a flow, for the addons that run when it ends.

Kept in a dict by flow id (not in `flow.metadata`, which mitmproxy saves with flows and can only
hold plain values), written by `inject.py` and taken out by `observe.py` in `response`/`error`,
which mitmproxy calls exactly once for every flow that had a request.
"""

from __future__ import annotations

from dataclasses import dataclass

from fisproxy.aws.call import AwsCall
from fisproxy.fis.decide import Decision


@dataclass(slots=True)
class Note:
    call: AwsCall
    decision: Decision | None = None
    # The operation cannot be known (a form body too large to read): faults that name no
    # operation still apply. Otherwise a call with no operation is passed through untouched.
    service_only: bool = False
    # A rule in force can only tell from the body whether the call names its resource
    # (a Kinesis stream): decided in `request`, once the (small) body is in.
    deferred: bool = False


class FlowNotes(dict[str, Note]):
    """flow id -> Note."""
