"""Malformed requests to the control APIs get a model error naming the field, never a 500.

Each case is one the probe of issue 9.6 answered with a 500 (an exception escaping
`FisApi.handle` or `ChaosApi.handle`): durations too long for a timedelta, undecodable bytes
(mitmproxy hands them over as lone surrogates) in URI labels and query values, page tokens
decoding to Infinity or deeply nested JSON (or a negative offset, which was accepted), and
JSON bodies nested 100,000 deep."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fisproxy.fis.api import FisApi
from fisproxy.fis.chaos import EFFECTS_PATH, FAULTS_PATH, ChaosApi, ChaosState
from fisproxy.fis.fielderror import FieldError, parse
from fisproxy.fis.ids import parse_duration
from fisproxy.fis.inputs import CreateExperimentTemplateRequest
from fisproxy.fis.jsonbody import BodyError, loads
from fisproxy.httpdata import ApiRequest
from fisproxy.store import Store
from tests.fis.test_api import FakeRunner

ROLE = "arn:aws:iam::111122223333:role/fis"
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture
def api(tmp_path: Path) -> Iterator[FisApi]:
    store = Store(tmp_path / "state.sqlite")
    yield FisApi(store, FakeRunner(store))
    store.close()


def call(api: FisApi, method: str, path: str, body: Any = None, **query: str) -> tuple[int, str, str]:
    """(status, error type, message) of one request; the body may be raw bytes."""
    raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    response = api.handle(ApiRequest(method, path, {k: [v] for k, v in query.items()}, {}, raw), "us-east-1")
    message = json.loads(response.body).get("message", "")
    response.body.decode()  # what goes on the wire is valid UTF-8
    return response.status, response.headers.get("x-amzn-ErrorType", ""), message


def template(duration: str) -> dict[str, Any]:
    return {"description": "d", "roleArn": ROLE, "stopConditions": [{"source": "none"}],
            "actions": {"wait": {"actionId": "aws:fis:wait", "parameters": {"duration": duration}}}}


def token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode()


@pytest.mark.parametrize("duration", ["P9999999999D", "PT" + "9" * 400 + "S", "P" + "9" * 5000 + "D",
                                      "PT9999999999999999H"])
def test_a_duration_too_long_for_a_timedelta_is_a_validation_error(api: FisApi, duration: str) -> None:
    status, code, message = call(api, "POST", "/experimentTemplates", template(duration))
    assert (status, code) == (400, "ValidationException")
    assert message.startswith("actions.wait.parameters.duration: ")


@pytest.mark.parametrize("text", ["P9999999999D", "PT" + "9" * 400 + "S", "PT1e999S", "P" + "1" * 100 + "D"])
def test_parse_duration_raises_only_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize("raw", [
    b'{"offset": Infinity}', b'{"offset": NaN}', b'{"offset": 1e999}', b"[" * 5000 + b"]" * 5000,
    b'{"offset": -5}', b'{"offset": 1.5}', b'{"offset": "3"}', b'{"offset": 3, "x": 1}', b"\xff",
    b'{"offset":' + b"9" * 5000 + b"}",
])
def test_a_page_token_this_api_did_not_issue_is_a_validation_error(api: FisApi, raw: bytes) -> None:
    status, code, message = call(api, "GET", "/experimentTemplates", nextToken=token(raw))
    assert (status, code) == (400, "ValidationException")
    assert message.startswith("nextToken: ")


def test_a_page_token_that_decodes_to_deep_nesting_is_refused(api: FisApi) -> None:
    status, code, message = call(api, "GET", "/experimentTemplates", nextToken=token(DEEP))
    assert (status, code) == (400, "ValidationException") and message.startswith("nextToken: ")


def test_issued_page_tokens_still_page(api: FisApi) -> None:
    for i in range(3):
        assert call(api, "POST", "/experimentTemplates", {**template("PT1M"), "description": f"t{i}"})[0] == 200
    first = api.handle(ApiRequest("GET", "/experimentTemplates", {"maxResults": ["2"]}), "us-east-1")
    page = json.loads(first.body)
    rest = api.handle(ApiRequest("GET", "/experimentTemplates", {"nextToken": [page["nextToken"]]}), "us-east-1")
    assert len(page["experimentTemplates"]) == 2 and len(json.loads(rest.body)["experimentTemplates"]) == 1


@pytest.mark.parametrize("body", [DEEP, b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
                                  b'{"description": ' + b"[" * 40 + b"]" * 40 + b"}"])
def test_a_body_nested_too_deep_is_a_validation_error(api: FisApi, body: bytes) -> None:
    status, code, message = call(api, "POST", "/experimentTemplates", body)
    assert (status, code) == (400, "ValidationException")
    assert message.startswith("The request body is not valid JSON: ")


@pytest.mark.parametrize("method, path, query, field", [
    ("GET", "/experimentTemplates/EXT\udcff", {}, "id"),
    ("GET", "/experimentTemplates/\ud800", {}, "id"),
    ("GET", "/experiments/\udcff", {}, "id"),
    ("DELETE", "/experimentTemplates/\udcffx", {}, "id"),
    ("GET", "/tags/arn:aws:fis:us-east-1:1:experiment/\udcff", {}, "resourceArn"),
    ("DELETE", "/tags/arn:aws:fis:us-east-1:111122223333:experiment/EXP1", {"tagKeys": "\udcff"}, "tagKeys"),
    ("GET", "/experiments", {"experimentTemplateId": "\udcff"}, "experimentTemplateId"),
    ("GET", "/experimentTemplates", {"nextToken": "\udcff"}, "nextToken"),
    ("GET", "/experimentTemplates", {"maxResults": "\udcff"}, "maxResults"),
    ("GET", "/experimentTemplates", {"maxResults": "1_0"}, "maxResults"),
    ("GET", "/experimentTemplates", {"maxResults": "9" * 5000}, "maxResults"),
    ("GET", "/experimentTemplates/" + "x" * 65, {}, "id"),
    ("GET", "/actions/" + "a" * 129, {}, "id"),
    ("GET", "/experimentTemplates/a%20b", {}, "id"),  # pattern [\S]+
    ("POST", "/experimentTemplates/EXT1/targetAccountConfigurations/123", {}, "accountId"),
])
def test_a_uri_label_or_query_value_the_model_forbids_is_a_validation_error(
        api: FisApi, method: str, path: str, query: dict[str, str], field: str) -> None:
    status, code, message = call(api, method, path, {"roleArn": ROLE} if method == "POST" else None, **query)
    assert (status, code) == (400, "ValidationException"), message
    assert message.startswith(f"{field}: ")


@pytest.mark.parametrize("body", [
    # Found by the fuzz test: a lone surrogate as a map key reached pydantic's error location.
    b'{"description": "d", "roleArn": "arn:aws:iam::111122223333:role/fis", "stopConditions": [], '
    b'"actions": {"\\ud800": {"actionId": "aws:arc:start-zonal-autoshift", "parameters": {}}}}',
    b'{"description": "\\udcff", "roleArn": "arn:aws:iam::111122223333:role/fis", "stopConditions": [], '
    b'"actions": {}, "tags": {"k\\udfff": "v"}}',
])
def test_a_json_string_that_is_not_valid_unicode_is_a_validation_error(api: FisApi, body: bytes) -> None:
    status, code, message = call(api, "POST", "/experimentTemplates", body)
    assert (status, code) == (400, "ValidationException")
    assert message.startswith("The request body is not valid JSON: a string holds a lone surrogate")


def test_a_rejected_value_with_undecodable_bytes_is_shown_escaped() -> None:
    # Bodies never get this far (jsonbody refuses them); templates files and callers may.
    data = {**template("PT1M"), "experimentOptions": {"accountTargeting": "single\udcff"}}
    with pytest.raises(FieldError) as info:
        parse(CreateExperimentTemplateRequest, data)
    message = str(info.value)
    assert message.startswith("experimentOptions.accountTargeting: ") and "\\udcff" in message
    message.encode()


# ---- the Chaos API --------------------------------------------------------------------------


@pytest.fixture
def chaos() -> ChaosApi:
    saved: list[Any] = []
    return ChaosApi(ChaosState(load=lambda: None, save=saved.append))


@pytest.mark.parametrize("method, path", [
    ("POST", FAULTS_PATH), ("PATCH", FAULTS_PATH), ("DELETE", FAULTS_PATH), ("POST", EFFECTS_PATH),
])
def test_chaos_bodies_nested_too_deep_are_a_decoding_error(chaos: ChaosApi, method: str, path: str) -> None:
    response = chaos.handle(ApiRequest(method, path, body=DEEP))
    assert response is not None and response.status == 400
    assert json.loads(response.body)["message"].startswith("Error decoding JSON: nested deeper than")
    assert json.loads(chaos.handle(ApiRequest("GET", path)).body) in ([], {"latency": 0})


@pytest.mark.parametrize("body", [b'[{"service": "\\udcff"}]', b'[{"region": "\\ud800", "probability": 1}]',
                                  b'{"latency": 1e999}', b'{"latency": NaN}', b"\xff\xfe"])
def test_chaos_odd_values_are_a_400(chaos: ChaosApi, body: bytes) -> None:
    path = EFFECTS_PATH if b"latency" in body else FAULTS_PATH
    response = chaos.handle(ApiRequest("POST", path, body=body))
    assert response is not None and response.status == 400
    response.body.decode()


@pytest.mark.parametrize("latency", [str(10**400), "1e308", "3600001"])
def test_chaos_latency_past_an_hour_is_a_schema_error(chaos: ChaosApi, latency: str) -> None:
    # Found by the fuzz test: 10**400 raised OverflowError when the effect was compiled.
    response = chaos.handle(ApiRequest("POST", EFFECTS_PATH, body=b'{"latency": ' + latency.encode() + b"}"))
    assert response is not None and response.status == 400
    assert json.loads(response.body)["message"].endswith("is greater than the maximum of 3600000")
    assert json.loads(chaos.handle(ApiRequest("GET", EFFECTS_PATH)).body) == {"latency": 0}


def test_loads_refuses_what_no_control_api_body_holds() -> None:
    assert loads(b'{"a": [1, 2.5, {"b": null}]}') == {"a": [1, 2.5, {"b": None}]}
    for raw in (DEEP, b"[" * 33 + b"]" * 33, b"NaN", b"[Infinity]", b"1e999", b"\xff", b"9" * 5000):
        with pytest.raises(BodyError):
            loads(raw)
    assert loads(b"[" * 32 + b"]" * 32) is not None
