"""The FIS shapes: wire names and timestamps as botocore parses them, field-naming errors,
partial updates, and the id/ARN/duration helpers."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.parsers import create_parser

from fisproxy.aws import catalog
from fisproxy.fis import ids, targets
from fisproxy.fis.fielderror import FieldError, parse
from fisproxy.fis.inputs import CreateExperimentTemplateRequest, UpdateExperimentTemplateRequest
from fisproxy.fis.models import Experiment, ExperimentTemplate, ExperimentTemplateTarget
from fisproxy.fis.templaterules import validate_template

ROLE = "arn:aws:iam::123456789012:role/fis"


def botocore_parse(operation: str, body: dict[str, Any]) -> dict[str, Any]:
    """What boto3 makes of `body` as the response of `operation`."""
    model = catalog.service_model("fis").operation_model(operation)
    response = {"status_code": 200, "headers": {}, "body": json.dumps(body).encode()}
    return create_parser("rest-json").parse(response, model.output_shape)


def request(**overrides: Any) -> dict[str, Any]:
    body = {
        "description": "d", "roleArn": ROLE, "stopConditions": [{"source": "none"}],
        "targets": {"app": {"resourceType": "aws:iam:role", "resourceTags": {"team": "a"}, "selectionMode": "PERCENT(50)",
                            "filters": [{"path": "Path", "values": ["/app/"]}]}},
        "actions": {"slow": {"actionId": "fisproxy:api:latency",
                             "parameters": {"service": "dynamodb", "latencyMilliseconds": 250, "percentage": 50},
                             "targets": {}}},
    }
    body.update(overrides)
    return body


def stored_template(**overrides: Any) -> ExperimentTemplate:
    t = parse(CreateExperimentTemplateRequest, request())
    created = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    return ExperimentTemplate(id="EXTabcdefghijklmno", arn="arn:aws:fis:us-east-1:123456789012:experiment-template/x",
                              description=t.description, targets=t.targets, actions=t.actions,
                              stop_conditions=t.stop_conditions, role_arn=t.role_arn, creation_time=created,
                              last_update_time=created, **overrides)


def test_wire_is_camel_case_and_botocore_parses_it() -> None:
    t = stored_template(tags={"Name": "n"})
    wire = t.wire()
    assert set(wire) >= {"id", "arn", "roleArn", "stopConditions", "creationTime", "lastUpdateTime"}
    assert wire["targets"]["app"]["selectionMode"] == "PERCENT(50)"
    assert wire["actions"]["slow"]["parameters"] == {"service": "dynamodb", "latencyMilliseconds": "250",
                                                     "percentage": "50"}
    assert "logConfiguration" not in wire  # None is left out
    parsed = botocore_parse("GetExperimentTemplate", {"experimentTemplate": wire})["experimentTemplate"]
    # Milliseconds survive epoch seconds; botocore gives back the same instant.
    assert parsed["creationTime"] == datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
    assert t.creation_time == parsed["creationTime"]
    assert parsed["targets"]["app"]["filters"] == [{"path": "Path", "values": ["/app/"]}]
    assert ExperimentTemplate.model_validate(wire) == t  # and back


def test_snake_case_names_are_accepted_on_input() -> None:
    body = request()
    body["role_arn"] = body.pop("roleArn")
    body["stop_conditions"] = body.pop("stopConditions")
    assert parse(CreateExperimentTemplateRequest, body).role_arn == ROLE


def test_naive_datetimes_are_utc_and_truncated_to_milliseconds() -> None:
    e = Experiment(id="EXP1", creation_time=datetime(2024, 1, 1, 0, 0, 0, 999999))
    assert e.creation_time == datetime(2024, 1, 1, 0, 0, 0, 999000, tzinfo=UTC)
    assert e.wire()["creationTime"] == pytest.approx(1704067200.999)


def test_experiment_from_template_and_botocore_parse() -> None:
    t = stored_template()
    created = ids.now()
    e = Experiment.from_template(t, experiment_id="EXP1", arn="arn:aws:fis:us-east-1:1:experiment/EXP1",
                                 created=created, tags={"k": "v"}, actions_mode="skip-all")
    assert e.state.status == "initiating" and e.actions["slow"].state.status == "pending"
    assert e.actions["slow"].parameters == t.actions["slow"].parameters
    assert e.targets["app"].resource_tags == {"team": "a"}
    assert e.experiment_options is not None and e.experiment_options.actions_mode == "skip-all"
    assert e.experiment_options.empty_target_resolution_mode == "fail"
    assert not e.terminal
    parsed = botocore_parse("GetExperiment", {"experiment": e.wire()})["experiment"]
    assert parsed["state"] == {"status": "initiating", "reason": "Experiment is initiating."}
    assert parsed["actions"]["slow"]["state"] == {"status": "pending", "reason": "Initial state"}
    assert parsed["creationTime"] == created and parsed["tags"] == {"k": "v"}
    with pytest.raises(ValueError):
        Experiment(id="x", state={"status": "exploded"})


@pytest.mark.parametrize(("body", "message"), [
    (request(description=None), "description: Input should be a valid string"),
    (request(actions={"a": {"parameters": {}}}), "actions.a.actionId: required"),
    (request(targets={"t": {"resourceType": "aws:iam:role", "resourceArns": [ROLE]}}),
     "targets.t.selectionMode: required"),
    (request(stopConditions=[{"source": "none", "valu": "x"}]), "stopConditions.0.valu: unknown field"),
    (request(experimentOptions={"accountTargeting": "all"}),
     "experimentOptions.accountTargeting: Input should be 'single-account' or 'multi-account', got \"all\""),
    (request(logConfiguration={"cloudWatchLogsConfiguration": {"logGroupArn": "arn:aws:logs:us-east-1:1:log-group:x"}}),
     "logConfiguration.logSchemaVersion: required"),
    (request(actions={}), "actions: a template needs at least one action"),
    (request(actions={" ": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1M"}}}),
     "actions: names must not be blank"),
    (request(targets={"t": {"resourceType": "aws:iam:role", "selectionMode": "COUNT(0)", "resourceArns": [ROLE]}}),
     "targets.t.selectionMode: COUNT needs at least 1"),
    (request(targets={"t": {"resourceType": "aws:iam:role", "selectionMode": "ALL"}}),
     "targets.t: needs resourceArns, resourceTags or parameters"),
    (request(actions={"w": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1M"}, "startAfter": ["w"]}}),
     "actions.w.startAfter: an action cannot start after itself"),
    (request(stopConditions=[{"source": "aws:cloudwatch:alarm"}]), "stopConditions.0.value: must be a CloudWatch"),
])
def test_errors_name_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(FieldError) as exc:
        parse(CreateExperimentTemplateRequest, body)
    assert str(exc.value).startswith(message)


def test_several_pydantic_problems_are_counted() -> None:
    with pytest.raises(FieldError, match=r"^description: required \(and 2 more problems\)$"):
        parse(CreateExperimentTemplateRequest, {"stopConditions": []})


def test_localstack_quirks_are_accepted() -> None:
    t = parse(CreateExperimentTemplateRequest, request(
        roleArn="arn:aws:iam:000000000000:role/ExperimentRole", stopConditions=[],
        actions={"Some test action": {"actionId": "localstack:generic:api-error",
                                      "parameters": {"service": "kms", "operation": "ListKeys", "errorCode": 400}}}))
    assert t.actions["Some test action"].parameters["errorCode"] == "400"
    assert t.stop_conditions == []


def test_update_applies_only_what_is_named() -> None:
    t = stored_template(tags={"Name": "n"})
    up = parse(UpdateExperimentTemplateRequest, {"description": "new",
                                                 "actions": {"slow": {"parameters": {"service": "s3",
                                                                                     "latencyMilliseconds": "9"}}}})
    out = up.apply_to(t)
    assert out.description == "new" and out.targets == t.targets and out.tags == {"Name": "n"}
    assert out.actions["slow"].action_id == "fisproxy:api:latency"
    assert out.actions["slow"].parameters == {"service": "s3", "latencyMilliseconds": "9"}
    assert t.description == "d"  # the original is untouched
    validate_template(out)
    # Log configuration: given fields merge, an empty object removes it.
    with_logs = parse(UpdateExperimentTemplateRequest, {"logConfiguration": {
        "s3Configuration": {"bucketName": "logs"}, "logSchemaVersion": 2}}).apply_to(t)
    assert with_logs.log_configuration is not None and with_logs.log_configuration.log_schema_version == 2
    removed = parse(UpdateExperimentTemplateRequest, {"logConfiguration": {}}).apply_to(with_logs)
    assert removed.log_configuration is None
    with pytest.raises(FieldError, match="^experimentOptions.accountTargeting: unknown field"):
        parse(UpdateExperimentTemplateRequest, {"experimentOptions": {"accountTargeting": "multi-account"}})


def test_ids_arns_and_durations() -> None:
    assert re.fullmatch(r"EXT[A-Za-z0-9]{15}", ids.new_template_id())
    assert re.fullmatch(r"EXP[A-Za-z0-9]{15}", ids.new_experiment_id())
    assert len({ids.new_experiment_id() for _ in range(100)}) == 100
    arn = ids.experiment_arn("eu-west-1", "123456789012", "EXPx")
    assert arn == "arn:aws:fis:eu-west-1:123456789012:experiment/EXPx"
    assert ids.parse_fis_arn(arn) == ("experiment", "EXPx")
    assert ids.parse_fis_arn(ids.action_arn("us-east-1", "1", "aws:fis:wait")) == ("action", "aws:fis:wait")
    assert ids.parse_fis_arn("arn:aws:s3:::bucket") is None
    assert ids.now().microsecond % 1000 == 0 and ids.now().tzinfo is UTC
    for text, delta in [("PT2S", timedelta(seconds=2)), ("PT1H30M", timedelta(minutes=90)),
                        ("PT0.5S", timedelta(milliseconds=500)), ("P1D", timedelta(days=1)),
                        ("pt5m", timedelta(minutes=5)), (" PT1M30.5S ", timedelta(seconds=90.5))]:
        assert ids.parse_duration(text) == delta
    # pydantic reads these too (a clock time, seconds, a sign, 365 or 30 days): not FIS durations.
    for bad in ("", "P", "PT", "PT5", "5M", "P1Y", "P1M", "PT-1S", "-PT1S", "10:00:00", "300", "P1Y2M"):
        with pytest.raises(ValueError):
            ids.parse_duration(bad)
    assert ids.format_duration(timedelta(minutes=90, seconds=3)) == "PT1H30M3S"
    assert ids.format_duration(timedelta(0)) == "PT0S"


MODES = ["ALL", "COUNT(1)", "COUNT(25)", "PERCENT(1)", "PERCENT(100)", "COUNT(0)", "PERCENT(0)", "PERCENT(101)",
         "COUNT(01)", "COUNT(\u0663)", "count(1)", " ALL", "ALL ", "COUNT()", "SOME", "PERCENT(50%)"]


@pytest.mark.parametrize("mode", MODES)
def test_templates_and_experiments_share_one_selection_grammar(mode: str) -> None:
    # A template is accepted exactly when its experiments can resolve it (COUNT(0) was
    # accepted by one and refused by the other).
    try:
        targets.parse_selection_mode(mode)
        resolvable = True
    except targets.SelectionModeError:
        resolvable = False
    try:
        parse(ExperimentTemplateTarget, {"resourceType": "aws:iam:role", "resourceArns": [ROLE], "selectionMode": mode})
        accepted = True
    except FieldError as e:
        assert str(e).startswith("selectionMode: ")
        accepted = False
    assert accepted == resolvable


def test_count_zero_is_refused_naming_the_field() -> None:
    body = request(targets={"app": {"resourceType": "aws:iam:role", "resourceArns": [ROLE], "selectionMode": "COUNT(0)"}})
    with pytest.raises(FieldError) as info:
        parse(CreateExperimentTemplateRequest, body)
    assert str(info.value) == 'targets.app.selectionMode: COUNT needs at least 1, got "COUNT(0)"'
