"""The FIS API through the proxy: `fis.<region>.amazonaws.com` answered by fisproxy itself.

`aws fis ...` and SDKs behind HTTPS_PROXY reach FIS's real hostname; this addon answers those
requests (never forwarding them, whatever their size) with the same control plane as the
control port. Its work is blocking (store writes), so it runs in a worker thread while the
flow's hook awaits it: the event loop never waits on it.

A FIS request body is small; one over `control.MAX_BODY_BYTES`, or of unknown length, is
refused with 413 while it streams into the fault sink (never held in memory, never forwarded).
"""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import http

from fisproxy.fis.api import render_error
from fisproxy.proxy import apply
from fisproxy.proxy.control import MAX_BODY_BYTES, ControlRequest, fis_host_region, too_large
from fisproxy.proxy.redirect import original_host
from fisproxy.proxy.runtime import Runtime

logger = logging.getLogger("fisproxy")

CONTROL = "fisproxy_control"  # flow.metadata: this flow is answered by the control plane


def is_control_flow(flow: http.HTTPFlow) -> bool:
    return bool(flow.metadata.get(CONTROL))


class FisHost:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live:
            return
        host = original_host(flow)
        if not host.startswith("fis") or fis_host_region(host) is None:
            return
        flow.metadata[CONTROL] = True
        req = flow.request
        length = req.headers.get("content-length", "")
        small = length.isdigit() and int(length) <= MAX_BODY_BYTES
        if not small and apply.has_body(req):
            refused = too_large()
            sink = self.runtime.sink
            if sink is not None:
                apply.respond(flow, refused.status, list(refused.headers.items()), refused.body, sink=sink)
            else:
                flow.kill()
            return
        req.stream = False  # a small body, read whole: it is answered here, never forwarded

    async def request(self, flow: http.HTTPFlow) -> None:
        if not is_control_flow(flow) or flow.response or flow.error or not flow.live:
            return
        runtime = self.runtime
        req = flow.request
        if not runtime.ready or runtime.plane is None:
            answer = render_error("ServiceUnavailableException", 503, "fisproxy is starting; try again")
        else:
            control = ControlRequest(
                method=req.method, target=req.path, host=req.host_header or original_host(flow),
                headers=req.headers, body=req.raw_content or b"", scheme=req.scheme)
            answer = await asyncio.to_thread(runtime.plane.serve, control)
        flow.response = http.Response.make(answer.status, answer.body, dict(answer.headers))
