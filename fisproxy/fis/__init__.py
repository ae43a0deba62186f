"""The FIS domain: templates, experiments, actions, the engine that runs them, the control API
and the LocalStack Chaos API. Never imports mitmproxy."""
