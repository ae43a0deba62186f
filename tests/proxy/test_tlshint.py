"""TlsTrustHint in mitmproxy's test context: a client that rejects the proxy's certificate gets a
log line naming the CA file to trust and the command that sets it; other TLS failures do not.
The end-to-end test is tests/e2e/test_first_errors.py."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mitmproxy import connection, tls
from mitmproxy.proxy import context
from mitmproxy.test import taddons

from fisproxy.proxy.tlshint import TlsTrustHint

# The texts mitmproxy 11.0.2 and 12.x put in conn.error (proxy/layers/tls.py).
REJECTED = [
    "The client does not trust the proxy's certificate for sts.us-east-1.amazonaws.com "
    "(OpenSSL Error([('SSL routines', '', 'tlsv1 alert unknown ca')]))",
    "The client may not trust the proxy's certificate for sts.us-east-1.amazonaws.com (eof)",
    "The client disconnected during the handshake. If this happens consistently for "
    "sts.us-east-1.amazonaws.com, this may indicate that the client does not trust the proxy's certificate.",
]
OTHER = [
    "Client and mitmproxy cannot agree on a TLS version to use. You may need to adjust "
    "mitmproxy's tls_version_client_min option.",
    "Cannot parse ClientHello: 1603",
]


def failed_handshake(tctx: taddons.context, error: str) -> tls.TlsData:
    client = connection.Client(peername=("127.0.0.1", 50123), sockname=("127.0.0.1", 8080),
                               timestamp_start=1.0)
    client.sni = "sts.us-east-1.amazonaws.com"
    client.error = error
    return tls.TlsData(client, context.Context(client, tctx.options))


@pytest.mark.parametrize("error", REJECTED)
def test_rejected_certificate_names_the_ca_and_the_command(error: str, tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO)
    hint = TlsTrustHint()
    with taddons.context(hint) as tctx:
        tctx.options.update(confdir=str(tmp_path / "my certs"), listen_port=9080)
        hint.tls_failed_client(failed_handshake(tctx, error))
    [record] = [r for r in caplog.records if r.name == "fisproxy.proxy.tlshint"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "fisproxy: the client at 127.0.0.1:50123 rejected the certificate for "
        f"sts.us-east-1.amazonaws.com: it must trust {tmp_path}/my certs/mitmproxy-ca-cert.pem; "
        f"in the client's shell: eval \"$(fisproxy env --port 9080 --certs '{tmp_path}/my certs')\" "
        "(sets AWS_CA_BUNDLE, REQUESTS_CA_BUNDLE, SSL_CERT_FILE, NODE_EXTRA_CA_CERTS)")


@pytest.mark.parametrize("error", OTHER)
def test_other_tls_failures_get_no_hint(error: str, caplog) -> None:
    caplog.set_level(logging.INFO)
    hint = TlsTrustHint()
    with taddons.context(hint) as tctx:
        hint.tls_failed_client(failed_handshake(tctx, error))
    assert not [r for r in caplog.records if r.name == "fisproxy.proxy.tlshint"]


def test_default_port_and_confdir(caplog) -> None:
    caplog.set_level(logging.INFO)
    hint = TlsTrustHint()
    with taddons.context(hint) as tctx:
        hint.tls_failed_client(failed_handshake(tctx, REJECTED[0]))
    confdir = Path("~/.mitmproxy").expanduser().resolve()
    assert f"--port 8080 --certs {confdir}" in caplog.text
    assert f"trust {confdir}/mitmproxy-ca-cert.pem" in caplog.text
