"""The console's route on the control plane: its three files are served without credentials
(they hold no data) and with the headers that keep foreign pages out; everything else still
needs the token."""

from __future__ import annotations

from pathlib import Path

import pytest

from fisproxy.fis.api import FisApi
from fisproxy.fis.chaos import ChaosApi, ChaosState
from fisproxy.proxy import console
from fisproxy.proxy.auth import ControlAuth
from fisproxy.proxy.control import ControlPlane, ControlRequest, ControlRouter
from fisproxy.store import Store
from tests.fis.test_api import FakeRunner

TOKEN = "t0ken"


@pytest.fixture
def plane(tmp_path: Path) -> ControlPlane:
    store = Store(tmp_path / "s.sqlite")
    router = ControlRouter(fis=FisApi(store, FakeRunner(store)), chaos=ChaosApi(ChaosState()))
    return ControlPlane(router, ControlAuth.from_options(TOKEN, []))


def serve(plane: ControlPlane, method: str, target: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    r = plane.serve(ControlRequest(method, target, "127.0.0.1:8082", headers, b""))
    return r.status, dict(r.headers), r.body


@pytest.mark.parametrize(("path", "kind"), [
    ("/", "text/html"), ("/_fisproxy/console/console.js", "text/javascript"),
    ("/_fisproxy/console/console.css", "text/css")])
def test_console_files_need_no_token_and_keep_foreign_pages_out(plane: ControlPlane, path: str, kind: str) -> None:
    status, headers, body = serve(plane, "GET", path)
    assert status == 200 and headers["content-type"].startswith(kind) and body
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert serve(plane, "HEAD", path)[2] == b""


def test_the_page_loads_only_its_own_files(plane: ControlPlane) -> None:
    page = serve(plane, "GET", "/")[2].decode()
    assert 'src="/_fisproxy/console/console.js"' in page and 'href="/_fisproxy/console/console.css"' in page
    assert "http:" not in page and "https:" not in page and "<script>" not in page  # no inline script


def test_everything_else_still_needs_the_token(plane: ControlPlane) -> None:
    assert serve(plane, "GET", "/experiments")[0] == 403
    assert serve(plane, "GET", "/_fisproxy/console/other.js")[0] == 403
    json = {"content-type": "application/json"}  # (a POST without it is refused first: browser.py)
    assert serve(plane, "POST", "/", **json)[0] == 403  # not a console file: authorized like the API
    assert serve(plane, "GET", "/experiments", authorization=f"Bearer {TOKEN}")[0] == 200
    assert serve(plane, "POST", "/", authorization=f"Bearer {TOKEN}", **json)[0] == 405


def test_is_console_is_exact() -> None:
    assert console.is_console("GET", "/") and console.is_console("head", "/_fisproxy/console/console.js")
    assert not console.is_console("GET", "/_fisproxy/console/") and not console.is_console("GET", "//")
    assert not console.is_console("POST", "/")
