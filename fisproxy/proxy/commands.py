"""mitmproxy commands (mitmweb's command bar, `POST /commands/<name>`): list and stop experiments."""

from __future__ import annotations

import json

from mitmproxy import command, exceptions

from fisproxy.proxy.runtime import Runtime
from fisproxy.reports.present import experiment_row


class Commands:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @command.command("fisproxy.experiments")
    def experiments(self) -> str:
        """List experiments as JSON: id, template, state, reason, start and end times."""
        store = self.runtime.store
        if store is None:
            raise exceptions.CommandError("fisproxy is not running yet")
        return json.dumps([experiment_row(e) for e in store.list_experiments()])

    @command.command("fisproxy.stop")
    def stop(self, experiment_id: str) -> str:
        """Stop a running experiment; returns its new state."""
        engine = self.runtime.engine
        if engine is None:
            raise exceptions.CommandError("fisproxy is not running yet")
        try:
            return engine.stop_experiment(experiment_id).state.status
        except KeyError:
            raise exceptions.CommandError(f"no experiment {experiment_id}") from None
