"""mitmproxy addons: identification and fault application, the control-API host, streaming."""
