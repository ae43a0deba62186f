"""fisproxy: an AWS Fault Injection Service emulator that works as an HTTP(S) proxy on mitmproxy.

Data flows one way: proxy (mitmproxy hooks) -> aws (identify the call) -> fis (decide which
running action applies) -> proxy (apply the fault). `aws/` and `fis/` never import mitmproxy.
"""

__version__ = "0.1.0"
