"""Control API authentication on a real `fisproxy run`: boto3 and the AWS CLI signed with the
configured credentials get in, on the control port and through the proxy; other credentials get
AWS-shaped 403s that botocore parses; a bearer token works for curl-style clients; health needs
nothing; start-up warns exactly when the proxy is exposed without authentication."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ProxyConnectionError

from tests.e2e.conftest import Fisproxy
from tests.helpers import VENV_BIN, clean_env, free_port

TOKEN = "e2e-T0ken-" + uuid.uuid4().hex[:8]
KEY, SECRET = "AKIDFIS", "SECRETFIS-" + uuid.uuid4().hex[:8]
PROXYAUTH = "fisuser:" + uuid.uuid4().hex[:8]
AUTH_ARGS = ("--control-token", TOKEN, "--control-credentials", f"{KEY}:{SECRET}")
EXPOSED = "WARNING: listening on"


class Proxy(Fisproxy):
    """`python -m fisproxy.cli`: the fisproxy package on sys.path (the console script is bound
    to the checkout the venv was installed from)."""

    def command(self) -> list[str]:
        base = super().command()
        return [sys.executable, "-m", "fisproxy.cli", *base[base.index(self.subcommand):]]

    def signed_fis(self, key: str = KEY, secret: str = SECRET, *, through_proxy: bool = False) -> Any:
        if through_proxy:
            return self.client("fis", access_key=key, secret_key=secret, retries={"total_max_attempts": 1})
        return boto3.session.Session().client(
            "fis", region_name="us-east-1", endpoint_url=self.control_url,
            aws_access_key_id=key, aws_secret_access_key=secret,
            config=Config(retries={"total_max_attempts": 1}, proxies={}),
        )


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, moto: str) -> Iterator[Proxy]:
    with Proxy(tmp_path_factory.mktemp("fisproxy-auth"), moto, extra_args=AUTH_ARGS).running() as proxy:
        yield proxy


def refusal(call: Any) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as info:
        call()
    response = info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"], response["Error"]["Message"]


def create_template(fis: Any) -> str:
    return fis.create_experiment_template(
        description="auth e2e", roleArn="arn:aws:iam::123456789012:role/fis",
        stopConditions=[{"source": "none"}],
        actions={"wait": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1S"}}},
    )["experimentTemplate"]["id"]


def test_health_needs_no_credentials(secured: Proxy) -> None:
    response = secured.control("GET", "/_fisproxy/health")
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_boto3_signed_with_the_configured_credentials(secured: Proxy) -> None:
    fis = secured.signed_fis()
    template_id = create_template(fis)
    assert fis.get_experiment_template(id=template_id)["experimentTemplate"]["id"] == template_id
    fis.tag_resource(resourceArn=f"arn:aws:fis:us-east-1:123456789012:experiment-template/{template_id}",
                     tags={"team": "a b/c"})  # an ARN in the path, a body
    ids = {t["id"] for t in fis.list_experiment_templates(maxResults=50)["experimentTemplates"]}
    assert template_id in ids  # a query string
    # The same API through the proxy, as fis.us-east-1.amazonaws.com over intercepted TLS.
    through = secured.signed_fis(through_proxy=True)
    assert through.get_experiment_template(id=template_id)["experimentTemplate"]["id"] == template_id


def test_aws_cli_signed_with_the_configured_credentials(secured: Proxy) -> None:
    cmd = [str(VENV_BIN / "aws"), "fis", "list-experiment-templates", "--endpoint-url", secured.control_url,
           "--output", "json", "--region", "us-east-1"]
    env = secured.env(HTTPS_PROXY="", HTTP_PROXY="", AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET)
    ok = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert "experimentTemplates" in json.loads(ok.stdout)
    env.update(AWS_SECRET_ACCESS_KEY="not-the-secret")
    refused = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode != 0 and "InvalidSignatureException" in refused.stderr, refused.stderr


@pytest.mark.parametrize("key, secret, code", [
    ("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "UnrecognizedClientException"),
    (KEY, "not-the-secret", "InvalidSignatureException"),
])
@pytest.mark.parametrize("through_proxy", [False, True], ids=["control-port", "through-proxy"])
def test_other_credentials_are_refused(secured: Proxy, key: str, secret: str, code: str,
                                       through_proxy: bool) -> None:
    fis = secured.signed_fis(key, secret, through_proxy=through_proxy)
    status, error, message = refusal(fis.list_experiments)
    assert (status, error) == (403, code)
    assert message and SECRET not in message
    status, error, _ = refusal(lambda: create_template(fis))
    assert (status, error) == (403, code)


def test_bearer_token_on_the_chaos_api(secured: Proxy) -> None:
    fault = [{"service": "dynamodb", "region": "eu-west-3", "probability": 0.0}]
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert secured.control("POST", "/_localstack/chaos/faults", json=fault, headers=bearer).status_code == 200
    listed = secured.control("GET", "/_localstack/chaos/faults", headers={"x-fisproxy-token": TOKEN})
    assert listed.status_code == 200 and any(f.get("region") == "eu-west-3" for f in listed.json())
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"x-fisproxy-token": TOKEN + "x"}):
        denied = secured.control("POST", "/_localstack/chaos/faults", json=[], headers=headers)
        assert denied.status_code == 403, headers
        assert denied.headers["x-amzn-ErrorType"] == "AccessDeniedException"
        assert "message" in denied.json() and TOKEN not in denied.text
    assert secured.control("POST", "/_localstack/chaos/faults", json=[], headers=bearer).status_code == 200


def raw_get(port: int, target: str, host: str) -> tuple[int, bytes]:
    """GET `target` with exactly this Host header, over a raw socket: (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.mark.parametrize("target, host", [
    ("/experiments", "x/_fisproxy/health?"),
    ("/experimentTemplates", "x/_fisproxy/health#"),
    ("/_localstack/chaos/faults", "x/_fisproxy/health?a="),
    ("/_fisproxy/%68ealth", "x"),
    ("//_fisproxy/health", "x"),
    ("/_fisproxy/health/../../experiments", "x"),
])
def test_crafted_host_headers_and_paths_do_not_pass_for_the_health_check(
        secured: Proxy, target: str, host: str) -> None:
    status, body = raw_get(secured.control_port, target, host)
    assert status == 403, body
    # The same paths with a name the proxy answers to: refused by authentication.
    status, body = raw_get(secured.control_port, target, f"127.0.0.1:{secured.control_port}")
    assert status == 403 and b"authentication required" in body, body
    assert raw_get(secured.control_port, "/_fisproxy/health", "localhost")[0] == 200
    # A name the proxy is not known by is refused, health included (DNS rebinding).
    status, body = raw_get(secured.control_port, "/_fisproxy/health", "anything/at/all?")
    assert status == 403 and b"does not answer to the name" in body, body


def test_metrics_need_credentials(secured: Proxy) -> None:
    assert secured.control("GET", "/metrics").status_code == 403
    assert secured.control("GET", "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_startup_output_on_loopback(secured: Proxy) -> None:
    output = secured.log.read_text()
    assert f"control API authentication: token, SigV4 as {KEY}" in output, output
    assert EXPOSED not in output, output
    assert TOKEN not in output and SECRET not in output


@pytest.mark.parametrize("extra, proxy_warned, control_warned", [
    ((), True, True),
    (AUTH_ARGS, True, False),
    ((*AUTH_ARGS, "--set", f"proxyauth={PROXYAUTH}"), False, False),
])
def test_startup_warnings_on_all_interfaces(tmp_path: Path, moto: str, extra: tuple[str, ...],
                                            proxy_warned: bool, control_warned: bool) -> None:
    proxy = Proxy(tmp_path, moto, extra_args=("--listen-host", "0.0.0.0", *extra))
    proxy.start()  # waits for GET /_fisproxy/health: open even with proxyauth set
    try:
        output = proxy.log.read_text()
        assert ("HTTP(S) proxy into your network" in output) == proxy_warned, output
        assert ("start experiments" in output) == control_warned, output
        assert TOKEN not in output and SECRET not in output and PROXYAUTH not in output
        if "proxyauth" in " ".join(extra):
            # proxyauth guards the proxy; the control listener keeps its own authentication.
            bearer = {"Authorization": f"Bearer {TOKEN}"}
            assert proxy.control("GET", "/_localstack/chaos/faults", headers=bearer).status_code == 200
            assert proxy.control("GET", "/_localstack/chaos/faults").status_code == 403
            assert proxy.signed_fis().list_experiments()["experiments"] == []
            with pytest.raises(ProxyConnectionError):  # no proxy credentials: 407
                proxy.signed_fis(through_proxy=True).list_experiments()
    finally:
        proxy.stop()


@pytest.mark.parametrize("args, env, message", [
    (("--control-credentials", "AKIDONLYs3kr1t"), {}, "--control-credentials: entry 1 "),
    (("--control-credentials", "A:ok", "--control-credentials", "B:s3 kr1t"), {}, "--control-credentials: entry 2 "),
    (("--control-token", "s3 kr1t"), {}, "--control-token: "),
    ((), {"FISPROXY_CONTROL_CREDENTIALS": "GOOD:ok,BAD:s3 kr1t"}, "$FISPROXY_CONTROL_CREDENTIALS: entry 2 "),
    ((), {"FISPROXY_CONTROL_TOKEN": "s3 kr1t"}, "$FISPROXY_CONTROL_TOKEN: "),
])
def test_bad_auth_settings_fail_at_startup(tmp_path: Path, args: tuple[str, ...], env: dict[str, str],
                                           message: str) -> None:
    cmd = [sys.executable, "-m", "fisproxy.cli", "run", "--port", str(free_port()),
           "--control-port", str(free_port()), "--state", str(tmp_path / "s.sqlite"),
           "--certs", str(tmp_path / "certs"), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, env=clean_env(**env), timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "kr1t" not in result.stderr, result.stderr
