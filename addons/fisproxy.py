"""fisproxy as a plain mitmproxy script:

    mitmdump -s addons/fisproxy.py --set fisproxy_aws_endpoint=http://127.0.0.1:5000
    mitmweb  -s addons/fisproxy.py

State lives in the installed `fisproxy` package, not here, so script reloads stay clean.
"""

from fisproxy.proxy.addon import FisProxy

addons = [FisProxy()]
