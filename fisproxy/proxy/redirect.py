"""`--aws-endpoint`: every AWS request goes to moto, LocalStack or another endpoint instead.

The first addon in the list and outside every error boundary: whatever happens later to a flow
(identification failing included), an AWS request never leaves for the real AWS host when an
endpoint is set. The Host header stays as the client sent it (S3 virtual-hosted style, SigV4),
and the original host is kept in `flow.metadata` for the addons that identify the call.

mitmproxy sends a request where its scheme, host and port point when it connects upstream
(`proxy/layers/http/__init__.py: make_server_connection`, 11.0 and 12.x), so they point at the
endpoint from `requestheaders` until the request has left. Once the answer is back (or the flow
ended in an error, or fisproxy answered it itself), they name again what the client called:
`https://sns.us-east-1.amazonaws.com/`, not `http://127.0.0.1:5000/`, in mitmweb's list and
detail and in saved flows. Where the flow was sent is in `flow.metadata` (`fisproxy_redirect`)
and in its server connection's address (mitmweb's Connection tab). A replayed flow goes through
`requestheaders` again and to the endpoint again.
"""

from __future__ import annotations

from typing import Any

from mitmproxy import ctx, hooks, http

from fisproxy.aws.identify import is_aws_host
from fisproxy.proxy.runtime import Runtime

ORIGINAL_HOST = "fisproxy_original_host"
REDIRECT = "fisproxy_redirect"  # flow.metadata: {"scheme", "host", "port"} called, "to": endpoint URL


def original_host(flow: http.HTTPFlow) -> str:
    """The host the client addressed (before any redirect)."""
    return flow.metadata.get(ORIGINAL_HOST) or flow.request.host


def _points_at(request: http.Request) -> str:
    return f"{request.scheme}://{request.host}:{request.port}"


class EndpointRedirect:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        settings = self.runtime.settings
        if settings is None or settings.aws_endpoint_parts is None or flow.response is not None:
            return
        req = flow.request
        host = req.host  # the target host (absolute-form or CONNECT): a plain attribute
        scheme, endpoint_host, port = settings.aws_endpoint_parts
        if (req.scheme, host, req.port) == (scheme, endpoint_host, port) or not is_aws_host(host):
            return
        flow.metadata[ORIGINAL_HOST] = host
        flow.metadata[REDIRECT] = {"scheme": req.scheme, "host": host, "port": req.port,
                                   "to": f"{scheme}://{endpoint_host}:{port}"}
        # Raw fields: the Host header stays as the client sent it (the setters would rewrite it).
        req.data.scheme = scheme.encode()
        req.data.host = endpoint_host
        req.data.port = port

    # The request has left (or never will) in each of these: name what the client called.

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if restore(flow) and ctx.master.addons.get("view") is not None:
            # mitmweb shows it now, not once every responseheaders hook is done (a
            # response-phase delay would keep the endpoint on screen meanwhile).
            ctx.master.addons.trigger(hooks.UpdateHook([flow]))

    def response(self, flow: http.HTTPFlow) -> None:
        restore(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        restore(flow)


def restore(flow: http.HTTPFlow) -> bool:
    """Point a redirected flow's request at what the client called again; whether it did.

    Only while it points at the endpoint it was sent to: the fault sink may hold it for a
    moment (and hands it back later), a user's script or map_remote may have sent it elsewhere.
    """
    redirect: dict[str, Any] | None = flow.metadata.get(REDIRECT)
    req = flow.request
    if not redirect or _points_at(req) != redirect["to"]:
        return False
    req.data.scheme = redirect["scheme"].encode()
    req.data.host = redirect["host"]
    req.data.port = redirect["port"]
    return True
