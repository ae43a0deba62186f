"""mitmproxy commands: mitmweb's command bar (and its `POST /commands/<name>`), mitmproxy's
console (`:`), `mitmdump -s` scripts through `ctx.master.commands`.

    fisproxy.templates              the templates as JSON: id, name (Name tag), description, actions
    fisproxy.start TEMPLATE         start an experiment from a template, by id or Name tag: its id
    fisproxy.experiments            the experiments as JSON: id, template, state, reason, times
    fisproxy.stop EXPERIMENT_ID     stop a running experiment: its new state

`fisproxy.start` is FIS's StartExperiment, answered by the same code as `aws fis
start-experiment` (the safety lever, the quota of active experiments, the template's target
accounts are checked the same way); its refusals come back as the command's error. Its argument
is a mitmproxy `Choice`: the console completes it from `fisproxy.start.options` (the templates'
ids and Name tags), as it completes `flow.set`.

Commands run on mitmproxy's event loop, and these read or write the store there (as mitmproxy's
own `save.file` writes its file there): operator actions, one at a time, never per request.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

from mitmproxy import command, exceptions, types

from fisproxy.fis.models import ExperimentTemplate
from fisproxy.fis.templates_file import DEFAULT_REGION, NAME_TAG
from fisproxy.httpdata import ApiRequest
from fisproxy.proxy.runtime import Runtime
from fisproxy.reports.present import experiment_row

NOT_RUNNING = "fisproxy is not running yet"


class Commands:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    # ---- templates -------------------------------------------------------------------

    @command.command("fisproxy.templates")
    def templates(self) -> str:
        """List experiment templates as JSON: id, name (its Name tag), description, actions."""
        return json.dumps([template_row(t) for t in self._templates()])

    @command.command("fisproxy.start.options")
    def start_options(self) -> Sequence[str]:
        """What `fisproxy.start` takes: each template's id and Name tag."""
        templates = self._templates()
        return [t.id for t in templates] + sorted({t.tags[NAME_TAG] for t in templates if NAME_TAG in t.tags})

    @command.command("fisproxy.start")
    @command.argument("template", type=types.Choice("fisproxy.start.options"))
    def start(self, template: str) -> str:
        """Start an experiment from a template (its id or Name tag); returns the experiment's id."""
        fis = self.runtime.fis_api
        if fis is None:
            raise exceptions.CommandError(NOT_RUNNING)
        chosen = self._template(template)
        body = json.dumps({"experimentTemplateId": chosen.id, "clientToken": str(uuid.uuid4())})
        response = fis.handle(ApiRequest("POST", "/experiments", headers={"content-type": "application/json"},
                                         body=body.encode()), region_of(chosen))
        answer = json.loads(response.body)
        if response.status != 200:
            code = response.headers.get("x-amzn-ErrorType", "").split(":", 1)[0]
            raise exceptions.CommandError(f"{code or response.status}: {answer.get('message', '')}")
        return str(answer["experiment"]["id"])

    # ---- experiments -----------------------------------------------------------------

    @command.command("fisproxy.experiments")
    def experiments(self) -> str:
        """List experiments as JSON: id, template, state, reason, start and end times."""
        store = self.runtime.store
        if store is None:
            raise exceptions.CommandError(NOT_RUNNING)
        return json.dumps([experiment_row(e) for e in store.list_experiments()])

    @command.command("fisproxy.stop")
    def stop(self, experiment_id: str) -> str:
        """Stop a running experiment; returns its new state."""
        engine = self.runtime.engine
        if engine is None:
            raise exceptions.CommandError(NOT_RUNNING)
        try:
            return engine.stop_experiment(experiment_id).state.status
        except KeyError:
            raise exceptions.CommandError(f"no experiment {experiment_id}") from None

    # ---- helpers ---------------------------------------------------------------------

    def _templates(self) -> list[ExperimentTemplate]:
        store = self.runtime.store
        if store is None:
            raise exceptions.CommandError(NOT_RUNNING)
        return sorted(store.list_templates(), key=lambda t: (t.tags.get(NAME_TAG, ""), t.id))

    def _template(self, id_or_name: str) -> ExperimentTemplate:
        templates = self._templates()
        by_id = [t for t in templates if t.id == id_or_name]
        named = by_id or [t for t in templates if t.tags.get(NAME_TAG) == id_or_name]
        if not named:
            raise exceptions.CommandError(f"no template with id or Name tag {id_or_name!r}")
        if len(named) > 1:
            ids = ", ".join(t.id for t in named)
            raise exceptions.CommandError(f"{len(named)} templates are named {id_or_name!r} ({ids}): "
                                          "start one by its id")
        return named[0]


def template_row(t: ExperimentTemplate) -> dict[str, object]:
    """One template as `fisproxy.templates` lists it."""
    return {"id": t.id, "name": t.tags.get(NAME_TAG), "description": t.description,
            "actions": {name: a.action_id for name, a in t.actions.items()}}


def region_of(t: ExperimentTemplate) -> str:
    """The region the template was created in (its ARN's), where the experiment starts."""
    parts = (t.arn or "").split(":")
    return parts[3] if len(parts) > 3 and parts[3] else DEFAULT_REGION
