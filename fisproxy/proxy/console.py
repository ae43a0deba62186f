"""The console in the browser: `GET /` on the control port, and its script and style sheet.

The files are fisproxy's own (`fisproxy/console/`), served with everything else they need: no
asset comes from the internet, so the console works offline. The page holds no data: it reads
the FIS API, the Chaos API and the reports with the control API's authentication (the token,
typed in or given as `/#token=...`), so serving it needs none. It may not be framed, and its
Content-Security-Policy lets it run only its own script and talk only to this origin.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fisproxy.httpdata import ApiRequest, ApiResponse

PREFIX = "/_fisproxy/console/"
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    PREFIX + "console.js": ("console.js", "text/javascript; charset=utf-8"),
    PREFIX + "console.css": ("console.css", "text/css; charset=utf-8"),
}
HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def is_console(method: str, path: str) -> bool:
    """A request for one of the console's files (static, holding no data: no credentials needed)."""
    return method.upper() in ("GET", "HEAD") and path in FILES


@cache
def _read(name: str) -> bytes:
    return resources.files("fisproxy.console").joinpath(name).read_bytes()


def handle(request: ApiRequest) -> ApiResponse | None:
    """The console's files; None for any other path."""
    found = FILES.get(request.path)
    if found is None:
        return None
    if request.method not in ("GET", "HEAD"):
        return ApiResponse.json(405, {"message": "use GET"}, {"allow": "GET, HEAD"})
    name, content_type = found
    body = b"" if request.method == "HEAD" else _read(name)
    return ApiResponse(200, {"content-type": content_type, **HEADERS}, body)
