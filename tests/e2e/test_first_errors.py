"""The first errors a new user meets, through the real `fisproxy` process with real clients:
a client that does not trust the CA (the proxy log says which file to trust and how), and an
`--aws-endpoint` that does not answer (a start-up warning, then a 502 that boto3 shows with
the upstream and the reason, until it answers)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, SSLError

from tests.e2e.conftest import ACCESS_KEY, SECRET_KEY, Fisproxy
from tests.helpers import SkippedBackoff, clean_env, free_port, http_ok, stop, wait_until


def wait_for_log(log: Path, text: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while True:
        content = log.read_text(errors="replace")
        if text in content or time.monotonic() > deadline:
            return content
        time.sleep(0.1)


def test_a_client_that_does_not_trust_the_ca_is_told_which_file_and_command(proxy: Fisproxy) -> None:
    # boto3 with its default trust store (certifi), as before `eval "$(fisproxy env)"`.
    sts = boto3.session.Session().client(
        "sts", region_name="us-east-1", aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
        config=Config(proxies={"https": proxy.proxy_url}, retries={"total_max_attempts": 1}),
    )
    with pytest.raises(SSLError):
        sts.get_caller_identity()
    certs = proxy.certs.resolve()
    log = wait_for_log(proxy.log, "rejected the certificate for sts.us-east-1.amazonaws.com")
    hint = next(line for line in log.splitlines() if "rejected the certificate for sts." in line)
    assert f"it must trust {certs}/mitmproxy-ca-cert.pem" in hint
    assert f'eval "$(fisproxy env --port {proxy.port} --certs {certs})"' in hint


def test_an_endpoint_that_does_not_answer_gets_a_warning_then_502s_until_it_answers(
    tmp_path: Path, no_backoff: SkippedBackoff,
) -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    fisproxy = Fisproxy(tmp_path, endpoint)
    moto = None
    try:
        fisproxy.start()
        log = fisproxy.log.read_text()
        assert f"warning: --aws-endpoint {endpoint} does not answer (127.0.0.1:{port}: Connection refused)" in log

        ddb = fisproxy.client("dynamodb", retries={"total_max_attempts": 1})
        with pytest.raises(ClientError) as raised:
            ddb.list_tables()
        error = raised.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 502
        assert error["Error"]["Code"] == "BadGateway"
        assert error["Error"]["Message"] == (
            f"fisproxy cannot reach the --aws-endpoint {endpoint} for "
            "dynamodb.us-east-1.amazonaws.com: Connection refused")
        # boto3's default retries (standard mode, 4 attempts for DynamoDB) see the same answer.
        with pytest.raises(ClientError, match=r"\(BadGateway\).*reached max retries: 3.*Connection refused"):
            fisproxy.client("dynamodb").list_tables()
        assert "cannot connect to the --aws-endpoint" in wait_for_log(fisproxy.log, "cannot connect to the --aws-endpoint")

        # The upstream comes up on that port: the next call goes through.
        moto = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=(tmp_path / "moto.log").open("wb"), stderr=subprocess.STDOUT, env=clean_env())
        wait_until(lambda: http_ok(f"{endpoint}/moto-api/"), 60, "moto server", moto)
        assert ddb.list_tables()["TableNames"] == []
    finally:
        fisproxy.stop()
        if moto is not None:
            stop(moto)
