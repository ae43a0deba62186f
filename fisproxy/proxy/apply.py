"""Applying a decided fault to a mitmproxy flow: wait, answer, answer after upstream, drop, hang.

Wiring in the addon (all helpers are cheap and never block the event loop):

- `requestheaders`: `mark`, then `wait` / `respond` / `drop` / `hang`. Pass `flow=flow` to
  `wait`: mitmproxy reads on while a hook awaits and would queue a whole upload in memory.
- `responseheaders`: `on_responseheaders(flow)` first; for phase "response": `mark`, then
  `wait` / `respond_after_upstream` / `drop` / `hang`.
- `response`: `on_response(flow)` first, for every flow. **Required** after
  `respond_after_upstream`: when the upstream response has no body (S3 PutObject's 200 with
  Content-Length 0, HEAD, 204) mitmproxy does not stream it and overwrites the body with the
  (empty) upstream one just before this hook; `on_response` puts the error body back.
- `client_disconnected`: `on_client_disconnected(client)` (optional: lets `hang` notice a
  little sooner).

Why the body of an upload never gets buffered: see `sink.py`. Why `respond_after_upstream`
streams: mitmproxy would otherwise read the whole upstream body into memory before the
`response` hook; with `response.stream` set to a callable it forwards chunks as they arrive,
and ours drops them and emits the error body at the end. That is sound on both sides of
HTTP/1.1 and HTTP/2 (mitmproxy 11.0.2/12.x `proxy/layers/http/__init__.py`):
`start_response_stream` sends the replacement head with our Content-Length; a callable
returning no chunks sends nothing (no empty DATA frames on h2); at the end our body goes out
and the framing matches; the upstream connection keeps its own response object, so its
keep-alive and body framing are untouched; h2's outbound validation is off
(`validate_outbound_headers=False`) and our length is exact anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from mitmproxy import http
from mitmproxy.net.http import status_codes

from fisproxy.proxy.connection import (
    Stop,
    drop,
    hang,
    has_body,
    has_large_body,
    on_client_disconnected,
    paused_reading,
)
from fisproxy.proxy.sink import TOKEN_HEADER, FaultSink

__all__ = [
    "FAULT_HEADER",
    "FaultSink",
    "drop",
    "hang",
    "has_body",
    "has_large_body",
    "mark",
    "on_client_disconnected",
    "on_response",
    "on_responseheaders",
    "paused_reading",
    "respond",
    "respond_after_upstream",
    "wait",
]

logger = logging.getLogger(__name__)

FAULT_HEADER = "x-fisproxy-fault"
_LABELS = "fisproxy_fault_labels"  # flow.metadata: labels for FAULT_HEADER, in order
_SINK = "fisproxy_sink"  # flow.metadata: where the flow went before the sink took it


async def wait(
    delay_ms: float, stopped: Stop | None, *, flow: http.HTTPFlow | None = None
) -> None:
    """Sleep `delay_ms`, returning early as soon as `stopped` is set (or at once if it is).

    Pass `flow` to hold its body back meanwhile (an HTTP/1 upload in `requestheaders`, the
    upstream body in `responseheaders`): mitmproxy otherwise keeps reading during the delay
    and queues all of it in memory.
    """
    if delay_ms <= 0 or (stopped is not None and stopped.is_set()):
        return
    with paused_reading(flow) if flow is not None else contextlib.nullcontext():
        if stopped is None:
            await asyncio.sleep(delay_ms / 1000)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay_ms / 1000):
                await stopped.wait()


def respond(
    flow: http.HTTPFlow,
    status: int,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    *,
    sink: FaultSink,
) -> None:
    """Answer `flow` with this response instead of forwarding it (call from `requestheaders`).

    A request with a large body (over 1 MiB, chunked, or of unknown length) is streamed to
    `sink`, which drains it and answers, so a 200 MB upload is never held in memory; the client
    then also gets `Connection: close`. Otherwise (a small body is buffered; or no running
    sink, or behind an upstream proxy, which could not reach the sink) the response is set
    directly and the client's connection stays open, as with a real AWS error.
    """
    response_headers = _headers(flow, headers, body)
    body = _sendable(flow, body)
    if has_large_body(flow.request):
        if sink.running and flow.server_conn.via is None:
            token = sink.register(status, response_headers.items(multi=True), body)
            _to_sink(flow, sink, token)
            return
        logger.warning("fisproxy: fault sink unavailable; buffering the request body of %s %s",
                       flow.request.pretty_host, flow.request.path.split("?", 1)[0])
    flow.request.stream = False  # mitmproxy refuses a response together with streaming
    flow.response = _response(status, response_headers, body)


def respond_after_upstream(
    flow: http.HTTPFlow, status: int, headers: Sequence[tuple[str, str]], body: bytes
) -> None:
    """Replace the upstream response the client would get (call from `responseheaders`).

    The request already reached upstream (the write happened). The upstream body is read and
    discarded as it arrives, never buffered; the client gets exactly status/headers/body.
    Needs `on_response` in the addon's `response` hook (see the module docstring).
    """
    upstream = flow.response
    if upstream is None:
        raise ValueError("respond_after_upstream needs the upstream response (responseheaders)")
    replacement = _response(status, _headers(flow, headers, body), _sendable(flow, body))
    replacement.http_version = upstream.http_version
    replacement.timestamp_start = upstream.timestamp_start
    replacement.stream = _ReplaceBody(_sendable(flow, body))
    flow.response = replacement


def mark(flow: http.HTTPFlow, label: str | None, comment: str) -> None:
    """Record a fault on the flow for clients and mitmweb.

    `label` (e.g. `<experiment>/<action>/error`, or several joined by ", ") goes into the
    `x-fisproxy-fault` response header of whatever response the client gets (None: no
    header). `flow.marked` becomes ":boom:" (":hourglass:" when every fault is latency) and
    `comment` is added to `flow.comment`. Safe to call more than once.
    """
    labels: list[str] = flow.metadata.setdefault(_LABELS, [])
    if label and label not in labels:
        labels.append(label)
    kinds = [part.strip().rsplit("/", 1)[-1] for text in labels for part in text.split(",")]
    flow.marked = ":hourglass:" if kinds and all(k == "latency" for k in kinds) else ":boom:"
    if comment and comment not in flow.comment:
        flow.comment = f"{flow.comment}\n{comment}" if flow.comment else comment
    if flow.response is not None:
        _stamp(flow, flow.response)


def on_responseheaders(flow: http.HTTPFlow) -> None:
    """Call first in `responseheaders`: labels the response, tidies a sink-redirected flow."""
    _restore_destination(flow)
    if flow.response is not None:
        _stamp(flow, flow.response)


def on_response(flow: http.HTTPFlow) -> None:
    """Call first in `response`: completes `respond_after_upstream`, labels the response."""
    response = flow.response
    if response is None:
        return
    replace = response.stream
    if isinstance(replace, _ReplaceBody):
        if not replace.sent:
            # The upstream response had no body, so it was not streamed and mitmproxy just
            # stored that empty body in ours; the headers we set are still the ones to send.
            response.raw_content = replace.body
            replace.sent = True
        elif response.raw_content != replace.body:
            response.raw_content = replace.body  # for mitmweb only; already sent
        response.trailers = None  # upstream trailers belong to the discarded body
    _restore_destination(flow)
    _stamp(flow, response)


# ---- building responses ------------------------------------------------------------------


def _headers(flow: http.HTTPFlow, headers: Sequence[tuple[str, str]], body: bytes) -> http.Headers:
    result = http.Headers(
        [(k.encode("utf-8", "surrogateescape"), v.encode("utf-8", "surrogateescape"))
         for k, v in headers]
    )
    result.pop("transfer-encoding", None)  # we frame with Content-Length
    # A HEAD error may announce the length the GET would have had; otherwise frame the body.
    if flow.request.method.upper() != "HEAD" or "content-length" not in result:
        result["content-length"] = str(len(body))
    labels = flow.metadata.get(_LABELS)
    if labels:
        result[FAULT_HEADER] = ", ".join(labels)
    return result


def _sendable(flow: http.HTTPFlow, body: bytes) -> bytes:
    # mitmproxy would send a body after a HEAD response head; the client would misread it.
    return b"" if flow.request.method.upper() == "HEAD" else body


def _response(status: int, headers: http.Headers, body: bytes) -> http.Response:
    # The constructor takes the body raw: never re-encoded, whatever Content-Encoding says.
    reason = status_codes.RESPONSES.get(status, "").encode()
    now = time.time()
    return http.Response(b"HTTP/1.1", status, reason, headers, body, None, now, now)


def _stamp(flow: http.HTTPFlow, response: http.Response) -> None:
    labels = flow.metadata.get(_LABELS)
    if labels:
        response.headers[FAULT_HEADER] = ", ".join(labels)


class _ReplaceBody:
    """`response.stream` callable: swallow upstream chunks, emit `body` once at the end."""

    __slots__ = ("body", "sent")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.sent = False

    def __call__(self, chunk: bytes) -> Iterable[bytes] | bytes:
        if chunk or self.sent:
            return ()  # nothing to send (an empty iterable: not even an empty h2 DATA frame)
        self.sent = True
        return self.body  # b"" (HEAD) is "no chunk" for mitmproxy


# ---- the upload sink ---------------------------------------------------------------------


@dataclass(slots=True)
class _Destination:
    scheme: str
    host: str
    port: int
    added_chunked: bool
    restored: bool = False


def _to_sink(flow: http.HTTPFlow, sink: FaultSink, token: str) -> None:
    request = flow.request
    assert sink.host is not None and sink.port is not None
    if request.is_http2 or request.is_http3:
        framed = "content-length" in request.headers or "chunked" in request.headers.get(
            "transfer-encoding", "").lower()
        added_chunked = not framed
    else:
        added_chunked = False
    if added_chunked:
        # Forwarded as HTTP/1.1, a length-less h2 body needs chunked framing to be drained.
        request.headers["transfer-encoding"] = "chunked"
    destination = _Destination(request.scheme, request.host, request.port, added_chunked)
    flow.metadata[_SINK] = f"{request.scheme}://{request.host}:{request.port}"
    request.headers[TOKEN_HEADER] = token
    # Raw fields: the Host header stays as the client sent it (setters would rewrite it).
    request.data.scheme = b"http"
    request.data.host = sink.host
    request.data.port = sink.port
    request.stream = _ToSink(flow, destination)


class _ToSink:
    """`request.stream` callable: forward chunks as they are; at the end put the original
    destination back on the flow, so the `request` hook and mitmweb see the real target."""

    __slots__ = ("destination", "flow")

    def __init__(self, flow: http.HTTPFlow, destination: _Destination) -> None:
        self.flow = flow
        self.destination = destination

    def __call__(self, chunk: bytes) -> bytes:
        if not chunk:
            _restore(self.flow.request, self.destination)
        return chunk


def _restore_destination(flow: http.HTTPFlow) -> None:
    stream = flow.request.stream
    if isinstance(stream, _ToSink):
        _restore(flow.request, stream.destination)
        # The request is complete once a response is back: framing we added can go too.
        if stream.destination.added_chunked and flow.response is not None:
            flow.request.headers.pop("transfer-encoding", None)
            stream.destination.added_chunked = False


def _restore(request: http.Request, destination: _Destination) -> None:
    if destination.restored:
        return
    destination.restored = True
    request.data.scheme = destination.scheme.encode()
    request.data.host = destination.host
    request.data.port = destination.port
    request.headers.pop(TOKEN_HEADER, None)
