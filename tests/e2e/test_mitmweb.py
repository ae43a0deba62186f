"""`fisproxy web`: mitmweb with fisproxy built in, against moto, with boto3 through the proxy.

Checked through mitmweb's own HTTP API (flows, saved flows, options, commands, replay) and, where
Chromium is installed, in the page as Chromium renders it (its DOM, and a screenshot).

`docs/mitmweb.png` is the screenshot of `test_the_rendered_page`:
`FISPROXY_SCREENSHOT=$PWD/docs/mitmweb.png .venv/bin/python -m pytest tests/e2e/test_mitmweb.py
-k rendered` (with Debian's fonts-noto-color-emoji installed for the flow's marker).
"""

from __future__ import annotations

import html
import io
import json
import os
import re
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
from mitmproxy import http
from mitmproxy import io as mitmio

from tests.e2e.conftest import Fisproxy, wait_for_state
from tests.helpers import free_port, run_group, wait_until

PASSWORD = "fisproxy-test"
MITMPROXY_12 = int(version("mitmproxy").split(".")[0]) >= 12
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SNS = "sns.us-east-1.amazonaws.com"
TEMPLATE_NAME = "throttle-sns"


class Web:
    """mitmweb's HTTP API, with its auth (12.x) and XSRF double-submit, portable across 11 and 12."""

    def __init__(self, proxy: Fisproxy, url: str) -> None:
        self.proxy = proxy
        self.url = url
        self.session = s = requests.Session()
        s.trust_env = False
        s.headers["Authorization"] = f"Bearer {PASSWORD}"
        token = secrets.token_hex(16)
        for name in ("_xsrf", "_mitmproxy_xsrf"):
            s.cookies.set(name, token)
        s.headers["X-XSRFToken"] = token

    @property
    def page(self) -> str:
        """The page's address, as a user opens it (12.x asks for its token)."""
        return f"{self.url}/?token={PASSWORD}" if MITMPROXY_12 else f"{self.url}/"

    def get(self, path: str) -> requests.Response:
        resp = self.session.get(f"{self.url}{path}", timeout=10)
        resp.raise_for_status()
        return resp

    def post(self, path: str, **kw: Any) -> requests.Response:
        resp = self.session.post(f"{self.url}{path}", timeout=10, **kw)
        resp.raise_for_status()
        return resp

    def command(self, name: str, *args: str) -> dict[str, Any]:
        """`POST /commands/<name>`: {"value": ...} or {"error": ...}, as the command bar gets it."""
        answer: dict[str, Any] = self.post(f"/commands/{name}", json={"arguments": list(args)}).json()
        return answer

    def flows(self) -> list[dict[str, Any]]:
        flows: list[dict[str, Any]] = self.get("/flows").json()
        return flows

    def aws_flows(self) -> list[dict[str, Any]]:
        return [f for f in self.flows() if f["request"]["pretty_host"] == SNS]


@pytest.fixture(scope="module")
def web_proxy(tmp_path_factory: pytest.TempPathFactory, moto: str) -> Iterator[Web]:
    web_port = free_port()
    extra: tuple[str, ...] = ("--web-port", str(web_port))
    if MITMPROXY_12:
        extra += ("--set", f"web_password={PASSWORD}")
    proxy = Fisproxy(tmp_path_factory.mktemp("web"), moto, extra_args=extra, subcommand="web")
    with proxy.running():
        yield Web(proxy, f"http://127.0.0.1:{web_port}")


@pytest.fixture
def web(web_proxy: Web) -> Iterator[Web]:
    """The module's `fisproxy web`, with an empty flow list and no experiment left running."""
    web_proxy.post("/clear")
    yield web_proxy
    fis = web_proxy.proxy.fis()
    for exp in fis.list_experiments()["experiments"]:
        if exp["state"]["status"] in ("pending", "initiating", "running"):
            fis.stop_experiment(id=exp["id"])
            wait_for_state(fis, exp["id"], "stopped")


