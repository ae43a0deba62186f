"""Routes control-plane requests (FIS API, LocalStack Chaos API, health) to their handlers.

Plain data in, plain data out: the addon turns a mitmproxy flow into an `ApiRequest` and the
`ApiResponse` back into a flow response, so this router is testable without mitmproxy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from fisproxy import __version__
from fisproxy.fis.api import FisApi
from fisproxy.fis.chaos import ChaosApi
from fisproxy.httpdata import ApiRequest, ApiResponse

# fis.<region>.amazonaws.com, fis-fips..., fis.<region>.api.aws: FIS API calls made through the proxy.
FIS_HOST = re.compile(r"^fis(?:-fips)?\.([a-z0-9-]+)\.(?:amazonaws\.com(?:\.cn)?|api\.aws)$")

Handler = Callable[[ApiRequest], ApiResponse | None]


def fis_host_region(host: str) -> str | None:
    """The region of a FIS API host, or None if `host` is not one."""
    match = FIS_HOST.match(host)
    return match.group(1) if match else None


@dataclass
class ControlRouter:
    fis: FisApi
    chaos: ChaosApi
    # Extra read-only endpoints (metrics, reports), checked before the FIS API. Each returns
    # None when the path is not its own.
    extra: tuple[Handler, ...] = ()

    def handle(self, request: ApiRequest, region: str) -> ApiResponse:
        if request.path == "/_fisproxy/health":
            return ApiResponse.json(200, {"status": "ok", "version": __version__})
        for handler in (self.chaos.handle, *self.extra):
            response = handler(request)
            if response is not None:
                return response
        if request.path.startswith("/_localstack/") or request.path.startswith("/_fisproxy/"):
            return ApiResponse.json(404, {"message": f"no such endpoint: {request.path}"})
        return self.fis.handle(request, region)

