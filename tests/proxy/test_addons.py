"""The production addon list (`proxy/addons.py`), hook by hook, with mitmproxy's own test helpers
(`taddons`, `tflow`) and a real SQLite store: each addon does its one job, in list order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.addons import proxyserver
from mitmproxy.flow import Error
from mitmproxy.proxy.layers.http import (
    HttpErrorHook,
    HttpRequestHeadersHook,
    HttpRequestHook,
    HttpResponseHeadersHook,
    HttpResponseHook,
)
from mitmproxy.test import taddons, tflow

from fisproxy.fis.loops import drive
from fisproxy.fis.models import ExperimentTemplate
from fisproxy.proxy import inject, redirect
from fisproxy.proxy.addons import make_addons
from fisproxy.proxy.runtime import Runtime

SIGV4 = ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20250101/{region}/{service}/aws4_request, "
         "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64)


@dataclass
class Stack:
    tctx: taddons.context
    runtime: Runtime
    # Where mitmproxy would have connected for the last flow forwarded (None: answered by fisproxy).
    sent_to: str | None = None

    async def run(self, flow: http.HTTPFlow) -> None:
        """Every hook of `flow`'s life, through every addon, in order (as mitmproxy does):
        the request hooks, then, unless an addon answered, the upstream's response (the one
        the test flow carries), then the response hooks."""
        upstream, flow.response = flow.response, None
        addons = self.tctx.master.addons
        self.sent_to = None
        for hook in (HttpRequestHeadersHook(flow), HttpRequestHook(flow)):
            await addons.handle_lifecycle(hook)
        if flow.error is not None:
            await addons.handle_lifecycle(HttpErrorHook(flow))
            return
        if flow.response is None:
            req = flow.request  # what `make_server_connection` reads
            self.sent_to = f"{req.scheme}://{req.host}:{req.port}"
            flow.response = upstream
        for hook in (HttpResponseHeadersHook(flow), HttpResponseHook(flow)):
            await addons.handle_lifecycle(hook)

    def start(self, action_id: str, parameters: dict[str, str]) -> str:
        engine = self.runtime.engine
        assert engine is not None
        template = ExperimentTemplate.model_validate({
            "id": "EXTunit", "description": "unit", "roleArn": "arn:aws:iam::123456789012:role/fis",
            "stopConditions": [{"source": "none"}], "targets": {},
            "actions": {"a": {"actionId": action_id, "parameters": parameters}}})
        exp = engine.start_experiment(template, region="us-east-1", tags={}, actions_mode="run-all")
        drive(engine)
        drive(engine)
        return exp.id


@pytest.fixture
async def endpoint() -> AsyncIterator[int]:
    """A port that accepts connections, standing for moto (nothing here is forwarded)."""
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@pytest.fixture
async def stack(tmp_path: Path, endpoint: int) -> AsyncIterator[Stack]:
    addons = make_addons()
    runtime = addons[1]
    assert isinstance(runtime, Runtime)
    with taddons.context(*addons) as tctx:
        tctx.configure(runtime, fisproxy_state=str(tmp_path / "state.sqlite"), fisproxy_control_port=0,
                       fisproxy_aws_endpoint=f"http://127.0.0.1:{endpoint}", fisproxy_seed=1)
        assert runtime.settings is not None
        runtime._open(runtime.settings, asyncio.get_running_loop())
        assert runtime.sink is not None
        await runtime.sink.start()
        runtime.ready = True
        try:
            yield Stack(tctx, runtime)
        finally:
            runtime.ready = False
            runtime.sink.stop()
            runtime._close()


def aws_flow(host: str, path: str = "/", *, method: str = "POST", service: str, region: str = "us-east-1",
             headers: dict[str, str] | None = None, body: bytes = b"", status: int = 200) -> http.HTTPFlow:
    flow = tflow.tflow(resp=True)
    req = flow.request
    req.method, req.scheme, req.host, req.port, req.path = method, "https", host, 443, path
    req.headers.clear()
    req.headers["host"] = host
    req.headers["authorization"] = SIGV4.format(region=region, service=service)
    req.headers["x-amz-date"] = "20250101T000000Z"
    for name, value in (headers or {}).items():
        req.headers[name] = value
    req.content = body
    assert flow.response is not None
    flow.response.status_code = status
    return flow


def dynamodb_get_item() -> http.HTTPFlow:
    return aws_flow("dynamodb.us-east-1.amazonaws.com", service="dynamodb",
                    headers={"x-amz-target": "DynamoDB_20120810.GetItem",
                             "content-type": "application/x-amz-json-1.0"}, body=b"{}")


async def test_aws_calls_go_to_the_endpoint_keeping_their_host_header(stack: Stack, endpoint: int) -> None:
    flow = dynamodb_get_item()
    await stack.run(flow)
    assert stack.sent_to == f"http://127.0.0.1:{endpoint}"
    assert flow.request.host_header == "dynamodb.us-east-1.amazonaws.com"


async def test_a_redirected_flow_names_the_url_the_client_called_once_answered(
    stack: Stack, endpoint: int
) -> None:
    flow = dynamodb_get_item()
    await stack.run(flow)
    req = flow.request
    assert req.url == "https://dynamodb.us-east-1.amazonaws.com/"  # mitmweb, saved flows
    assert req.host_header == "dynamodb.us-east-1.amazonaws.com"
    assert flow.metadata[redirect.REDIRECT]["to"] == f"http://127.0.0.1:{endpoint}"


async def test_a_flow_fisproxy_answers_or_that_fails_names_the_url_the_client_called(stack: Stack) -> None:
    stack.start("fisproxy:api:error", {"service": "dynamodb", "operations": "GetItem"})
    answered = dynamodb_get_item()
    await stack.run(answered)
    assert stack.sent_to is None and answered.response is not None
    assert answered.request.url == "https://dynamodb.us-east-1.amazonaws.com/"
    failed = aws_flow("sqs.us-east-1.amazonaws.com", service="sqs")
    failed.response = None
    await stack.tctx.master.addons.handle_lifecycle(HttpRequestHeadersHook(failed))
    assert failed.request.host == "127.0.0.1"
    failed.error = Error("Connection refused")
    await stack.tctx.master.addons.handle_lifecycle(HttpErrorHook(failed))
    assert failed.request.url == "https://sqs.us-east-1.amazonaws.com/"


async def test_a_replayed_flow_goes_to_the_endpoint_again(stack: Stack, endpoint: int) -> None:
    flow = dynamodb_get_item()
    await stack.run(flow)
    replay = flow.copy()  # mitmweb's Replay: the saved flow, metadata and all, sent again
    replay.response = tflow.tresp()
    await stack.run(replay)
    assert stack.sent_to == f"http://127.0.0.1:{endpoint}"
    assert replay.request.url == "https://dynamodb.us-east-1.amazonaws.com/"


async def test_mitmweb_is_shown_the_url_the_client_called_before_a_response_phase_delay(stack: Stack) -> None:
    """The redirect addon tells a master that shows flows at once, in its `responseheaders`:
    a later addon's wait (a response-phase latency) does not keep the endpoint on screen."""
    shown: list[str] = []

    class View:  # stands for mitmweb's view (`addons.get("view")`): what it is told to show
        def update(self, flows: list[http.HTTPFlow]) -> None:
            shown.extend(f.request.url for f in flows)

    stack.tctx.master.addons.add(View())
    flow = dynamodb_get_item()
    upstream, flow.response = flow.response, None
    addons = stack.tctx.master.addons
    await addons.handle_lifecycle(HttpRequestHeadersHook(flow))
    await addons.handle_lifecycle(HttpRequestHook(flow))
    shown.clear()
    flow.response = upstream
    addons.get("endpointredirect").responseheaders(flow)  # before the other addons' hooks
    assert shown == ["https://dynamodb.us-east-1.amazonaws.com/"]


