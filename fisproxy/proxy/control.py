"""The control plane: FIS API, LocalStack Chaos API, health, metrics, reports and the console.

`ControlPlane.serve` is the one entry for every control request, whichever way it came: the
control port (`controlserver.py`, its own HTTP server on its own threads) or a FIS hostname
through the proxy (`controlplane.py`). It parses the request target once, refuses what a web page
may have sent on its own (`browser.py`: DNS rebinding, CSRF), authorizes that path, and routes
that same path: what is authorized is what is served. It never raises; every answer is an HTTP
response (FIS errors in FIS's rest-json shape).

Blocking (handlers write to the store): call it from a worker thread, never the event loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from fisproxy import __version__
from fisproxy.aws.identify import identify
from fisproxy.fis.api import FisApi, render_error
from fisproxy.fis.chaos import ChaosApi
from fisproxy.fis.ports import StoreUnavailable
from fisproxy.httpdata import ApiRequest, ApiResponse
from fisproxy.proxy import console
from fisproxy.proxy.auth import ControlAuth, denied_response
from fisproxy.proxy.browser import FIS_HOST, BrowserGuard

log = logging.getLogger(__name__)

HEALTH_PATH = "/_fisproxy/health"
DEFAULT_REGION = "us-east-1"
MAX_BODY_BYTES = 1 << 20  # FIS's own request limit is far below this

Handler = Callable[[ApiRequest], ApiResponse | None]


def fis_host_region(host: str) -> str | None:
    """The region of a FIS API host, or None if `host` is not one."""
    match = FIS_HOST.match(host)
    return match.group(1) if match else None


@dataclass(frozen=True, slots=True)
class ControlRequest:
    """A control request as received: `target` is the raw request target (origin form
    `/path?query`, or absolute form), `host` the Host header (or :authority)."""

    method: str
    target: str
    host: str
    headers: Mapping[str, str]
    body: bytes
    scheme: str = "http"


@dataclass
class ControlRouter:
    fis: FisApi
    chaos: ChaosApi
    # Extra endpoints (metrics, reports), checked before the FIS API. Each returns None when
    # the path is not its own.
    extra: tuple[Handler, ...] = ()
    health: Callable[[], dict[str, object]] = lambda: {}

    def handle(self, request: ApiRequest, region: str) -> ApiResponse:
        if request.path == HEALTH_PATH:
            return ApiResponse.json(200, {"status": "ok", "version": __version__, **self.health()})
        for handler in (console.handle, self.chaos.handle, *self.extra):
            response = handler(request)
            if response is not None:
                return response
        if request.path.startswith("/_localstack/") or request.path.startswith("/_fisproxy/"):
            return ApiResponse.json(404, {"message": f"no such endpoint: {request.path}"})
        return self.fis.handle(request, region)


class ControlPlane:
    def __init__(self, router: ControlRouter, auth: ControlAuth, guard: BrowserGuard | None = None) -> None:
        self.router = router
        self.auth = auth
        self.guard = guard or BrowserGuard()

    def serve(self, req: ControlRequest) -> ApiResponse:
        answer = self._answer(req)
        # JSON is never run as a script, nor sniffed as anything else, by a page that loads it.
        return ApiResponse(answer.status, {**answer.headers, "x-content-type-options": "nosniff"}, answer.body)

    def _answer(self, req: ControlRequest) -> ApiResponse:
        try:
            return self._serve(req)
        except StoreUnavailable as e:  # the shared store is down: nothing changed, try again
            log.debug("fisproxy: control API: the store is unavailable: %s", e)  # announced by the store
            return render_error("ServiceUnavailableException", 503, f"fisproxy's store is unavailable: {e}")
        except Exception:
            log.exception("fisproxy: control API error")
            return render_error("InternalServerException", 500, "internal error in fisproxy; see its log")

    def _serve(self, req: ControlRequest) -> ApiResponse:
        if len(req.body) > MAX_BODY_BYTES:
            return too_large()
        path, query = split_target(req.target)
        if not path.startswith("/"):
            return render_error("ValidationException", 400, "The request target is not a path.")
        refused = self.guard.check(req.method, req.host, req.headers, req.body, scheme=req.scheme)
        if refused is not None:
            log.info("fisproxy: control API request refused: %s %s: %s", req.method, path,
                     refused.headers.get("x-amzn-ErrorType", refused.status))
            return refused
        if not (self.auth.is_public(req.method, path) or console.is_console(req.method, path)):
            # Authorized from the path that is served; the Host is read only for SigV4.
            refusal = self.auth.check(req.method, path, req.headers, req.body, query=query,
                                      scheme=req.scheme, authority=req.host or None)
            if refusal is not None:
                log.info("fisproxy: control API request refused: %s %s: %s", req.method, path, refusal)
                return denied_response(refusal)
        api_request = ApiRequest(
            method=req.method, path=path,
            query=parse_qs(query, keep_blank_values=True), headers=req.headers, body=req.body,
        )
        return self.router.handle(api_request, self._region(req, path))

    @staticmethod
    def _region(req: ControlRequest, path: str) -> str:
        host = req.host.rsplit(":", 1)[0] if not req.host.endswith("]") else req.host
        region = fis_host_region(host)
        if region is None:
            # The region the client signed for (`aws fis --region eu-west-1 ...`).
            call = identify(req.method, host, path, req.headers)
            region = call.region if call else None
        return region or DEFAULT_REGION


def split_target(target: str) -> tuple[str, str]:
    """(raw path, raw query) of a request target; the path exactly as it will be routed."""
    if not target.startswith("/"):
        split = urlsplit(target)  # absolute form: scheme://host/path?query
        return split.path or "/", split.query
    path, _, query = target.partition("?")
    return path, query


def too_large() -> ApiResponse:
    return render_error(
        "ValidationException", 413,
        f"The request body is larger than {MAX_BODY_BYTES} bytes; fisproxy does not accept it.")