def throttle_template(proxy: Fisproxy) -> str:
    """A template named `throttle-sns` (its Name tag) throttling SNS ListTopics; its id."""
    fis = proxy.fis()
    for t in fis.list_experiment_templates()["experimentTemplates"]:
        if t.get("tags", {}).get("Name") == TEMPLATE_NAME:
            return str(t["id"])
    template = fis.create_experiment_template(
        description="Throttle SNS ListTopics", roleArn="arn:aws:iam::123456789012:role/fis",
        stopConditions=[{"source": "none"}], tags={"Name": TEMPLATE_NAME},
        actions={"throttle": {"actionId": "fisproxy:api:error", "parameters": {
            "service": "sns", "operations": "ListTopics", "statusCode": "400", "errorCode": "Throttling"}}},
    )["experimentTemplate"]
    return str(template["id"])


def start_from_the_command_bar(web: Web) -> str:
    throttle_template(web.proxy)
    started = web.command("fisproxy.start", TEMPLATE_NAME)
    assert "error" not in started, started
    exp_id = str(started["value"])
    wait_for_state(web.proxy.fis(), exp_id, "running")
    return exp_id


def traffic(web: Web) -> str:
    """SDK calls through the proxy: a topic created on moto, then ListTopics throttled by an
    experiment started from the command bar (three attempts: botocore's standard retries)."""
    sns = web.proxy.client("sns", retries={"mode": "standard", "total_max_attempts": 3})
    sns.create_topic(Name="orders")
    exp_id = start_from_the_command_bar(web)
    with pytest.raises(botocore.exceptions.ClientError, match="Throttling"):
        sns.list_topics()
    wait_until(lambda: sum(bool(f.get("marked")) for f in web.aws_flows()) == 3, 10, "3 marked flows in mitmweb")
    return exp_id


def test_an_experiment_starts_from_the_command_api_by_its_templates_name(web: Web) -> None:
    template_id = throttle_template(web.proxy)
    listed = json.loads(web.command("fisproxy.templates")["value"])
    assert {"id": template_id, "name": TEMPLATE_NAME, "description": "Throttle SNS ListTopics",
            "actions": {"throttle": "fisproxy:api:error"}} in listed
    assert set(web.command("fisproxy.start.options")["value"]) >= {template_id, TEMPLATE_NAME}

    exp_id = start_from_the_command_bar(web)
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        web.proxy.client("sns", retries={"total_max_attempts": 1}).list_topics()
    headers = raised.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-fisproxy-fault"] == f"{exp_id}/throttle/error"  # this experiment's fault
    rows = json.loads(web.command("fisproxy.experiments")["value"])
    assert [r["state"] for r in rows if r["id"] == exp_id] == ["running"]
    assert web.command("fisproxy.stop", exp_id)["value"] in ("stopping", "stopped")

    refused = web.command("fisproxy.start", "no-such-template")
    assert "value" not in refused and "Invalid choice" in refused["error"]


def test_flows_name_the_aws_host_the_client_called_marked_and_commented(web: Web) -> None:
    exp_id = traffic(web)
    moto_port = int(web.proxy.upstream.rsplit(":", 1)[1])
    flows = web.aws_flows()
    assert len(flows) == 4  # CreateTopic, then ListTopics three times
    for flow in flows:
        req = flow["request"]
        assert (req["scheme"], req["host"], req["port"]) == ("https", SNS, 443)  # not moto's
    created, *throttled = flows
    # Sent to moto all the same: mitmweb's Connection tab says where.
    assert created["response"]["status_code"] == 200 and not created.get("marked")
    assert tuple(created["server_conn"]["address"]) == ("127.0.0.1", moto_port)
    for flow in throttled:
        assert flow["marked"] == "\N{COLLISION SYMBOL}"  # :boom:
        assert flow["comment"] == f"fisproxy: {exp_id}/throttle/error on sns.ListTopics (us-east-1)"
        assert flow["response"]["status_code"] == 400
        assert dict(flow["response"]["headers"])["x-fisproxy-fault"] == f"{exp_id}/throttle/error"

    # Saved flows (File > Save: GET /flows/dump) name the same host.
    saved = [f for f in mitmio.FlowReader(io.BytesIO(web.get("/flows/dump").content)).stream()
             if isinstance(f, http.HTTPFlow) and f.request.pretty_host == SNS]
    assert [f.request.url for f in saved] == [f"https://{SNS}/"] * 4
    assert saved[0].metadata["fisproxy_redirect"]["to"] == web.proxy.upstream