async def test_a_flow_sent_elsewhere_by_another_addon_is_left_where_it_points(stack: Stack) -> None:
    flow = dynamodb_get_item()
    upstream, flow.response = flow.response, None
    await stack.tctx.master.addons.handle_lifecycle(HttpRequestHeadersHook(flow))
    flow.request.data.host, flow.request.data.port = "10.9.9.9", 8000  # map_remote, a script
    flow.response = upstream
    await stack.tctx.master.addons.handle_lifecycle(HttpResponseHeadersHook(flow))
    assert (flow.request.host, flow.request.port) == ("10.9.9.9", 8000)


async def test_redirect_happens_even_when_identification_fails(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("identification bug")

    monkeypatch.setattr(inject, "identify", broken)
    flow = dynamodb_get_item()
    with caplog.at_level(logging.ERROR):
        await stack.run(flow)
    # Never to the real AWS host, whatever went wrong after the redirect.
    assert stack.sent_to is not None and stack.sent_to.startswith("http://127.0.0.1:")
    assert "identification bug" in caplog.text and flow.error is None


async def test_form_body_calls_are_completed_with_the_host_the_client_addressed(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    hosts: list[str] = []
    real_complete = inject.complete

    def spy(call: Any, host: str, body: bytes) -> Any:
        hosts.append(host)
        return real_complete(call, host, body)

    monkeypatch.setattr(inject, "complete", spy)
    flow = aws_flow("sts.us-west-2.amazonaws.com", service="sts", region="us-west-2",
                    headers={"content-type": "application/x-www-form-urlencoded; charset=utf-8"},
                    body=b"Action=GetCallerIdentity&Version=2011-06-15")
    await stack.run(flow)
    assert hosts == ["sts.us-west-2.amazonaws.com"]  # not the endpoint it was redirected to
    assert stack.runtime.recorder is not None
    [record] = stack.runtime.recorder._drain()
    assert (record.service, record.operation, record.region) == ("sts", "GetCallerIdentity", "us-west-2")


async def test_a_running_throttle_action_answers_with_the_services_own_error(stack: Stack) -> None:
    exp_id = stack.start("fisproxy:api:error", {"service": "dynamodb", "operations": "GetItem",
                                                "errorCode": "ThrottlingException", "statusCode": "400"})
    flow = dynamodb_get_item()
    await stack.run(flow)
    assert flow.response is not None and flow.response.status_code == 400
    assert flow.response.headers["x-amzn-errortype"].endswith("#ThrottlingException")
    assert flow.response.headers["x-fisproxy-fault"] == f"{exp_id}/a/error"
    assert flow.marked == ":boom:" and "dynamodb.GetItem" in flow.comment


async def test_calls_no_rule_targets_are_recorded_and_left_alone(stack: Stack) -> None:
    stack.start("fisproxy:api:error", {"service": "dynamodb", "operations": "PutItem"})
    flow = dynamodb_get_item()
    await stack.run(flow)
    assert flow.response is not None and flow.response.status_code == 200
    assert "x-fisproxy-fault" not in flow.response.headers and not flow.marked
    assert stack.runtime.recorder is not None
    [record] = stack.runtime.recorder._drain()
    assert (record.operation, record.faults, record.status) == ("GetItem", (), 200)
    assert stack.runtime.notes == {}  # nothing kept once the flow ended


async def test_fis_hostnames_are_answered_by_fisproxy_never_forwarded(stack: Stack) -> None:
    flow = aws_flow("fis.eu-west-1.amazonaws.com", "/experiments", method="GET", service="fis",
                    region="eu-west-1")
    flow.response = None
    await stack.run(flow)
    assert flow.response is not None and flow.response.status_code == 200
    assert flow.response.json() == {"experiments": []}


async def test_sts_answers_teach_which_role_signs_with_a_key(stack: Stack) -> None:
    body = (b'<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>'
            b"<AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/app/s1</Arn>"
            b"<AssumedRoleId>AROA:s1</AssumedRoleId></AssumedRoleUser><Credentials>"
            b"<AccessKeyId>ASIALEARNED</AccessKeyId><SecretAccessKey>x</SecretAccessKey>"
            b"<SessionToken>t</SessionToken><Expiration>2030-01-01T00:00:00Z</Expiration>"
            b"</Credentials></AssumeRoleResult></AssumeRoleResponse>")
    flow = aws_flow("sts.amazonaws.com", service="sts",
                    headers={"content-type": "application/x-www-form-urlencoded"},
                    body=b"Action=AssumeRole&Version=2011-06-15&RoleArn=x&RoleSessionName=s1")
    assert flow.response is not None
    flow.response.content = body
    await stack.run(flow)
    engine = stack.runtime.engine
    assert engine is not None
    assert engine.identities.identities.principal_of("ASIALEARNED") == "arn:aws:iam::123456789012:role/app"


async def test_core_options_are_set_where_the_user_left_the_default_and_said_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime = Runtime()
    with taddons.context(proxyserver.Proxyserver(), runtime) as tctx, caplog.at_level(logging.INFO):
        runtime._require_core_options()
        assert tctx.options.connection_strategy == "lazy"
        assert tctx.options.stream_large_bodies == "1m"
    assert "setting connection_strategy=lazy" in caplog.text
    assert "setting stream_large_bodies=1m" in caplog.text


async def test_a_users_own_stream_large_bodies_is_kept() -> None:
    runtime = Runtime()
    with taddons.context(proxyserver.Proxyserver(), runtime) as tctx:
        tctx.options.update(stream_large_bodies="5m", connection_strategy="lazy")
        runtime._require_core_options()
        assert (tctx.options.stream_large_bodies, tctx.options.connection_strategy) == ("5m", "lazy")
