"""HTTP/2 clients (curl --http2 through the proxy, TLS intercepted): errors arrive as
responses, close/reset end the one stream (RST_STREAM), hang lasts until the client gives up."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.e2e.conftest import Fisproxy, start_action
from tests.helpers import clean_env

URL = "https://sns.us-east-1.amazonaws.com/?Action=ListTopics&Version=2010-03-31"
HTTP2 = shutil.which("curl") is not None and "HTTP2" in subprocess.run(
    ["curl", "--version"], capture_output=True, text=True).stdout

pytestmark = pytest.mark.skipif(not HTTP2, reason="curl with HTTP/2 support is not installed")


def curl(proxy: Fisproxy) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-s", "-S", "--http2", "-x", proxy.proxy_url, "--cacert", proxy.ca, "-D", "-",
         "-o", "/dev/null", "--max-time", "4", URL],
        capture_output=True, text=True, env=clean_env(), timeout=30,
    )


def test_error_over_http2(proxy: Fisproxy) -> None:
    exp_id = start_action(proxy, "fisproxy:api:error", {
        "service": "sns", "operations": "ListTopics", "statusCode": "400", "errorCode": "Throttling"})
    result = curl(proxy)
    assert result.returncode == 0, result.stderr
    assert "HTTP/2 400" in result.stdout
    assert f"x-fisproxy-fault: {exp_id}/fault/error" in result.stdout


@pytest.mark.parametrize(("mode", "exit_code"), [("close", 92), ("reset", 92), ("hang", 28)])
def test_disconnect_over_http2(proxy: Fisproxy, mode: str, exit_code: int) -> None:
    start_action(proxy, "fisproxy:api:disconnect", {"service": "sns", "operations": "ListTopics", "mode": mode})
    result = curl(proxy)
    assert result.returncode == exit_code, result.stderr  # 92: stream not closed cleanly; 28: timeout
