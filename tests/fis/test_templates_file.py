"""Templates as code: YAML/JSON files loaded, validated, and applied by Name tag."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fisproxy.fis.api import FisApi
from fisproxy.fis.templates_file import TemplatesFileError, apply_templates, load_templates
from fisproxy.store import Store
from tests.fis.test_api import FakeRunner

YAML = """
templates:
  throttle-ddb:
    description: Throttle DynamoDB writes
    roleArn: arn:aws:iam::123456789012:role/fis
    targets:
      app:
        resourceType: aws:iam:role
        resourceArns: [arn:aws:iam::123456789012:role/app]
        selectionMode: ALL
    actions:
      throttle:
        actionId: aws:fis:inject-api-throttle-error
        parameters: {service: dynamodb, operations: PutItem, percentage: 50, duration: PT5M}
        targets: {Roles: app}
  slow-s3:
    description: Slow S3
    roleArn: arn:aws:iam::123456789012:role/fis
    stopConditions: [{source: none}]
    tags: {team: storage}
    actions:
      slow:
        actionId: fisproxy:api:latency
        parameters: {service: s3, latencyMilliseconds: 300}
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state.sqlite")
    yield s
    s.close()


@pytest.fixture
def api(store: Store) -> FisApi:
    return FisApi(store, FakeRunner(store))


def write(tmp_path: Path, text: str, name: str = "templates.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_load_yaml_mapping_sets_name_tags_and_defaults(tmp_path: Path) -> None:
    templates = load_templates(write(tmp_path, YAML))
    assert [t.tags["Name"] for t in templates] == ["throttle-ddb", "slow-s3"]
    assert templates[1].tags == {"team": "storage", "Name": "slow-s3"}
    assert templates[0].stop_conditions[0].source == "none"  # default
    assert templates[0].actions["throttle"].parameters["percentage"] == "50"  # numbers become strings


def test_json_list_and_single_template(tmp_path: Path) -> None:
    one = {"description": "d", "roleArn": "arn:aws:iam::123456789012:role/fis", "tags": {"Name": "w"},
           "actions": {"w": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1M"}}}}
    assert [t.tags["Name"] for t in load_templates(write(tmp_path, json.dumps([one]), "a.json"))] == ["w"]
    assert [t.tags["Name"] for t in load_templates(write(tmp_path, json.dumps(one), "b.json"))] == ["w"]
    listed = load_templates(write(tmp_path, json.dumps({"templates": [one]}), "c.json"))
    assert listed[0].description == "d"


@pytest.mark.parametrize(("text", "message"), [
    ("templates: {a: {description: d}}", "templates.a.actions: required (and 1 more problem)"),
    ("templates:\n  a:\n    description: d\n    roleArn: arn:aws:iam::123456789012:role/fis\n"
     "    actions: {x: {actionId: aws:fis:wait, parameters: {duration: PT13H}}}",
     "templates.a.actions.x.parameters.duration: must be an ISO 8601 duration up to PT12H"),
    ("- description: d\n  roleArn: arn:aws:iam::123456789012:role/fis\n"
     "  actions: {x: {actionId: aws:fis:wait, parameters: {duration: PT1M}}}",
     "[0].tags.Name: required"),
    ("templates: 3", "templates: must be a mapping or a list"),
    ("templates: [1]", "templates[0]: must be a mapping"),
    ("a: [b", "not valid YAML"),
    ("templates:\n  a:\n    description: d\n    roleArn: arn:aws:iam::123456789012:role/fis\n"
     "    actionz: {}", "templates.a.actions: required"),
])
def test_bad_files_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TemplatesFileError) as exc:
        load_templates(path)
    assert str(exc.value).startswith(f"{path}: ")
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(TemplatesFileError, match="cannot read"):
        load_templates(tmp_path / "missing.yaml")


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    one = {"description": "d", "roleArn": "arn:aws:iam::123456789012:role/fis", "tags": {"Name": "w"},
           "actions": {"w": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1M"}}}}
    with pytest.raises(TemplatesFileError, match="Name 'w' is also used by"):
        load_templates(write(tmp_path, json.dumps([one, one]), "d.json"))


def test_apply_creates_then_updates_by_name(tmp_path: Path, api: FisApi, store: Store) -> None:
    path = write(tmp_path, YAML)
    first = apply_templates(path, api)
    assert [t.tags["Name"] for t in first] == ["throttle-ddb", "slow-s3"]
    assert first[0].arn == f"arn:aws:fis:us-east-1:123456789012:experiment-template/{first[0].id}"

    # Unchanged file: nothing is rewritten (same ids, same update time).
    again = apply_templates(path, api)
    assert [(t.id, t.last_update_time) for t in again] == [(t.id, t.last_update_time) for t in first]

    # A changed template keeps its identity; the file is authoritative for its content.
    write(tmp_path, YAML.replace("percentage: 50", "percentage: 75").replace("Slow S3", "Slower S3"))
    changed = apply_templates(path, api, region="eu-west-1")
    assert [t.id for t in changed] == [t.id for t in first]
    assert changed[0].actions["throttle"].parameters["percentage"] == "75"
    assert changed[1].description == "Slower S3"
    assert changed[0].creation_time == first[0].creation_time
    assert changed[0].arn == first[0].arn
    assert len(store.list_templates()) == 2

    # Templates created through the API, and templates no longer in the file, are left alone.
    other = api.create_template(load_templates(write(tmp_path, YAML, "other.yaml"))[0].model_copy(
        update={"tags": {"Name": "api-made"}}), "us-east-1")
    write(tmp_path, "templates: {}")
    assert apply_templates(path, api) == []
    assert {t.id for t in store.list_templates()} == {first[0].id, first[1].id, other.id}


@pytest.mark.parametrize(("name", "text", "message"), [
    ("t.yaml", "templates:\n  a:\n    description: d\n   roleArn: x\n",
     "line 4, column 4: not valid YAML: expected <block end>, but found '<block mapping start>' "
     "(while parsing a block mapping at line 2, column 3)"),
    ("t.yaml", "templates:\n  a: {description: d\n", "line 3, column 1: not valid YAML: "
     "expected ',' or '}', but got '<stream end>' (while parsing a flow mapping at line 2, column 6)"),
    ("t.yaml", "a: b\n  c: d\n", "line 2, column 4: not valid YAML: mapping values are not allowed here"),
    ("t.json", '{"templates":\n  {"a" 1}}', "line 2, column 8: not valid JSON: Expecting ':' delimiter"),
])
def test_syntax_errors_give_line_and_column(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = write(tmp_path, text, name)
    with pytest.raises(TemplatesFileError) as exc:
        load_templates(path)
    assert str(exc.value) == f"{path}: {message}"
