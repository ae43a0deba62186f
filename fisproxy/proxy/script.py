"""The addon list mitmproxy loads with `-s` (used by `fisproxy run` and `fisproxy web`)."""

from fisproxy.proxy.addons import make_addons

addons = make_addons()
