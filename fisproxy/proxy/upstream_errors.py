"""A call fisproxy cannot forward gets a 502 that says which upstream refused and why.

When mitmproxy cannot connect upstream it answers 502 itself, with an HTML page
(`proxy/layers/http/_http1.py: make_error_response`, 11.0.2 and 12.x), after the `error` hook,
which cannot change it; botocore shows an HTML 5xx as "Bad Gateway" and nothing more
(`parsers.py: _is_generic_error_response`). So this addon answers first, in `requestheaders`,
but only for upstreams that are suspect: the `--aws-endpoint` until it has answered once, and
any address whose last connection failed (`server_connect_error`). For those it tries one TCP
connection (awaited, shared by concurrent requests): if that fails, the call gets a 502 in its
service's protocol (`aws/errors.py`, code `BadGateway`) whose message names the upstream and
the reason, and mitmproxy never connects; if it works, the address is trusted again. A healthy
upstream costs one dict lookup per request. Requests with large bodies are left to mitmproxy
(answering them early would mean buffering the upload).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import OrderedDict
from collections.abc import Awaitable

from mitmproxy import ctx, http
from mitmproxy.proxy import server_hooks
from mitmproxy.utils import human

from fisproxy.aws.errors import render_error
from fisproxy.aws.identify import identify
from fisproxy.proxy.connection import has_large_body
from fisproxy.proxy.controlplane import is_control_flow
from fisproxy.proxy.settings import parse_endpoint

logger = logging.getLogger(__name__)

Address = tuple[str, int]

STATUS = 502
CODE = "BadGateway"
CONNECT_TIMEOUT_SECONDS = 5.0
# Suspect addresses remembered at most; without --aws-endpoint clients choose the hosts.
MAX_SUSPECTS = 256


async def connect_problem(address: Address, timeout: float = CONNECT_TIMEOUT_SECONDS) -> str | None:
    """Why a TCP connection to `address` fails (`Connection refused`, ...), or None."""
    host, port = address
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except socket.gaierror as e:
        return f"cannot resolve {host} ({e.strerror})"
    except OSError as e:
        return os.strerror(e.errno) if e.errno else str(e)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


class UpstreamErrors:
    def __init__(self) -> None:
        self._endpoint: Address | None = None
        self._endpoint_url: str | None = None
        # Suspect address -> why (None: not known to answer yet). Oldest first.
        self._suspects: OrderedDict[Address, str | None] = OrderedDict()
        self._probes: dict[Address, asyncio.Task[str | None]] = {}

    def configure(self, updated: set[str]) -> None:
        if "fisproxy_aws_endpoint" not in updated:
            return
        url = getattr(ctx.options, "fisproxy_aws_endpoint", None)
        if self._endpoint is not None:
            self._suspects.pop(self._endpoint, None)
        self._endpoint = self._endpoint_url = None
        if url:
            _, host, port = parse_endpoint(url)  # the main addon reports a bad value
            self._endpoint, self._endpoint_url = (host, port), url
            self._suspect(self._endpoint, None)

    def done(self) -> None:
        for task in self._probes.values():
            task.cancel()
        self._probes.clear()

    # ---- what mitmproxy saw ------------------------------------------------------------

    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        if self._suspects and data.server.address is not None:
            self._trust(tuple(data.server.address))  # type: ignore[arg-type]

    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        if data.server.address is not None:
            self._suspect(tuple(data.server.address), data.server.error)  # type: ignore[arg-type]

    # ---- answering -----------------------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        if not self._suspects or flow.response or flow.error or not flow.live or is_control_flow(flow):
            return None  # (control flows are answered by fisproxy, never forwarded)
        address = (flow.request.host, flow.request.port)
        if address not in self._suspects or has_large_body(flow.request):
            return None
        return self._answer_if_down(flow, address)

    async def _answer_if_down(self, flow: http.HTTPFlow, address: Address) -> None:
        problem = await asyncio.shield(self._probe(address))
        if problem is None:
            self._trust(address)
            return
        self._suspect(address, problem)
        if flow.response or flow.error or not flow.live:
            return
        flow.response = self.bad_gateway(flow, address, problem)

    def _probe(self, address: Address) -> asyncio.Task[str | None]:
        """One connection attempt per address at a time; concurrent requests share it."""
        task = self._probes.get(address)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                connect_problem(address), name=f"fisproxy-probe-{human.format_address(address)}")
            self._probes[address] = task
            task.add_done_callback(lambda _: self._probes.pop(address, None))
        return task

    def bad_gateway(self, flow: http.HTTPFlow, address: Address, problem: str) -> http.Response:
        req = flow.request
        message = f"fisproxy cannot reach {self._name(address)} for {req.pretty_host}: {problem}"
        call = identify(req.method, req.pretty_host, req.path, req.headers)
        if call is None:
            body = b"" if req.method.upper() == "HEAD" else message.encode()
            return http.Response.make(STATUS, body, {"content-type": "text/plain; charset=utf-8"})
        err = render_error(call, STATUS, CODE, message, method=req.method)
        headers = http.Headers([(k.encode(), v.encode()) for k, v in err.headers])
        return http.Response.make(err.status, err.body, headers)

    # ---- the suspect list ------------------------------------------------------------------

    def _suspect(self, address: Address, problem: str | None) -> None:
        """Remember `address` as suspect (`problem` None: not known to answer yet); say so
        once when it starts failing."""
        was_failing = self._suspects.get(address) is not None
        self._suspects[address] = problem
        self._suspects.move_to_end(address)
        while len(self._suspects) > MAX_SUSPECTS:
            self._suspects.popitem(last=False)
        if problem is not None and not was_failing:
            logger.warning("fisproxy: cannot connect to %s: %s; calls to it get a %d saying so "
                           "until it answers", self._name(address), problem, STATUS)

    def _trust(self, address: Address) -> None:
        if self._suspects.pop(address, None) is not None:
            logger.info("fisproxy: %s answers again", self._name(address))

    def _name(self, address: Address) -> str:
        if address == self._endpoint:
            return f"the --aws-endpoint {self._endpoint_url}"
        return f"the upstream {human.format_address(address)}"
