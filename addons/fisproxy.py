"""fisproxy as a plain mitmproxy script:

    mitmdump -s addons/fisproxy.py --set fisproxy_aws_endpoint=http://127.0.0.1:5000 --set flow_detail=0
    mitmweb  -s addons/fisproxy.py

State lives in the installed `fisproxy` package, not here, so script reloads stay clean.
"""

import os
import sys

# mitmproxy puts this script's folder first on sys.path, where this very file would shadow
# the `fisproxy` package: take the folder out before importing the package.
_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
if getattr(sys.modules.get("fisproxy"), "__file__", None) == os.path.abspath(__file__):
    del sys.modules["fisproxy"]

from fisproxy.proxy.script import addons  # noqa: E402

__all__ = ["addons"]
