"""The addon list mitmproxy loads with `-s` (used by `fisproxy run` and `fisproxy web`)."""

from fisproxy.proxy.addon import FisProxy

addons = [FisProxy()]
