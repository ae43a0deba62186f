"""When a client rejects fisproxy's CA, say which file to trust and the command that does it.

mitmproxy logs "Client TLS handshake failed. The client does not trust the proxy's certificate
for <host>" (mitmproxy/proxy/layers/tls.py: ClientTLSLayer.on_handshake_error) and then calls
the `tls_failed_client` hook with that text in `data.conn.error`. This addon adds the one line
a new user needs: the CA certificate of this proxy's confdir and
`eval "$(fisproxy env --port P --certs DIR)"`, which sets AWS_CA_BUNDLE and friends.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path

from mitmproxy import ctx, tls
from mitmproxy.utils import human

from fisproxy.proxy.certs import CA_CERT

logger = logging.getLogger(__name__)

# Every variant of mitmproxy's message for a client that (probably) rejected the certificate:
# "does not trust", "may not trust", "... may indicate that the client does not trust".
TRUST_FAILURE = "trust the proxy's certificate"
DEFAULT_PORT = 8080


class TlsTrustHint:
    def tls_failed_client(self, data: tls.TlsData) -> None:
        if TRUST_FAILURE not in (data.conn.error or ""):
            return
        logger.warning(trust_hint(data))


def trust_hint(data: tls.TlsData) -> str:
    confdir = Path(ctx.options.confdir).expanduser().resolve()
    port = ctx.options.listen_port or DEFAULT_PORT
    client = human.format_address(data.context.client.peername)
    host = data.conn.sni or "the proxy"
    command = f'eval "$(fisproxy env --port {port} --certs {shlex.quote(str(confdir))})"'
    return (f"fisproxy: the client at {client} rejected the certificate for {host}: it must "
            f"trust {confdir / CA_CERT}; in the client's shell: {command} "
            f"(sets AWS_CA_BUNDLE, REQUESTS_CA_BUNDLE, SSL_CERT_FILE, NODE_EXTRA_CA_CERTS)")
