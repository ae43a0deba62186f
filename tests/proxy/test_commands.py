"""fisproxy's mitmproxy commands, called the way mitmweb's command bar calls them
(`CommandManager.call_strings`, typed arguments and all) on the production addon list with a
real SQLite store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mitmproxy import exceptions, types
from mitmproxy.test import taddons

from fisproxy.httpdata import ApiRequest
from fisproxy.proxy.addons import make_addons
from fisproxy.proxy.runtime import Runtime

WAIT = {"actionId": "aws:fis:wait", "parameters": {"duration": "PT10M"}}


class Bar:
    """mitmweb's command bar over a started runtime."""

    def __init__(self, tctx: taddons.context, runtime: Runtime) -> None:
        self.tctx = tctx
        self.runtime = runtime

    def __call__(self, name: str, *args: str) -> object:
        return self.tctx.master.commands.call_strings(name, list(args))

    def template(self, name: str | None, region: str = "us-east-1", **fields: object) -> str:
        body = {"description": f"{name} template", "roleArn": "arn:aws:iam::123456789012:role/fis",
                "stopConditions": [{"source": "none"}], "actions": {"wait": WAIT},
                "tags": {"Name": name} if name else {}, **fields}
        api = self.runtime.fis_api
        assert api is not None
        response = api.handle(ApiRequest("POST", "/experimentTemplates", body=json.dumps(body).encode()), region)
        assert response.status == 200, response.body
        return str(json.loads(response.body)["experimentTemplate"]["id"])


@pytest.fixture
async def bar(tmp_path: Path) -> AsyncIterator[Bar]:
    addons = make_addons()
    runtime = addons[1]
    assert isinstance(runtime, Runtime)
    with taddons.context(*addons) as tctx:
        tctx.configure(runtime, fisproxy_state=str(tmp_path / "state.sqlite"), fisproxy_control_port=0)
        assert runtime.settings is not None
        runtime._open(runtime.settings, asyncio.get_running_loop())
        try:
            yield Bar(tctx, runtime)
        finally:
            runtime._close()


async def test_templates_are_listed_with_their_names_and_actions(bar: Bar) -> None:
    template_id = bar.template("throttle-ddb")
    unnamed = bar.template(None)
    listed = json.loads(str(bar("fisproxy.templates")))
    assert {"id": template_id, "name": "throttle-ddb", "description": "throttle-ddb template",
            "actions": {"wait": "aws:fis:wait"}} in listed
    assert [t["name"] for t in listed if t["id"] == unnamed] == [None]


async def test_an_experiment_starts_from_a_template_named_by_its_name_tag_or_id(bar: Bar) -> None:
    template_id = bar.template("throttle-ddb", region="eu-west-1")
    by_name = bar("fisproxy.start", "throttle-ddb")
    by_id = bar("fisproxy.start", template_id)
    assert isinstance(by_name, str) and by_name.startswith("EXP") and by_name != by_id
    store = bar.runtime.store
    assert store is not None
    started = store.get_experiment(by_name)
    assert started is not None and started.experiment_template_id == template_id
    assert started.arn is not None and ":eu-west-1:" in started.arn  # the template's region
    rows = json.loads(str(bar("fisproxy.experiments")))
    assert {r["id"] for r in rows} == {by_name, by_id}
    assert bar("fisproxy.stop", by_name) in ("stopping", "stopped")


async def test_start_completes_from_the_templates_ids_and_names(bar: Bar) -> None:
    template_id = bar.template("throttle-ddb")
    assert set(bar("fisproxy.start.options")) == {template_id, "throttle-ddb"}  # type: ignore[arg-type]
    commands = bar.tctx.master.commands
    # What mitmproxy's console completes while `fisproxy.start thr` is typed.
    parts, _ = commands.parse_partial("fisproxy.start thr")
    typed = parts[-1]
    assert typed.value == "thr" and isinstance(typed.type, types.Choice)
    choice = types.CommandTypes.get(typed.type)
    assert choice is not None
    assert set(choice.completion(commands, typed.type, typed.value)) == {template_id, "throttle-ddb"}


async def test_an_unknown_template_is_refused_and_nothing_starts(bar: Bar) -> None:
    bar.template("throttle-ddb")
    with pytest.raises(exceptions.CommandError, match="Invalid choice"):
        bar("fisproxy.start", "no-such-template")
    assert json.loads(str(bar("fisproxy.experiments"))) == []


async def test_a_name_two_templates_share_asks_for_an_id(bar: Bar) -> None:
    first, second = bar.template("twice"), bar.template("twice")
    with pytest.raises(exceptions.CommandError, match=f"2 templates are named 'twice' \\(.*{first}.*\\): start one by its id"):
        bar("fisproxy.start", "twice")
    assert bar("fisproxy.start", second).startswith("EXP")  # type: ignore[union-attr]


async def test_the_fis_apis_refusals_come_back_as_the_commands_error(bar: Bar) -> None:
    bar.template("throttle-ddb")
    api = bar.runtime.fis_api
    assert api is not None
    engaged = api.handle(ApiRequest("PATCH", "/safetyLevers/default/state", body=json.dumps(
        {"state": {"status": "engaged", "reason": "game day over"}}).encode()), "us-east-1")
    assert engaged.status == 200, engaged.body
    with pytest.raises(exceptions.CommandError, match="ConflictException: .*game day over"):
        bar("fisproxy.start", "throttle-ddb")


async def test_commands_say_when_fisproxy_has_not_started(tmp_path: Path) -> None:
    addons = make_addons()
    with taddons.context(*addons) as tctx:
        for name in ("fisproxy.templates", "fisproxy.start.options", "fisproxy.experiments"):
            with pytest.raises(exceptions.CommandError, match="not running yet"):
                tctx.master.commands.call_strings(name, [])