def test_a_replayed_flow_goes_to_the_endpoint_again(web: Web) -> None:
    web.proxy.client("sns").create_topic(Name="replayed")
    wait_until(lambda: any(f.get("response") for f in web.aws_flows()), 10, "the flow in mitmweb")
    [flow] = web.aws_flows()
    first = flow["response"]["timestamp_end"]
    web.post(f"/flows/{flow['id']}/replay")  # mitmweb's Replay button

    def replayed() -> dict[str, Any] | None:
        [again] = web.aws_flows()
        done = again.get("response") and again["response"]["timestamp_end"] != first
        return again if done or again.get("error") else None

    wait_until(lambda: replayed() is not None, 20, "the replayed flow's answer")
    again = replayed()
    assert again is not None
    # AWS's hostnames do not resolve here: an answer came from moto, or there would be an error.
    assert again.get("error") is None and again["response"]["status_code"] == 200
    assert (again["request"]["scheme"], again["request"]["host"]) == ("https", SNS)


def test_options_show_fisproxys_settings_the_stream_size_in_bytes_and_comments(web: Web) -> None:
    options = web.get("/options").json()
    assert options["fisproxy_aws_endpoint"]["value"] == web.proxy.upstream
    assert "fisproxy_seed" in options and options["fisproxy_seed"]["help"]
    # The footer's `formatSize` reads a number of bytes; 1 MiB still streams large bodies.
    assert options["stream_large_bodies"]["value"] == "1048576"
    assert "comment" in options["web_columns"]["value"]


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (.ci/run installs it)")
def test_the_rendered_page(web: Web, tmp_path: Path) -> None:
    """What a user sees: the footer's stream size, the AWS host names and fisproxy's comments in
    the flow list, a throttled call's response with its fault header; and a screenshot."""
    exp_id = traffic(web)
    throttled = [f for f in web.aws_flows() if f.get("marked")][-1]
    page = f"{web.page}#/flows/{throttled['id']}/response"

    # The footer fills in once mitmweb's scripts have fetched the options: on a busy machine, not
    # always within Chromium's virtual time budget. Dumped again (three tries) until it has.
    for _ in range(3):
        dom = html.unescape(chromium(["--dump-dom", page], tmp_path).decode())
        footer = re.search(r"<footer.*?</footer>", dom, re.S)
        if footer is not None and "stream:" in footer.group(0):
            break
    assert footer is not None, dom[-3000:]
    assert "stream: 1mb" in footer.group(0) and "NaN" not in footer.group(0)
    assert f"https://{SNS}/" in dom and "127.0.0.1:" not in dom.split("<footer")[0]
    assert f"fisproxy: {exp_id}/throttle/error on sns.ListTopics" in dom  # the Comment column
    assert f"{exp_id}/throttle/error" in dom  # x-fisproxy-fault, in the response shown

    shot = tmp_path / "mitmweb.png"
    chromium([f"--screenshot={shot}", page], tmp_path)
    width, height, colours = png_summary(shot.read_bytes())
    assert (width, height) == (1600, 800)  # the page as rendered, not an error stub
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


def chromium(args: list[str], workdir: Path) -> bytes:
    """Headless Chromium on a 1600x800 window, given time for mitmweb's scripts to run; its
    standard output."""
    assert CHROMIUM
    result = run_group(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={workdir / 'chromium-profile'}", "--window-size=1600,800",
         "--virtual-time-budget=5000", *args],
        timeout=90,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-3000:]
    return result.stdout
