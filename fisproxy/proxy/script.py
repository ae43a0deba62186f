"""The addon list mitmproxy loads with `-s` (used by `fisproxy run` and `fisproxy web`)."""

from fisproxy.proxy.addon import FisProxy
from fisproxy.proxy.tlshint import TlsTrustHint
from fisproxy.proxy.upstream_errors import UpstreamErrors

# UpstreamErrors after FisProxy: it sees flows after the --aws-endpoint redirect and leaves
# those FisProxy answered alone.
addons = [FisProxy(), UpstreamErrors(), TlsTrustHint()]
