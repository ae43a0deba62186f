"""The FIS control API, driven by a real boto3 `fis` client over HTTP.

A tiny stdlib threaded HTTP server adapts requests to `FisApi.handle` (test-only adapter); a
fake runner stands in for the engine. boto3's parsers are the oracle: every one of the 26
operations must round-trip with no parse errors, and errors must come back as the modelled
exception classes with messages that name the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from fisproxy.aws import catalog
from fisproxy.fis import ids
from fisproxy.fis.api import MAX_ACTIVE_EXPERIMENTS, FisApi
from fisproxy.fis.chaos import ChaosApi, ChaosState
from fisproxy.fis.models import (
    Experiment,
    ExperimentState,
    ExperimentTemplate,
    ResolvedTarget,
)
from fisproxy.fis.runstate import RunState
from fisproxy.httpdata import ApiRequest
from fisproxy.proxy.auth import ControlAuth
from fisproxy.proxy.control import ControlPlane, ControlRouter
from fisproxy.proxy.controlserver import ControlServer
from fisproxy.store import Store

ACCOUNT = "111122223333"
ROLE_ARN = "arn:aws:iam::111122223333:role/fis"
APP_ROLE = "arn:aws:iam::111122223333:role/app"
ALARM = "arn:aws:cloudwatch:us-east-1:111122223333:alarm:high-errors"


class FakeRunner:
    """Just enough of the engine: experiments are persisted at once and stay `initiating`."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.cancelled: list[str] = []
        self.started: list[dict[str, Any]] = []

    def start_experiment(self, template: ExperimentTemplate, *, region: str, tags: dict[str, str],
                         actions_mode: str) -> Experiment:
        exp_id = ids.new_experiment_id()
        e = Experiment.from_template(template, experiment_id=exp_id,
                                     arn=ids.experiment_arn(region, ACCOUNT, exp_id),
                                     created=ids.now(), tags=tags, actions_mode=actions_mode)  # type: ignore[arg-type]
        self.started.append({"template": template.id, "region": region, "tags": tags, "mode": actions_mode})
        self.store.put_experiment(e, RunState(region="eu-west-3"))
        return e

    def stop_experiment(self, experiment_id: str) -> Experiment:
        e = self.store.get_experiment(experiment_id)
        assert e is not None
        if not e.terminal:
            e.state = ExperimentState(status="stopping", reason="Stopping Experiment.")
            self.store.put_experiment(e)
        return e

    def cancel_all(self, reason: str) -> None:
        self.cancelled.append(reason)
        for e in self.store.list_experiments():
            if not e.terminal:
                e.state = ExperimentState(status="cancelled", reason=reason)
                self.store.put_experiment(e)

    def active_count(self) -> int:
        return sum(not e.terminal for e in self.store.list_experiments())

    def resolved_targets(self, experiment_id: str) -> list[ResolvedTarget]:
        e = self.store.get_experiment(experiment_id)
        assert e is not None
        return [
            ResolvedTarget(resource_type=t.resource_type, target_name=name, target_information={"identifier": arn})
            for name, t in e.targets.items() for arn in t.resource_arns
        ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state.sqlite")
    yield s
    s.close()


@pytest.fixture
def runner(store: Store) -> FakeRunner:
    return FakeRunner(store)


@pytest.fixture
def api(store: Store, runner: FakeRunner) -> FisApi:
    return FisApi(store, runner, account_id=ACCOUNT)


@pytest.fixture
def endpoint(api: FisApi) -> Iterator[str]:
    """The API served as fisproxy serves it: its control server and control plane (which take
    the region from the request's SigV4 scope)."""
    router = ControlRouter(fis=api, chaos=ChaosApi(ChaosState()))
    server = ControlServer(ControlPlane(router, ControlAuth.from_options(None, [])), "127.0.0.1", 0)
    server.start()
    assert server.address is not None
    yield f"http://127.0.0.1:{server.address[1]}"
    server.stop()


def make_client(endpoint: str, region: str = "us-east-1") -> Any:
    return boto3.client(
        "fis", region_name=region, endpoint_url=endpoint,
        aws_access_key_id="AKIDTEST", aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture
def fis(endpoint: str) -> Any:
    return make_client(endpoint)


def template_args(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "description": "Throttle DynamoDB for the app role",
        "roleArn": ROLE_ARN,
        "stopConditions": [{"source": "none"}],
        "targets": {"myRole": {"resourceType": "aws:iam:role", "resourceArns": [APP_ROLE], "selectionMode": "ALL"}},
        "actions": {
            "wait": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT2S"}},
            "ThrottleAPI": {
                "actionId": "aws:fis:inject-api-throttle-error",
                "description": "Throttle APIs",
                "parameters": {"service": "dynamodb", "operations": "PutItem,GetItem",
                               "percentage": "100", "duration": "PT2M"},
                "targets": {"Roles": "myRole"},
                "startAfter": ["wait"],
            },
        },
        "tags": {"Name": "throttle-ddb"},
    }
    args.update(overrides)
    return args


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    err = exc.value.response["Error"]
    return err["Code"], err["Message"], exc.value.response["ResponseMetadata"]["HTTPStatusCode"]


# ---- every operation, through boto3 ---------------------------------------------------------

def test_every_operation_round_trips_through_boto3(fis: Any, runner: FakeRunner) -> None:
    called: set[str] = set()
    fis.meta.events.register("after-call.fis", lambda model, **kw: called.add(model.name))

    created = fis.create_experiment_template(**template_args(
        logConfiguration={"cloudWatchLogsConfiguration": {"logGroupArn": "arn:aws:logs:us-east-1:111122223333:log-group:fis:*"},
                          "logSchemaVersion": 2},
        experimentOptions={"accountTargeting": "multi-account", "emptyTargetResolutionMode": "skip"},
        experimentReportConfiguration={"outputs": {"s3Configuration": {"bucketName": "reports", "prefix": "x"}},
                                       "preExperimentDuration": "PT1M", "postExperimentDuration": "PT1M"},
    ))["experimentTemplate"]
    tid = created["id"]
    assert re.fullmatch(r"EXT[A-Za-z0-9]{14,16}", tid)
    assert created["arn"] == f"arn:aws:fis:us-east-1:{ACCOUNT}:experiment-template/{tid}"
    assert created["actions"]["ThrottleAPI"]["startAfter"] == ["wait"]
    assert created["creationTime"] == created["lastUpdateTime"]
    assert created["logConfiguration"]["logSchemaVersion"] == 2

    got = fis.get_experiment_template(id=tid)["experimentTemplate"]
    assert got["targets"] == created["targets"] and got["creationTime"] == created["creationTime"]
    listed = fis.list_experiment_templates()["experimentTemplates"]
    assert [t["id"] for t in listed] == [tid] and listed[0]["tags"] == {"Name": "throttle-ddb"}

    updated = fis.update_experiment_template(id=tid, description="changed")["experimentTemplate"]
    assert updated["description"] == "changed" and updated["actions"] == created["actions"]
    assert updated["lastUpdateTime"] >= created["lastUpdateTime"]

    account = "444455556666"
    tac = fis.create_target_account_configuration(
        experimentTemplateId=tid, accountId=account, roleArn="arn:aws:iam::444455556666:role/fis", description="d"
    )["targetAccountConfiguration"]
    assert tac == {"roleArn": "arn:aws:iam::444455556666:role/fis", "accountId": account, "description": "d"}
    assert fis.get_target_account_configuration(experimentTemplateId=tid, accountId=account)[
        "targetAccountConfiguration"] == tac
    tac2 = fis.update_target_account_configuration(experimentTemplateId=tid, accountId=account, description="e")[
        "targetAccountConfiguration"]
    assert tac2["description"] == "e" and tac2["roleArn"] == tac["roleArn"]
    assert [c["accountId"] for c in fis.list_target_account_configurations(experimentTemplateId=tid)[
        "targetAccountConfigurations"]] == [account]
    assert fis.get_experiment_template(id=tid)["experimentTemplate"]["targetAccountConfigurationsCount"] == 1

    exp = fis.start_experiment(experimentTemplateId=tid, tags={"run": "1"},
                               experimentOptions={"actionsMode": "skip-all"})["experiment"]
    eid = exp["id"]
    assert re.fullmatch(r"EXP[A-Za-z0-9]{14,16}", eid)
    assert exp["arn"] == f"arn:aws:fis:us-east-1:{ACCOUNT}:experiment/{eid}"
    assert exp["state"]["status"] == "initiating" and exp["tags"] == {"run": "1"}
    assert exp["actions"]["wait"]["state"]["status"] == "pending"
    assert runner.started[-1] == {"template": tid, "region": "us-east-1", "tags": {"run": "1"}, "mode": "skip-all"}
    assert fis.get_experiment(id=eid)["experiment"]["experimentTemplateId"] == tid
    summaries = fis.list_experiments(experimentTemplateId=tid)["experiments"]
    assert [e["id"] for e in summaries] == [eid]
    assert summaries[0]["experimentOptions"]["actionsMode"] == "skip-all"
    assert fis.list_experiment_resolved_targets(experimentId=eid)["resolvedTargets"] == [
        {"resourceType": "aws:iam:role", "targetName": "myRole", "targetInformation": {"identifier": APP_ROLE}}]
    etac = fis.list_experiment_target_account_configurations(experimentId=eid)["targetAccountConfigurations"]
    assert [c["accountId"] for c in etac] == [account]
    assert fis.get_experiment_target_account_configuration(experimentId=eid, accountId=account)[
        "targetAccountConfiguration"]["description"] == "e"

    arn = exp["arn"]
    fis.tag_resource(resourceArn=arn, tags={"team": "sre"})
    fis.untag_resource(resourceArn=arn, tagKeys=["run"])
    assert fis.list_tags_for_resource(resourceArn=arn)["tags"] == {"team": "sre"}

    stopped = fis.stop_experiment(id=eid)["experiment"]
    assert stopped["state"] == {"status": "stopping", "reason": "Stopping Experiment."}
    assert stopped["tags"] == {"team": "sre"}

    action = fis.get_action(id="aws:fis:inject-api-throttle-error")["action"]
    assert action["arn"] == f"arn:aws:fis:us-east-1:{ACCOUNT}:action/aws:fis:inject-api-throttle-error"
    assert action["targets"] == {"Roles": {"resourceType": "aws:iam:role"}}
    assert action["parameters"]["service"]["required"] is True
    assert {"fisproxy:api:latency", "aws:fis:wait", "localstack:generic:api-error"} <= {
        a["id"] for a in fis.list_actions()["actions"]}
    assert fis.get_target_resource_type(resourceType="aws:iam:role")["targetResourceType"]["resourceType"] == "aws:iam:role"
    assert "aws:iam:role" in {t["resourceType"] for t in fis.list_target_resource_types()["targetResourceTypes"]}

    lever = fis.get_safety_lever(id="default")["safetyLever"]
    assert lever["state"]["status"] == "disengaged"
    assert lever["arn"] == f"arn:aws:fis:us-east-1:{ACCOUNT}:safety-lever/default"
    engaged = fis.update_safety_lever_state(id="default", state={"status": "engaged", "reason": "incident"})
    assert engaged["safetyLever"]["state"] == {"status": "engaged", "reason": "incident"}
    fis.update_safety_lever_state(id="default", state={"status": "disengaged", "reason": "over"})

    deleted_tac = fis.delete_target_account_configuration(experimentTemplateId=tid, accountId=account)
    assert deleted_tac["targetAccountConfiguration"]["accountId"] == account
    deleted = fis.delete_experiment_template(id=tid)["experimentTemplate"]
    assert deleted["id"] == tid and deleted["description"] == "changed"

    assert called == set(catalog.service_model("fis").operation_names)
    assert len(called) == 26


# ---- validation: messages name the field ----------------------------------------------------

def _with_action(**action: Any) -> dict[str, Any]:
    base = {"actionId": "aws:fis:inject-api-throttle-error",
            "parameters": {"service": "dynamodb"}, "targets": {"Roles": "myRole"}}
    return template_args(actions={"ThrottleAPI": {**base, **action}})


BAD_TEMPLATES = [
    (_with_action(actionId="aws:fis:inject-api-throtle-error"),
     'actions.ThrottleAPI.actionId: unknown action "aws:fis:inject-api-throtle-error" (did you mean aws:fis:inject-api-throttle-error'),
    (_with_action(parameters={"service": "dynamodb", "percentage": "150"}),
     'actions.ThrottleAPI.parameters.percentage: must be an integer 1-100, got "150"'),
    (_with_action(parameters={"service": "dynamodb", "percentage": "0"}),
     "actions.ThrottleAPI.parameters.percentage: must be an integer 1-100"),
    (_with_action(parameters={"service": "dynamodb", "duration": "PT13H"}),
     "actions.ThrottleAPI.parameters.duration: must be an ISO 8601 duration up to PT12H"),
    (_with_action(parameters={"service": "dynamodb", "duration": "5 minutes"}),
     "actions.ThrottleAPI.parameters.duration: must be an ISO 8601 duration"),
    (_with_action(parameters={"service": "dynamo"}),
     'actions.ThrottleAPI.parameters.service: unknown AWS service "dynamo" (did you mean dynamodb'),
    (_with_action(parameters={}), "actions.ThrottleAPI.parameters.service: required"),
    (_with_action(parameters={"service": "dynamodb", "operations": "PutItem,PutItems"}),
     'actions.ThrottleAPI.parameters.operations: dynamodb has no operation "PutItems"'),
    (_with_action(parameters={"service": "dynamodb", "percent": "5"}),
     'actions.ThrottleAPI.parameters.percent: aws:fis:inject-api-throttle-error has no parameter "percent"'),
    (_with_action(targets={"Roles": "nope"}), 'actions.ThrottleAPI.targets.Roles: names no target "nope"'),
    (_with_action(targets={"Instances": "myRole"}),
     'actions.ThrottleAPI.targets.Instances: aws:fis:inject-api-throttle-error takes no "Instances" target'),
    (template_args(
        targets={"ec2": {"resourceType": "aws:ec2:instance", "resourceTags": {"a": "b"}, "selectionMode": "ALL"}},
        actions={"T": {"actionId": "aws:fis:inject-api-throttle-error", "parameters": {"service": "ec2"},
                       "targets": {"Roles": "ec2"}}}),
     'actions.T.targets.Roles: target "ec2" is aws:ec2:instance, but Roles needs aws:iam:role'),
    (_with_action(startAfter=["ghost"]), 'actions.ThrottleAPI.startAfter: names no action "ghost"'),
    (template_args(actions={
        "a": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1M"}, "startAfter": ["c"]},
        "b": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1M"}, "startAfter": ["a"]},
        "c": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1M"}, "startAfter": ["b"]}}),
     "actions.a.startAfter: cycle a -> c -> b -> a"),
    (template_args(actions={f"w{i}": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1M"}}
                            for i in range(21)}),
     "actions: at most 20 actions per template, got 21"),
    (template_args(actions={"x" * 65: {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1M"}}}),
     "names are at most 64 characters"),
    (template_args(stopConditions=[{"source": "none"}] * 6), "stopConditions: at most 5 stop conditions"),
    (template_args(stopConditions=[{"source": "aws:cloudwatch:alarms", "value": ALARM}]),
     'stopConditions.0.source: must be none or aws:cloudwatch:alarm, got "aws:cloudwatch:alarms"'),
    (template_args(stopConditions=[{"source": "aws:cloudwatch:alarm", "value": "arn:aws:sns:us-east-1:111122223333:t"}]),
     "stopConditions.0.value: must be a CloudWatch alarm ARN"),
    (template_args(targets={"myRole": {"resourceType": "aws:iam:role", "selectionMode": "ALL",
                                       "resourceArns": [APP_ROLE] * 6}}),
     "targets.myRole.resourceArns: List should have at most 5 items"),
    (template_args(targets={"myRole": {"resourceType": "aws:iam:role", "selectionMode": "SOME",
                                       "resourceArns": [APP_ROLE]}}),
     'targets.myRole.selectionMode: must be ALL, COUNT(n) or PERCENT(n), got "SOME"'),
    (template_args(targets={"myRole": {"resourceType": "aws:iam:role", "selectionMode": "COUNT(0)",
                                       "resourceArns": [APP_ROLE]}}),
     'targets.myRole.selectionMode: COUNT needs at least 1, got "COUNT(0)"'),
    (template_args(targets={"myRole": {"resourceType": "aws:iam:role", "selectionMode": "ALL",
                                       "resourceArns": [APP_ROLE], "resourceTags": {"a": "b"}}}),
     "targets.myRole.resourceArns: cannot be combined with resourceTags or filters"),
    (template_args(tags={f"k{i}": "v" for i in range(51)}), "tags: Dictionary should have at most 50 items"),
    (template_args(description="d" * 513), "description: String should have at most 512 characters"),
    (template_args(roleArn="arn:aws:iam::111122223333:user/bob"), "roleArn: must be an IAM role ARN"),
    (template_args(experimentOptions={"emptyTargetResolutionMode": "ignore"}),
     "experimentOptions.emptyTargetResolutionMode: Input should be 'fail' or 'skip'"),
]


@pytest.mark.parametrize(("args", "message"), BAD_TEMPLATES, ids=[m[:50] for _, m in BAD_TEMPLATES])
def test_bad_templates_are_rejected_naming_the_field(fis: Any, args: dict[str, Any], message: str) -> None:
    with pytest.raises(fis.exceptions.ValidationException) as exc:
        fis.create_experiment_template(**args)
    code, text, status = error_of(exc)
    assert (code, status) == ("ValidationException", 400)
    assert message in text
    assert fis.list_experiment_templates()["experimentTemplates"] == []


GOOD_PARAMETERS = [
    ("aws:fis:inject-api-internal-error", {"service": "s3", "operations": "PutObject", "percentage": "5"}),
    ("aws:fis:inject-api-unavailable-error", {"service": "sqs", "duration": "PT2S"}),
    ("localstack:generic:api-error", {"region": "us-west-1", "errorCode": "503"}),
    ("localstack:generic:api-error", {"service": "kms", "apiCall": "ListKeys", "exception": "SomeTerribleException",
                                      "errorCode": "400"}),
    ("localstack:generic:latency", {"service": "dynamodb", "region": "us-east-1", "latencyMilliseconds": "5000"}),
    ("localstack:kms:inject-api-internal-error", {"percentage": "50"}),
    ("fisproxy:api:latency", {"service": "s3", "latencyMilliseconds": "200", "jitterMilliseconds": "50",
                              "phase": "response", "duration": "PT1H30M"}),
    ("fisproxy:api:error", {"service": "dynamodb", "statusCode": "400", "errorCode": "ThrottlingException",
                            "message": "slow down"}),
    ("fisproxy:api:disconnect", {"mode": "reset", "percentage": "10"}),
    ("aws:ec2:stop-instances", {"startInstancesAfterDuration": "PT2M"}),
]


@pytest.mark.parametrize(("action_id", "params"), GOOD_PARAMETERS)
def test_every_runnable_kind_is_accepted(fis: Any, action_id: str, params: dict[str, str]) -> None:
    t = fis.create_experiment_template(**template_args(
        targets={}, actions={"a": {"actionId": action_id, "parameters": params}}))["experimentTemplate"]
    assert t["actions"]["a"] == {"actionId": action_id, "parameters": params, "targets": {}, "startAfter": []}


def raw(api: FisApi, method: str, path: str, body: Any = None, query: dict[str, list[str]] | None = None,
        region: str = "us-east-1") -> tuple[int, dict[str, str], Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else b""
    r = api.handle(ApiRequest(method, path, query or {}, {}, data), region)
    return r.status, dict(r.headers), json.loads(r.body) if r.body else None


LOCALSTACK_TEMPLATES = [
    {"actions": {"Test action 1": {"actionId": "localstack:generic:api-error",
                                   "parameters": {"service": "dynamodb", "api": "all", "percentage": "100",
                                                  "exception": "DynamoDbException", "errorCode": "500"}}},
     "description": "Template for interfering with the DynamoDB service",
     "stopConditions": [{"source": "none"}], "roleArn": "arn:aws:iam:000000000000:role/ExperimentRole"},
    {"description": "template for internal server error for few regions i.e. us-west-1",
     "actions": {"regionUnavailable-us-west-1": {"actionId": "localstack:generic:api-error",
                                                 "parameters": {"region": "us-west-1", "errorCode": "503"}}},
     "stopConditions": [], "roleArn": "arn:aws:iam:000000000000:role/ExperimentRole"},
    {"actions": {"latency": {"actionId": "localstack:generic:latency",
                             "parameters": {"service": "dynamodb", "region": "us-east-1", "latencyMilliseconds": 5000}}},
     "description": "template for testing delays in DynamoDB API calls", "stopConditions": [],
     "roleArn": "arn:aws:iam:000000000000:role/ExperimentRole"},
]


@pytest.mark.parametrize("body", LOCALSTACK_TEMPLATES)
def test_localstack_templates_are_accepted_verbatim(api: FisApi, body: dict[str, Any]) -> None:
    # Role ARN without the region field, empty stopConditions, names with spaces, numbers.
    status, _, out = raw(api, "POST", "/experimentTemplates", body)
    assert status == 200, out
    params = next(iter(out["experimentTemplate"]["actions"].values()))["parameters"]
    assert all(isinstance(v, str) for v in params.values())
    if "latencyMilliseconds" in params:
        assert params["latencyMilliseconds"] == "5000"


def test_invalid_json_and_wrong_types(api: FisApi) -> None:
    status, headers, out = raw(api, "POST", "/experimentTemplates", b"{not json")
    assert status == 400 and headers["x-amzn-ErrorType"] == "ValidationException"
    assert "not valid JSON" in out["message"]
    assert raw(api, "POST", "/experimentTemplates", [1, 2])[2]["message"] == "The request body must be a JSON object"
    status, _, out = raw(api, "POST", "/experimentTemplates", {**template_args(), "actions": "x"})
    assert status == 400 and out["message"].startswith("actions: ")
    status, _, out = raw(api, "POST", "/experimentTemplates", {**template_args(), "bogus": 1})
    assert (status, out["message"]) == (400, "bogus: unknown field")
    status, _, out = raw(api, "GET", "/experiments", query={"maxResults": ["0"]})
    assert (status, out["message"]) == (400, "maxResults: must be 1-100, got 0")
    status, _, out = raw(api, "GET", "/experiments", query={"maxResults": ["ten"]})
    assert (status, out["message"]) == (400, 'maxResults: must be an integer, got "ten"')
    status, headers, _ = raw(api, "GET", "/nowhere")
    assert status == 404 and headers["x-amzn-ErrorType"] == "UnknownOperationException"


def test_update_is_partial_and_validated(fis: Any) -> None:
    t = fis.create_experiment_template(**template_args())["experimentTemplate"]
    # Only the named action field changes; an action named again keeps its other fields.
    out = fis.update_experiment_template(id=t["id"], actions={
        "wait": {"parameters": {"duration": "PT5S"}},
        "ThrottleAPI": t["actions"]["ThrottleAPI"],
    })["experimentTemplate"]
    assert out["actions"]["wait"] == {"actionId": "aws:fis:wait", "parameters": {"duration": "PT5S"},
                                      "targets": {}, "startAfter": []}
    assert out["description"] == t["description"] and out["tags"] == t["tags"]
    out = fis.update_experiment_template(id=t["id"], experimentOptions={"emptyTargetResolutionMode": "skip"})
    assert out["experimentTemplate"]["experimentOptions"] == {"accountTargeting": "single-account",
                                                              "emptyTargetResolutionMode": "skip"}
    with pytest.raises(fis.exceptions.ValidationException) as exc:
        fis.update_experiment_template(id=t["id"], targets={})
    assert 'actions.ThrottleAPI.targets.Roles: names no target "myRole"' in error_of(exc)[1]
    with pytest.raises(fis.exceptions.ValidationException) as exc:
        fis.update_experiment_template(id=t["id"], actions={"new": {"parameters": {"duration": "PT1M"}}})
    assert error_of(exc)[1] == "actions.new.actionId: required"
    # Nothing changed by the failed updates.
    assert fis.get_experiment_template(id=t["id"])["experimentTemplate"]["targets"] == t["targets"]


# ---- not found, conflicts, quotas -----------------------------------------------------------

def test_missing_resources_are_404(fis: Any) -> None:
    for call, kwargs in [
        (fis.get_experiment_template, {"id": "EXTnope"}),
        (fis.update_experiment_template, {"id": "EXTnope", "description": "x"}),
        (fis.delete_experiment_template, {"id": "EXTnope"}),
        (fis.get_experiment, {"id": "EXPnope"}),
        (fis.stop_experiment, {"id": "EXPnope"}),
        (fis.list_experiment_resolved_targets, {"experimentId": "EXPnope"}),
        (fis.start_experiment, {"experimentTemplateId": "EXTnope"}),
        (fis.get_action, {"id": "aws:fis:nope"}),
        (fis.get_target_resource_type, {"resourceType": "aws:nope:thing"}),
        (fis.get_safety_lever, {"id": "other"}),
        (fis.list_target_account_configurations, {"experimentTemplateId": "EXTnope"}),
        (fis.get_target_account_configuration, {"experimentTemplateId": "EXTnope", "accountId": "123456789012"}),
        (fis.list_tags_for_resource, {"resourceArn": f"arn:aws:fis:us-east-1:{ACCOUNT}:experiment/EXPnope"}),
    ]:
        with pytest.raises(fis.exceptions.ResourceNotFoundException) as exc:
            call(**kwargs)
        assert error_of(exc)[2] == 404


def test_delete_returns_the_template_and_it_is_gone(fis: Any) -> None:
    t = fis.create_experiment_template(**template_args())["experimentTemplate"]
    assert fis.delete_experiment_template(id=t["id"])["experimentTemplate"] == t
    with pytest.raises(fis.exceptions.ResourceNotFoundException):
        fis.get_experiment_template(id=t["id"])


def test_active_experiment_quota(fis: Any, runner: FakeRunner) -> None:
    tid = fis.create_experiment_template(**template_args())["experimentTemplate"]["id"]
    started = [fis.start_experiment(experimentTemplateId=tid)["experiment"]["id"] for _ in range(MAX_ACTIVE_EXPERIMENTS)]
    with pytest.raises(fis.exceptions.ServiceQuotaExceededException) as exc:
        fis.start_experiment(experimentTemplateId=tid)
    assert error_of(exc)[2] == 402
    fis.stop_experiment(id=started[0])  # stopping is still active in the fake ...
    e = runner.store.get_experiment(started[0])
    assert e is not None
    e.state = ExperimentState(status="stopped", reason="Experiment stopped.")
    runner.store.put_experiment(e)  # ... until it is stopped
    fis.start_experiment(experimentTemplateId=tid)


def test_template_quota(store: Store, runner: FakeRunner) -> None:
    api = FisApi(store, runner, account_id=ACCOUNT, max_templates=2)
    for _ in range(2):
        assert raw(api, "POST", "/experimentTemplates", template_args())[0] == 200
    status, headers, out = raw(api, "POST", "/experimentTemplates", template_args())
    assert (status, headers["x-amzn-ErrorType"]) == (402, "ServiceQuotaExceededException")
    assert len(store.list_templates()) == 2


def test_target_account_conflicts(fis: Any) -> None:
    tid = fis.create_experiment_template(**template_args())["experimentTemplate"]["id"]
    args = {"experimentTemplateId": tid, "accountId": "444455556666", "roleArn": "arn:aws:iam::444455556666:role/x"}
    fis.create_target_account_configuration(**args)
    with pytest.raises(fis.exceptions.ConflictException):
        fis.create_target_account_configuration(**args)
    # The same clientToken replays the first answer instead.
    first = fis.create_target_account_configuration(**{**args, "accountId": "777788889999", "clientToken": "t1"})
    again = fis.create_target_account_configuration(**{**args, "accountId": "777788889999", "clientToken": "t1"})
    assert first["targetAccountConfiguration"] == again["targetAccountConfiguration"]
    assert fis.get_experiment_template(id=tid)["experimentTemplate"]["targetAccountConfigurationsCount"] == 2


# ---- pagination -----------------------------------------------------------------------------

def test_pagination_with_max_results_and_next_token(fis: Any) -> None:
    made = [fis.create_experiment_template(**template_args(description=f"t{i}"))["experimentTemplate"]["id"]
            for i in range(7)]
    first = fis.list_experiment_templates(maxResults=3)
    assert [t["id"] for t in first["experimentTemplates"]] == made[:3]
    second = fis.list_experiment_templates(maxResults=3, nextToken=first["nextToken"])
    assert [t["id"] for t in second["experimentTemplates"]] == made[3:6]
    third = fis.list_experiment_templates(maxResults=3, nextToken=second["nextToken"])
    assert [t["id"] for t in third["experimentTemplates"]] == made[6:] and "nextToken" not in third
    pages = fis.get_paginator("list_experiment_templates").paginate(PaginationConfig={"PageSize": 2})
    assert [t["id"] for p in pages for t in p["experimentTemplates"]] == made
    actions = [a["id"] for p in fis.get_paginator("list_actions").paginate(PaginationConfig={"PageSize": 5})
               for a in p["actions"]]
    assert len(actions) == len(set(actions)) == len(fis.list_actions()["actions"]) > 20
    with pytest.raises(fis.exceptions.ValidationException) as exc:
        fis.list_experiment_templates(nextToken="garbage")
    assert error_of(exc)[1].startswith("nextToken: ")


def test_list_experiments_filters_by_template(fis: Any) -> None:
    a = fis.create_experiment_template(**template_args())["experimentTemplate"]["id"]
    b = fis.create_experiment_template(**template_args())["experimentTemplate"]["id"]
    ea = fis.start_experiment(experimentTemplateId=a)["experiment"]["id"]
    eb = fis.start_experiment(experimentTemplateId=b)["experiment"]["id"]
    assert [e["id"] for e in fis.list_experiments()["experiments"]] == [ea, eb]
    assert [e["id"] for e in fis.list_experiments(experimentTemplateId=b)["experiments"]] == [eb]
    assert fis.list_experiment_resolved_targets(experimentId=ea, targetName="myRole")["resolvedTargets"]
    with pytest.raises(fis.exceptions.ResourceNotFoundException):
        fis.list_experiment_resolved_targets(experimentId=ea, targetName="other")


# ---- idempotency ----------------------------------------------------------------------------

def test_client_token_idempotency(fis: Any, runner: FakeRunner) -> None:
    a = fis.create_experiment_template(clientToken="tok-1", **template_args())["experimentTemplate"]
    b = fis.create_experiment_template(clientToken="tok-1", **template_args())["experimentTemplate"]
    c = fis.create_experiment_template(clientToken="tok-2", **template_args())["experimentTemplate"]
    assert a == b and c["id"] != a["id"]
    assert len(fis.list_experiment_templates()["experimentTemplates"]) == 2
    with pytest.raises(fis.exceptions.ConflictException):
        fis.create_experiment_template(clientToken="tok-1", **template_args(description="other"))

    e1 = fis.start_experiment(experimentTemplateId=a["id"], clientToken="run-1")["experiment"]
    e2 = fis.start_experiment(experimentTemplateId=a["id"], clientToken="run-1")["experiment"]
    assert e1["id"] == e2["id"] and len(runner.started) == 1
    # Without a token boto3 makes up a fresh one per call: two experiments.
    fis.start_experiment(experimentTemplateId=a["id"])
    fis.start_experiment(experimentTemplateId=a["id"])
    assert len(runner.started) == 3


# ---- tags -----------------------------------------------------------------------------------

def test_tags_on_templates_and_experiments(fis: Any, store: Store) -> None:
    t = fis.create_experiment_template(**template_args())["experimentTemplate"]
    fis.tag_resource(resourceArn=t["arn"], tags={"team": "sre", "env": "dev"})
    fis.untag_resource(resourceArn=t["arn"], tagKeys=["env", "Name"])
    assert fis.list_tags_for_resource(resourceArn=t["arn"])["tags"] == {"team": "sre"}
    assert fis.get_experiment_template(id=t["id"])["experimentTemplate"]["tags"] == {"team": "sre"}

    e = fis.start_experiment(experimentTemplateId=t["id"], tags={"a": "1"})["experiment"]
    fis.tag_resource(resourceArn=e["arn"], tags={"b": "2"})
    # The engine writing the experiment again does not lose the tags added through the API.
    stored = store.get_experiment(e["id"])
    assert stored is not None
    store.put_experiment(stored)
    assert fis.get_experiment(id=e["id"])["experiment"]["tags"] == {"a": "1", "b": "2"}
    assert fis.list_experiments()["experiments"][0]["tags"] == {"a": "1", "b": "2"}
    with pytest.raises(fis.exceptions.ValidationException):
        fis.tag_resource(resourceArn=t["arn"], tags={f"k{i}": "v" for i in range(50)})
    with pytest.raises(fis.exceptions.ValidationException):
        fis.list_tags_for_resource(resourceArn="arn:aws:s3:::some-bucket-name")


def test_region_comes_from_the_request(endpoint: str) -> None:
    fis = make_client(endpoint, "eu-west-1")
    t = fis.create_experiment_template(**template_args())["experimentTemplate"]
    assert t["arn"].startswith(f"arn:aws:fis:eu-west-1:{ACCOUNT}:experiment-template/")
    e = fis.start_experiment(experimentTemplateId=t["id"])["experiment"]
    assert e["arn"].startswith(f"arn:aws:fis:eu-west-1:{ACCOUNT}:experiment/")
    assert fis.get_experiment_template(id=t["id"])["experimentTemplate"]["arn"] == t["arn"]


# ---- safety lever ---------------------------------------------------------------------------

def test_safety_lever_is_a_persisted_kill_switch(fis: Any, runner: FakeRunner, store: Store, tmp_path: Path) -> None:
    tid = fis.create_experiment_template(**template_args())["experimentTemplate"]["id"]
    eid = fis.start_experiment(experimentTemplateId=tid)["experiment"]["id"]
    fis.update_safety_lever_state(id="default", state={"status": "engaged", "reason": "outage"})
    assert runner.cancelled == ["outage"]
    assert fis.get_experiment(id=eid)["experiment"]["state"]["status"] == "cancelled"
    with pytest.raises(fis.exceptions.ConflictException) as exc:
        fis.start_experiment(experimentTemplateId=tid)
    assert "outage" in error_of(exc)[1]
    with pytest.raises(fis.exceptions.ConflictException):
        fis.update_safety_lever_state(id="default", state={"status": "engaged", "reason": "again"})

    # A new API over the same database file still refuses to start experiments.
    reopened = Store(store.path)
    try:
        api2 = FisApi(reopened, FakeRunner(reopened), account_id=ACCOUNT)
        status, headers, out = raw(api2, "POST", "/experiments", {"experimentTemplateId": tid, "clientToken": "x"})
        assert (status, headers["x-amzn-ErrorType"]) == (409, "ConflictException")
        assert raw(api2, "GET", "/safetyLevers/default")[2]["safetyLever"]["state"]["status"] == "engaged"
    finally:
        reopened.close()

    fis.update_safety_lever_state(id="default", state={"status": "disengaged", "reason": "resolved"})
    assert fis.start_experiment(experimentTemplateId=tid)["experiment"]["state"]["status"] == "initiating"


def test_error_wire_format(api: FisApi) -> None:
    r = api.handle(ApiRequest("GET", "/experimentTemplates/EXTmissing"), "us-east-1")
    assert r.status == 404
    assert r.headers["x-amzn-ErrorType"] == "ResourceNotFoundException"
    assert re.fullmatch(r"[0-9a-f-]{36}", r.headers["x-amzn-RequestId"])
    assert json.loads(r.body) == {"message": "Experiment template EXTmissing not found"}


def test_percent_encoded_labels_and_unencoded_arns(api: FisApi) -> None:
    status, _, out = raw(api, "GET", "/actions/aws%3Afis%3Await")
    assert status == 200 and out["action"]["id"] == "aws:fis:wait"
    t = raw(api, "POST", "/experimentTemplates", template_args())[2]["experimentTemplate"]
    assert raw(api, "GET", "/tags/" + t["arn"])[2] == {"tags": {"Name": "throttle-ddb"}}


def test_every_operation_of_the_model_has_a_handler(api: FisApi) -> None:
    assert set(api.handlers) == set(catalog.service_model("fis").operation_names)


def test_a_path_of_the_model_with_another_method_is_a_validation_error(api: FisApi) -> None:
    status, headers, out = raw(api, "PUT", "/experimentTemplates/EXT1")
    assert (status, headers["x-amzn-ErrorType"]) == (400, "ValidationException")
    assert out["message"] == "PUT is not allowed on /experimentTemplates/EXT1"
    assert raw(api, "GET", "/experimentTemplates/")[2] == {"experimentTemplates": []}  # a trailing slash
