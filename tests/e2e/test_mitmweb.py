"""`fisproxy web`: mitmweb with the addon. Checked through mitmweb's own REST API (the flow is
marked and commented, the fisproxy options are in the Options editor, the commands work) and,
where Chromium is installed, with a headless screenshot of the marked flow."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import struct
import zlib
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
import requests

from tests.e2e.conftest import Fisproxy, start_action
from tests.helpers import free_port, run_group, wait_until

PASSWORD = "fisproxy-test"
MITMPROXY_12 = int(version("mitmproxy").split(".")[0]) >= 12
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def web(tmp_path: Path, moto: str) -> Iterator[tuple[Fisproxy, str]]:
    web_port = free_port()
    extra: tuple[str, ...] = ("--web-port", str(web_port))
    if MITMPROXY_12:
        extra += ("--set", f"web_password={PASSWORD}")
    with Fisproxy(tmp_path, moto, extra_args=extra, subcommand="web").running() as proxy:
        yield proxy, f"http://127.0.0.1:{web_port}"


def web_session() -> requests.Session:
    """mitmweb's auth (12.x) and XSRF double-submit, portable across 11 and 12."""
    s = requests.Session()
    s.trust_env = False
    s.headers["Authorization"] = f"Bearer {PASSWORD}"
    token = secrets.token_hex(16)
    for name in ("_xsrf", "_mitmproxy_xsrf"):
        s.cookies.set(name, token)
    s.headers["X-XSRFToken"] = token
    return s


def command(s: requests.Session, url: str, name: str, *args: str) -> Any:
    resp = s.post(f"{url}/commands/{name}", json={"arguments": list(args)}, timeout=10)
    resp.raise_for_status()
    return resp.json()


def test_marked_flow_options_and_commands(web: tuple[Fisproxy, str], tmp_path: Path) -> None:
    proxy, url = web
    s = web_session()
    exp_id = start_action(proxy, "fisproxy:api:error", {
        "service": "sns", "operations": "ListTopics", "statusCode": "400", "errorCode": "Throttling",
    })
    with pytest.raises(botocore.exceptions.ClientError):
        proxy.client("sns", retries={"total_max_attempts": 1}).list_topics()

    def faulted() -> list[dict[str, Any]]:
        flows = s.get(f"{url}/flows", timeout=10).json()
        # The flow went to moto (--aws-endpoint); the Host header, shown by mitmweb, is SNS's.
        return [f for f in flows if f["request"]["pretty_host"].startswith("sns.") and f.get("marked")]

    wait_until(lambda: bool(faulted()), 10, "a marked flow in mitmweb")
    flow = faulted()[0]
    assert flow["marked"] == "\N{COLLISION SYMBOL}"  # :boom:
    assert exp_id in flow["comment"] and "sns.ListTopics" in flow["comment"]
    headers = dict(flow["response"]["headers"])
    assert headers["x-fisproxy-fault"] == f"{exp_id}/fault/error"

    options = s.get(f"{url}/options", timeout=10).json()
    assert options["fisproxy_aws_endpoint"]["value"] == proxy.upstream
    assert "fisproxy_seed" in options and options["fisproxy_seed"]["help"]

    listed = json.loads(command(s, url, "fisproxy.experiments")["value"])
    assert exp_id in {e["id"] for e in listed}
    assert command(s, url, "fisproxy.stop", exp_id)["value"] in ("stopping", "stopped")



@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)")
def test_screenshot_of_a_marked_flow(web: tuple[Fisproxy, str], tmp_path: Path) -> None:
    proxy, url = web
    s = web_session()
    start_action(proxy, "fisproxy:api:error", {
        "service": "sns", "operations": "ListTopics", "statusCode": "400", "errorCode": "Throttling",
    })
    with pytest.raises(botocore.exceptions.ClientError):
        proxy.client("sns", retries={"total_max_attempts": 1}).list_topics()
    def marked() -> list[dict[str, Any]]:
        return [f for f in s.get(f"{url}/flows", timeout=10).json() if f.get("marked")]

    wait_until(lambda: bool(marked()), 10, "a marked flow in mitmweb")
    flow = marked()[0]
    shot = tmp_path / "mitmweb.png"
    token = f"?token={PASSWORD}" if MITMPROXY_12 else ""
    screenshot(f"{url}/{token}#/flows/{flow['id']}/response", shot)
    width, height, colours = png_summary(shot.read_bytes())
    assert (width, height) == (1400, 800)  # the page as rendered, not an error stub
    assert colours > 20, "a blank page, not mitmweb with a flow"
    if os.environ.get("FISPROXY_SCREENSHOT"):  # how docs/mitmweb.png is made
        shutil.copy(shot, os.environ["FISPROXY_SCREENSHOT"])


def png_summary(data: bytes) -> tuple[int, int, int]:
    """(width, height, distinct byte values of the pixel data) of an 8-bit RGB(A) PNG."""
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    pos, idat, width, height = 8, b"", 0, 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    pixels = zlib.decompress(idat)
    return width, height, len(set(pixels))


def screenshot(page: str, out: Path) -> None:
    assert CHROMIUM
    result = run_group(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={out.parent / 'chromium-profile'}", "--window-size=1400,800",
         "--virtual-time-budget=5000", f"--screenshot={out}", page],
        timeout=90,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
