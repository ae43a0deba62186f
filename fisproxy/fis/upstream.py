"""botocore clients for the engine's own calls to the upstream (CloudWatch alarms, logs, IAM).

Blocking: call these from a worker thread (`asyncio.to_thread`), never on the event loop.
Credentials come from the ordinary chain; when it finds none (a laptop against moto), the
dummy `testing` keys moto and LocalStack accept. With an explicit endpoint the instance-metadata
provider is dropped (it would stall on its network timeout) and environment proxies are ignored
(HTTPS_PROXY may point at fisproxy itself).
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.credentials import Credentials

_lock = threading.Lock()


@cache
def _session(offline: bool) -> tuple[botocore.session.Session, Credentials]:
    session = botocore.session.Session()
    if offline:
        session.get_component("credential_provider").remove("iam-role")
    creds = session.get_credentials()
    if creds is None:
        creds = Credentials("testing", "testing")
    return session, creds


def client(service: str, region: str, endpoint: str | None) -> Any:
    """A botocore client for `service` in `region`, at `endpoint` if given, else real AWS."""
    with _lock:  # botocore sessions are not thread-safe while creating clients
        session, creds = _session(endpoint is not None)
        frozen = creds.get_frozen_credentials()
        config = Config(
            retries={"max_attempts": 2, "mode": "standard"},
            connect_timeout=5,
            read_timeout=10,
            proxies={} if endpoint else None,
        )
        return session.create_client(
            service,
            region_name=region,
            endpoint_url=endpoint,
            aws_access_key_id=frozen.access_key,
            aws_secret_access_key=frozen.secret_key,
            aws_session_token=frozen.token,
            config=config,
        )


def arn_region(arn: str, default: str) -> str:
    """The region field of an ARN (`arn:aws:cloudwatch:<region>:...`), or `default` if empty."""
    parts = arn.split(":", 5)
    return parts[3] if len(parts) == 6 and parts[3] else default
