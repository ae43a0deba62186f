"""Where this proxy runs, when `--placement` does not say: the ECS task metadata, else the EC2
instance metadata (IMDSv2), as AWS's own agents read them.

- ECS (`$ECS_CONTAINER_METADATA_URI_V4`, set in every task):
  `GET ${URI}/task` -> `AvailabilityZone`
  (https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-metadata-endpoint-v4.html).
- EC2 (`$AWS_EC2_METADATA_SERVICE_ENDPOINT`, default http://169.254.169.254; skipped when
  `$AWS_EC2_METADATA_DISABLED` is true, as the SDKs do): a session token, then
  `placement/availability-zone`, `placement/availability-zone-id`, `mac`,
  `network/interfaces/macs/<mac>/subnet-id`
  (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html).

Blocking, with short timeouts (a laptop has neither): called once at start-up, off the event loop.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from collections.abc import Mapping

from fisproxy.fis.proxyfaults import Placement

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 1.0
IMDS_DEFAULT = "http://169.254.169.254"


def discover(env: Mapping[str, str] | None = None) -> Placement:
    """The placement the platform tells, or an empty one."""
    env = os.environ if env is None else env
    ecs = env.get("ECS_CONTAINER_METADATA_URI_V4")
    try:
        if ecs:
            task = json.loads(_get(f"{ecs.rstrip('/')}/task"))
            return Placement(az=task.get("AvailabilityZone") or None)
        if env.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true":
            return _imds(env.get("AWS_EC2_METADATA_SERVICE_ENDPOINT") or IMDS_DEFAULT)
    except (OSError, ValueError) as e:
        log.debug("placement: no platform metadata (%s)", e)
    return Placement()


def _imds(base: str) -> Placement:
    base = base.rstrip("/")
    token_request = urllib.request.Request(
        f"{base}/latest/api/token", method="PUT", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    token = _open(token_request)
    headers = {"X-aws-ec2-metadata-token": token}

    def meta(path: str) -> str:
        return _open(urllib.request.Request(f"{base}/latest/meta-data/{path}", headers=headers))

    mac = meta("mac")
    return Placement(az=meta("placement/availability-zone"), az_id=meta("placement/availability-zone-id"),
                     subnet=meta(f"network/interfaces/macs/{mac}/subnet-id"))


def _get(url: str) -> str:
    return _open(urllib.request.Request(url))


def _open(request: urllib.request.Request) -> str:
    # Never through a proxy: HTTP_PROXY may well point at fisproxy itself.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=TIMEOUT_SECONDS) as response:
        return str(response.read().decode().strip())
