"""UpstreamErrors in mitmproxy's test context (taddons, tflow): a suspect upstream that does not
answer gets a 502 naming it and the reason, in the call's protocol; one that answers is trusted
again; healthy upstreams are not touched. The end-to-end test is tests/e2e/test_first_errors.py."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator

import pytest
from botocore.parsers import create_parser
from mitmproxy import connection
from mitmproxy.proxy import server_hooks
from mitmproxy.test import taddons, tflow
from urllib3 import HTTPHeaderDict

from fisproxy.proxy import upstream_errors
from fisproxy.proxy.upstream_errors import UpstreamErrors, connect_problem
from tests.helpers import free_port

SIGNED = ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240101/us-east-1/dynamodb/aws4_request, "
          "SignedHeaders=host;x-amz-date;x-amz-target, Signature=abc")


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.fixture
def addon() -> Iterator[tuple[UpstreamErrors, taddons.context]]:
    addon = UpstreamErrors()
    with taddons.context(addon) as tctx:
        tctx.options.add_option("fisproxy_aws_endpoint", str | None, None, "the main addon's option")
        yield addon, tctx


def ddb_flow(port: int, method: str = "POST") -> tflow.HTTPFlow:
    """A DynamoDB PutItem as the main addon leaves it: redirected to 127.0.0.1:port, Host kept."""
    flow = tflow.tflow()
    req = flow.request
    req.method, req.scheme, req.host, req.port, req.path = method, "http", "127.0.0.1", port, "/"
    req.host_header = "dynamodb.us-east-1.amazonaws.com"
    req.headers["x-amz-target"] = "DynamoDB_20120810.PutItem"
    req.headers["authorization"] = SIGNED
    req.headers["content-type"] = "application/x-amz-json-1.0"
    req.content = b"{}"
    return flow


def parsed(flow: tflow.HTTPFlow) -> dict:
    resp = flow.response
    assert resp is not None
    http = {"status_code": resp.status_code, "headers": HTTPHeaderDict(resp.headers.items(multi=True)),
            "body": resp.content}
    return create_parser("json").parse(http, None)


async def test_endpoint_that_refuses_gets_a_502_naming_it_in_the_calls_protocol(addon) -> None:
    ue, tctx = addon
    closed = free_port()
    tctx.configure(ue, fisproxy_aws_endpoint=f"http://127.0.0.1:{closed}")
    flow = ddb_flow(closed)
    await ue.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 502
    error = parsed(flow)["Error"]
    assert error["Code"] == "BadGateway"
    assert error["Message"] == (f"fisproxy cannot reach the --aws-endpoint http://127.0.0.1:{closed} "
                                f"for dynamodb.us-east-1.amazonaws.com: Connection refused")


async def test_endpoint_that_answers_is_trusted_and_not_probed_again(addon, listening, monkeypatch) -> None:
    ue, tctx = addon
    tctx.configure(ue, fisproxy_aws_endpoint=f"http://127.0.0.1:{listening}")
    flow = ddb_flow(listening)
    await ue.requestheaders(flow)
    assert flow.response is None
    probes = []
    monkeypatch.setattr(upstream_errors, "connect_problem", lambda a: probes.append(a))
    assert ue.requestheaders(ddb_flow(listening)) is None  # no coroutine: the common case
    assert probes == []


async def test_failed_connection_makes_an_address_suspect_until_it_answers(addon, caplog) -> None:
    ue, _ = addon
    caplog.set_level(logging.INFO)
    port = free_port()
    assert ue.requestheaders(ddb_flow(port)) is None  # never failed: left to mitmproxy
    server = connection.Server(address=("127.0.0.1", port))
    server.error = "[Errno 111] Connect call failed"
    ue.server_connect_error(server_hooks.ServerConnectionHookData(server=server, client=tflow.tclient_conn()))
    assert f"cannot connect to the upstream 127.0.0.1:{port}: [Errno 111]" in caplog.text

    flow = ddb_flow(port)
    await ue.requestheaders(flow)
    assert "the upstream 127.0.0.1:" in parsed(flow)["Error"]["Message"]

    with socket.socket() as s:  # the upstream comes back
        s.bind(("127.0.0.1", port))
        s.listen()
        flow = ddb_flow(port)
        await ue.requestheaders(flow)
    assert flow.response is None
    assert f"127.0.0.1:{port} answers again" in caplog.text
    assert ue.requestheaders(ddb_flow(port)) is None


def test_mitmproxys_successful_connection_clears_suspicion(addon) -> None:
    ue, tctx = addon
    tctx.configure(ue, fisproxy_aws_endpoint="http://127.0.0.1:5000")
    server = connection.Server(address=("127.0.0.1", 5000))
    ue.server_connected(server_hooks.ServerConnectionHookData(server=server, client=tflow.tclient_conn()))
    assert ue.requestheaders(ddb_flow(5000)) is None


async def test_a_call_fisproxy_cannot_identify_gets_plain_text(addon) -> None:
    ue, tctx = addon
    closed = free_port()
    tctx.configure(ue, fisproxy_aws_endpoint=f"http://127.0.0.1:{closed}")
    flow = tflow.tflow()
    flow.request.host, flow.request.port = "127.0.0.1", closed
    await ue.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 502
    assert flow.response.headers["content-type"].startswith("text/plain")
    assert flow.response.text.startswith(f"fisproxy cannot reach the --aws-endpoint http://127.0.0.1:{closed}")


async def test_head_gets_no_body(addon) -> None:
    ue, tctx = addon
    closed = free_port()
    tctx.configure(ue, fisproxy_aws_endpoint=f"http://127.0.0.1:{closed}")
    flow = ddb_flow(closed, method="HEAD")
    await ue.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 502 and flow.response.content == b""


def test_flows_already_answered_or_with_large_bodies_are_left_alone(addon) -> None:
    ue, tctx = addon
    tctx.configure(ue, fisproxy_aws_endpoint="http://127.0.0.1:1")
    answered = ddb_flow(1)
    answered.response = tflow.tresp()
    assert ue.requestheaders(answered) is None
    upload = ddb_flow(1, method="PUT")
    upload.request.headers["content-length"] = str(50 << 20)
    assert ue.requestheaders(upload) is None


def test_suspects_are_bounded(addon) -> None:
    ue, _ = addon
    for port in range(1, upstream_errors.MAX_SUSPECTS + 50):
        server = connection.Server(address=("10.0.0.1", port))
        server.error = "refused"
        ue.server_connect_error(server_hooks.ServerConnectionHookData(server=server, client=tflow.tclient_conn()))
    assert len(ue._suspects) == upstream_errors.MAX_SUSPECTS


def test_changing_the_endpoint_forgets_the_old_one(addon) -> None:
    ue, tctx = addon
    tctx.configure(ue, fisproxy_aws_endpoint="http://127.0.0.1:1")
    tctx.configure(ue, fisproxy_aws_endpoint=None)
    assert ue.requestheaders(ddb_flow(1)) is None


async def test_connect_problem_says_why(listening) -> None:
    assert await connect_problem(("127.0.0.1", listening)) is None
    assert await connect_problem(("127.0.0.1", free_port())) == "Connection refused"
    assert (await connect_problem(("no-such-host.invalid", 80)) or "").startswith("cannot resolve no-such-host.invalid")


def test_error_body_is_json_for_json_services(addon) -> None:
    ue, tctx = addon
    tctx.configure(ue, fisproxy_aws_endpoint="http://127.0.0.1:1")
    resp = ue.bad_gateway(ddb_flow(1), ("127.0.0.1", 1), "Connection refused")
    assert json.loads(resp.content)["__type"].endswith("#BadGateway")
