"""The fisproxy addons, in the order mitmproxy must call them (the way mitmproxy builds itself:
a flat list of small addons, `mitmproxy/addons/__init__.py`).

1. EndpointRedirect: `--aws-endpoint`, first and outside any error boundary.
2. Runtime: options, and the store, engine, control port, recorder... the others read.
3. FisHost: FIS hostnames through the proxy, answered by the control plane.
4. FaultInjector: identify -> decide -> apply.
5. UpstreamErrors: a call whose upstream does not answer gets a 502 naming it and why.
6. Observer: request records, metrics, identities learned from STS.
7. Commands: `fisproxy.templates`, `fisproxy.start`, `fisproxy.experiments`, `fisproxy.stop`.
8. TlsTrustHint: a client that rejects the CA is told which file to trust.
"""

from __future__ import annotations

from typing import Any

from fisproxy.proxy.commands import Commands
from fisproxy.proxy.controlplane import FisHost
from fisproxy.proxy.inject import FaultInjector
from fisproxy.proxy.observe import Observer
from fisproxy.proxy.redirect import EndpointRedirect
from fisproxy.proxy.runtime import Runtime
from fisproxy.proxy.tlshint import TlsTrustHint
from fisproxy.proxy.upstream_errors import UpstreamErrors


def make_addons() -> list[Any]:
    runtime = Runtime()
    return [
        EndpointRedirect(runtime),
        runtime,
        FisHost(runtime),
        FaultInjector(runtime),
        UpstreamErrors(),
        Observer(runtime),
        Commands(runtime),
        TlsTrustHint(),
    ]
