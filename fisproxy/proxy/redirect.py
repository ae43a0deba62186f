"""`--aws-endpoint`: every AWS request goes to moto, LocalStack or another endpoint instead.

The first addon in the list and outside every error boundary: whatever happens later to a flow
(identification failing included), an AWS request never leaves for the real AWS host when an
endpoint is set. The Host header stays as the client sent it (S3 virtual-hosted style, SigV4),
and the original host is kept in `flow.metadata` for the addons that identify the call.
"""

from __future__ import annotations

from mitmproxy import http

from fisproxy.aws.identify import is_aws_host
from fisproxy.proxy.runtime import Runtime

ORIGINAL_HOST = "fisproxy_original_host"


def original_host(flow: http.HTTPFlow) -> str:
    """The host the client addressed (before any redirect)."""
    return flow.metadata.get(ORIGINAL_HOST) or flow.request.host


class EndpointRedirect:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        settings = self.runtime.settings
        if settings is None or settings.aws_endpoint_parts is None or flow.response is not None:
            return
        req = flow.request
        host = req.host  # the target host (absolute-form or CONNECT): a plain attribute
        if ORIGINAL_HOST in flow.metadata or not is_aws_host(host):
            return
        flow.metadata[ORIGINAL_HOST] = host
        host_header = req.host_header
        req.scheme, req.host, req.port = settings.aws_endpoint_parts
        req.host_header = host_header
