"""What identification knows about one AWS request: the shared vocabulary of aws/, fis/ and proxy/."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class AwsCall:
    """One identified AWS API request.

    `service` is the SigV4 signing name (the credential scope's service: `dynamodb`, `s3`,
    `monitoring`, `states`), which is what FIS users write in templates. `api` is botocore's
    service (model) name (`cloudwatch`, `stepfunctions`), used to find the protocol and the
    operation; it differs from the signing name for about a quarter of the services.
    """

    service: str
    region: str | None = None
    operation: str | None = None
    api: str | None = None
    protocol: str | None = None
    access_key: str | None = None
    # True when the operation can only be read from the (small, form-encoded) body, which was
    # not given: identify again once the body has arrived.
    needs_body: bool = False
    names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Every name a template may use for this service: signing name and botocore name.
        names = {self.service}
        if self.api:
            names.add(self.api)
        object.__setattr__(self, "names", frozenset(names))


@dataclass(frozen=True, slots=True)
class RequestParts:
    """The parts of a request that resource-scoped faults read to tell which resource a call
    names (a Lambda function in the path, a Kinesis stream in the body) or where it goes
    (network disruption). `body` is None when it is not read (streamed, or not needed)."""

    method: str
    path: str  # raw request target: path and query
    headers: Mapping[str, str]
    body: bytes | None = None
    # Where the request goes: the host the client named, and the IP address the proxy connects
    # to when known (an IP literal, or resolved for a rule that matches by address).
    host: str | None = None
    address: str | None = None
