"""The LocalStack Chaos API emulation: HTTP semantics, validation messages, matching, persistence.

Expected messages are written out from LocalStack's Chaos API documentation
(https://docs.localstack.cloud/user-guide/chaos-engineering/chaos-api/) and its tests;
where jsonschema is installed (a test-only, transitive package) it is also used as an oracle on
the schema the spec describes.
"""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import pytest

from fisproxy.aws import catalog
from fisproxy.aws.call import AwsCall
from fisproxy.fis.chaos import (
    EFFECTS_PATH,
    FAULT_MESSAGE,
    FAULTS_PATH,
    ChaosApi,
    ChaosState,
    FaultError,
    FaultRule,
    NetworkEffects,
)
from fisproxy.fis.faults import FaultSpec
from fisproxy.httpdata import ApiRequest

# --- helpers -------------------------------------------------------------------------------------


def send(api: ChaosApi, method: str, path: str, body: Any = None, raw: bytes | None = None):
    """Call the API like curl would; returns (status, decoded JSON body)."""
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    resp = api.handle(ApiRequest(method=method, path=path, body=data))
    assert resp is not None
    assert resp.headers["content-type"] == "application/json"
    return resp.status, json.loads(resp.body)


def aws_call(api: str, operation: str | None = "ListThings", region: str | None = "us-east-1"):
    """An AwsCall as identification would build it: signing name from botocore's model."""
    return AwsCall(service=catalog.signing_name(api), api=api, operation=operation, region=region)


@pytest.fixture
def api() -> ChaosApi:
    return ChaosApi(ChaosState())


RNG = random.Random(0)


# --- the documented curl sequence (9.1) ---------------------------------------------------------


def test_documented_curl_sequence(api: ChaosApi) -> None:
    assert send(api, "GET", FAULTS_PATH) == (200, [])

    three = [
        {"service": "s3", "region": "us-east-1"},
        {"service": "s3", "region": "ap-south-1"},
        {"service": "lambda"},
    ]
    status, body = send(api, "POST", FAULTS_PATH, three)
    assert (status, body) == (200, three)

    kinesis = [
        {
            "service": "kinesis",
            "operation": "PutRecord",
            "probability": 0.3,
            "error": {"statusCode": 400, "code": "ProvisionedThroughputExceededException"},
        }
    ]
    assert send(api, "PATCH", FAULTS_PATH, kinesis) == (200, three + kinesis)

    assert send(api, "DELETE", FAULTS_PATH, [{"service": "lambda"}]) == (200, three[:2] + kinesis)
    assert send(api, "GET", FAULTS_PATH) == (200, three[:2] + kinesis)

    assert send(api, "POST", FAULTS_PATH, []) == (200, [])
    assert send(api, "GET", FAULTS_PATH) == (200, [])


def test_echo_is_textually_what_was_sent(api: ChaosApi) -> None:
    # no defaults filled in, the client's key order kept
    raw = b'[{"service": "s3", "region": "us-east-1"}, {"error": {"code": "X", "statusCode": 500}}, {}]'
    resp = api.handle(ApiRequest("POST", FAULTS_PATH, body=raw))
    assert resp is not None and resp.status == 200
    assert resp.body == raw


def test_delete_needs_exact_equality(api: ChaosApi) -> None:
    send(api, "POST", FAULTS_PATH, [{"service": "s3", "region": "us-east-1"}, {"service": "s3"}])
    # a subset of a rule's fields is not that rule; an absent rule is not an error
    assert send(api, "DELETE", FAULTS_PATH, [{"region": "us-east-1"}, {"service": "sqs"}]) == (
        200,
        [{"service": "s3", "region": "us-east-1"}, {"service": "s3"}],
    )
    # key order does not matter for equality
    assert send(api, "DELETE", FAULTS_PATH, [{"region": "us-east-1", "service": "s3"}]) == (
        200,
        [{"service": "s3"}],
    )


def test_delete_removes_every_copy(api: ChaosApi) -> None:
    send(api, "POST", FAULTS_PATH, [{"service": "s3"}])
    send(api, "PATCH", FAULTS_PATH, [{"service": "s3"}, {"service": "sqs"}])
    assert send(api, "GET", FAULTS_PATH)[1] == [
        {"service": "s3"},
        {"service": "s3"},
        {"service": "sqs"},
    ]
    assert send(api, "DELETE", FAULTS_PATH, [{"service": "s3"}]) == (200, [{"service": "sqs"}])


@pytest.mark.parametrize(
    "rules",
    [  # LocalStack's valid samples
        [{}],
        [{"region": "us-east-1"}],
        [{"region": "us-east-1"}, {"region": "ap-south-1"}],
        [{"region": "placeholder", "service": "s3"}],
        [{"region": "placeholder", "service": "acm-pca"}],
        [{"region": "placeholder", "service": "cognito_identity"}],
        [{"region": "placeholder", "service": "placeholder", "operation": "DoSomething"}],
        [{"region": "placeholder", "probability": 1}],
        [{"region": "placeholder", "probability": 1.0}],
        [{"region": "placeholder", "probability": 0.0}],
        [{"region": "placeholder", "error": {}}],
        [{"region": "placeholder", "error": {"statusCode": 400}}],
        [{"region": "placeholder", "error": {"statusCode": 400, "code": "BrainFry"}}],
        [{"description": "An empty rule that causes a global outage"}],
        [{"description": "x" * 8192, "error": {"statusCode": 599}}],
    ],
)
def test_valid_rules_are_accepted_and_echoed(api: ChaosApi, rules: list) -> None:
    assert send(api, "POST", FAULTS_PATH, rules) == (200, rules)
    assert send(api, "GET", FAULTS_PATH) == (200, rules)


# --- validation ----------------------------------------------------------------------------------

FAULT_RULE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "region": {"type": "string", "pattern": "^[a-zA-Z0-9-]+$"},
        "service": {"type": "string", "pattern": "^[a-zA-Z0-9-_]+$"},
        "operation": {"type": "string", "pattern": "^[a-zA-Z]+$"},
        "probability": {"type": "number", "minimum": 0, "maximum": 1},
        "description": {"type": "string", "maxLength": 8192},
        "error": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "statusCode": {"type": "integer", "minimum": 400, "maximum": 599},
                "code": {"type": "string", "pattern": "^[a-zA-Z0-9]+$"},
            },
        },
    },
}
FAULTS_SCHEMA = {"type": "array", "items": FAULT_RULE_SCHEMA, "uniqueItems": True}
EFFECTS_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["latency"],
    "properties": {"latency": {"type": "integer", "minimum": 0}},
}

INVALID_FAULTS = [
    (
        [{"region": "s3", "foo": "bar"}],
        "Additional properties are not allowed ('foo' was unexpected)",
    ),
    ([{"region": "us*"}], "'us*' does not match '^[a-zA-Z0-9-]+$'"),
    ([{"region": ""}], "'' does not match '^[a-zA-Z0-9-]+$'"),
    (
        [{"region": "placeholder", "operation": "Put42Items"}],
        "'Put42Items' does not match '^[a-zA-Z]+$'",
    ),
    ([{"region": "placeholder", "probability": 1.1}], "1.1 is greater than the maximum of 1"),
    (
        [{"region": "placeholder", "error": {"blah": 814}}],
        "Additional properties are not allowed ('blah' was unexpected)",
    ),
    (
        [{"region": "placeholder", "error": {"statusCode": 300}}],
        "300 is less than the minimum of 400",
    ),
    ([{"region": "placeholder", "error": {"code": ""}}], "'' does not match '^[a-zA-Z0-9]+$'"),
    (
        [{"service": "sns", "region": "us-east-1", "invalid-key": "invalid-value"}],
        "Additional properties are not allowed ('invalid-key' was unexpected)",
    ),
    ([{"operation": ""}], "'' does not match '^[a-zA-Z]+$'"),
    ([{"service": ""}], "'' does not match '^[a-zA-Z0-9-_]+$'"),
    ([{"invalid-key": ""}], "Additional properties are not allowed ('invalid-key' was unexpected)"),
    ([{"": ""}], "Additional properties are not allowed ('' was unexpected)"),
    # beyond the documented ones: types, bounds, null, shape
    ([{"probability": -0.5}], "-0.5 is less than the minimum of 0"),
    ([{"probability": "0.5"}], "'0.5' is not of type 'number'"),
    ([{"probability": True}], "True is not of type 'number'"),
    ([{"error": {"statusCode": 600}}], "600 is greater than the maximum of 599"),
    ([{"error": {"statusCode": 450.5}}], "450.5 is not of type 'integer'"),
    ([{"error": {"statusCode": "450"}}], "'450' is not of type 'integer'"),
    (
        [{"error": {"status_code": 450}}],
        "Additional properties are not allowed ('status_code' was unexpected)",
    ),
    ([{"error": "TeaPotError"}], "'TeaPotError' is not of type 'object'"),
    ([{"service": None}], "None is not of type 'string'"),
    ([{"error": None}], "None is not of type 'object'"),
    ([{"service": 3}], "3 is not of type 'string'"),
    ([{"description": "x" * 8193}], f"{'x' * 8193!r} is too long"),
    (
        [{"code": 1, "foo": 2}],
        "Additional properties are not allowed ('code', 'foo' were unexpected)",
    ),
    (["s3"], "'s3' is not of type 'object'"),
    ({"service": "s3"}, "{'service': 's3'} is not of type 'array'"),
    ("s3", "'s3' is not of type 'array'"),
    (
        [{"service": "s3"}, {"service": "s3"}],
        "[{'service': 's3'}, {'service': 's3'}] has non-unique elements",
    ),
    # several errors: the one jsonschema.best_match reports (the shallowest, then the last sibling)
    ([{"region": "", "foo": 1}], "Additional properties are not allowed ('foo' was unexpected)"),
    ([{"region": ""}, {"service": ""}], "'' does not match '^[a-zA-Z0-9-_]+$'"),
    (
        [{"region": "", "service": "-", "error": {"statusCode": 1}}],
        "'' does not match '^[a-zA-Z0-9-]+$'",
    ),
    (
        [{"error": {"statusCode": 1}}, {"foo": 1}],
        "Additional properties are not allowed ('foo' was unexpected)",
    ),
    ([{"foo": 1}, 5], "5 is not of type 'object'"),
]


@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE"])
@pytest.mark.parametrize(("body", "message"), INVALID_FAULTS)
def test_invalid_faults_are_rejected_and_change_nothing(
    api: ChaosApi, method: str, body: Any, message: str
) -> None:
    before = [{"service": "kms", "region": "us-east-1"}]
    send(api, "POST", FAULTS_PATH, before)
    assert send(api, method, FAULTS_PATH, body) == (
        400,
        {"message": f"Error validating JSON schema: {message}"},
    )
    assert send(api, "GET", FAULTS_PATH) == (200, before)
    # and the matcher still sees the old rules
    assert [f.source for f in api.state.match(aws_call("kms"), RNG)] == ["chaos/0"]


@pytest.mark.parametrize(("body", "message"), INVALID_FAULTS)
def test_fault_messages_match_jsonschema(body: Any, message: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    with pytest.raises(jsonschema.ValidationError) as exc:
        jsonschema.validate(body, FAULTS_SCHEMA)
    assert exc.value.message == message


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "Expecting value: line 1 column 1 (char 0)"),
        (b"[{", "Expecting property name enclosed in double quotes: line 1 column 3 (char 2)"),
        (b'[{"service": "s3"}] x', "Extra data: line 1 column 21 (char 20)"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", FAULTS_PATH),
        ("PATCH", FAULTS_PATH),
        ("DELETE", FAULTS_PATH),
        ("POST", EFFECTS_PATH),
    ],
)
def test_malformed_json(api: ChaosApi, method: str, path: str, raw: bytes, message: str) -> None:
    send(api, "POST", FAULTS_PATH, [{"service": "kms"}])
    send(api, "POST", EFFECTS_PATH, {"latency": 5})
    assert send(api, method, path, raw=raw) == (400, {"message": f"Error decoding JSON: {message}"})
    assert send(api, "GET", FAULTS_PATH) == (200, [{"service": "kms"}])
    assert send(api, "GET", EFFECTS_PATH) == (200, {"latency": 5})


def test_body_that_is_not_text(api: ChaosApi) -> None:
    status, body = send(api, "POST", FAULTS_PATH, raw=b"\xff\xfe\xfd")
    assert status == 400 and body["message"].startswith("Error decoding JSON: ")


def test_models_are_the_validation() -> None:
    rule = FaultRule.model_validate(
        {"service": "s3", "error": {"statusCode": 450, "code": "TeaPotError"}}
    )
    assert rule.error == FaultError(statusCode=450, code="TeaPotError")
    assert rule.error.status_code == 450 and rule.probability is None
    assert rule.wire() == {"service": "s3", "error": {"statusCode": 450, "code": "TeaPotError"}}
    # integral floats are integers in JSON Schema
    assert FaultRule.model_validate({"error": {"statusCode": 400.0}}).wire() == {
        "error": {"statusCode": 400}
    }
    assert NetworkEffects.model_validate({"latency": 5.0}).latency == 5


# --- matching ------------------------------------------------------------------------------------


def test_empty_rule_fails_everything_with_the_default_error(api: ChaosApi) -> None:
    send(api, "POST", FAULTS_PATH, [{}])
    for region in ["us-east-1", "eu-central-1", "ap-east-1", None]:
        for name, op in [
            ("sns", "ListTopics"),
            ("sqs", "ListQueues"),
            ("s3", "ListBuckets"),
            ("ec2", "DescribeInstances"),
            ("dynamodb", "ListTables"),
            ("lambda", "ListFunctions"),
        ]:
            faults = api.state.match(aws_call(name, op, region), RNG)
            assert len(faults) == 1
            assert faults[0].source == "chaos/0"
            assert faults[0].spec == FaultSpec(
                kind="error", status=503, code="ServiceUnavailable", message=FAULT_MESSAGE
            )
            assert faults[0].label == "chaos/0/error"


def test_no_rules_no_faults(api: ChaosApi) -> None:
    assert api.state.match(aws_call("s3"), RNG) == []
    send(api, "POST", FAULTS_PATH, [{}])
    send(api, "POST", FAULTS_PATH, [])
    assert api.state.match(aws_call("s3"), RNG) == []


def test_region_outage(api: ChaosApi) -> None:
    send(api, "POST", FAULTS_PATH, [{"region": "eu-west-1"}])
    for name in ["kms", "ec2", "s3"]:
        assert [
            f.spec.status for f in api.state.match(aws_call(name, region="eu-west-1"), RNG)
        ] == [503]
        for other in ["us-east-1", "ap-south-1", "eu-central-1", None]:
            assert api.state.match(aws_call(name, region=other), RNG) == []


def test_specific_services_in_regions(api: ChaosApi) -> None:
    send(
        api,
        "POST",
        FAULTS_PATH,
        [
            {"region": "us-west-1", "service": "kms"},
            {"region": "eu-west-1", "service": "kms"},
            {"region": "ap-south-1", "service": "s3"},
        ],
    )
    hit = lambda name, region: bool(api.state.match(aws_call(name, region=region), RNG))  # noqa: E731
    assert hit("kms", "us-west-1") and hit("kms", "eu-west-1") and hit("s3", "ap-south-1")
    assert (
        not hit("s3", "us-west-1") and not hit("s3", "eu-west-1") and not hit("kms", "ap-south-1")
    )


def test_operation_is_per_service(api: ChaosApi) -> None:
    send(api, "POST", FAULTS_PATH, [{"service": "appconfig", "operation": "ListEnvironments"}])
    assert api.state.match(aws_call("appconfig", "ListEnvironments"), RNG)
    assert not api.state.match(aws_call("appconfig", "ListApplications"), RNG)
    assert not api.state.match(aws_call("mwaa", "ListEnvironments"), RNG)
    # an operation not yet known (query API, body not read yet) does not match an operation rule
    assert not api.state.match(aws_call("appconfig", None), RNG)


@pytest.mark.parametrize(
    ("rule_service", "api_name"),
    [
        ("cognito_identity", "cognito-identity"),  # LocalStack's spelling
        ("cognito-identity", "cognito-identity"),
        ("monitoring", "cloudwatch"),  # signing name
        ("cloudwatch", "cloudwatch"),  # botocore name
        ("airflow", "mwaa"),
        ("mwaa", "mwaa"),
        ("acm-pca", "acm-pca"),
    ],
)
def test_service_names(api: ChaosApi, rule_service: str, api_name: str) -> None:
    send(api, "POST", FAULTS_PATH, [{"service": rule_service}])
    assert api.state.match(aws_call(api_name), RNG)
    assert not api.state.match(aws_call("sqs"), RNG)


def test_custom_error(api: ChaosApi) -> None:
    send(
        api,
        "POST",
        FAULTS_PATH,
        [
            {
                "region": "us-east-1",
                "service": "mwaa",
                "operation": "ListEnvironments",
                "error": {"statusCode": 450, "code": "TeaPotError"},
            }
        ],
    )
    [fault] = api.state.match(aws_call("mwaa", "ListEnvironments"), RNG)
    assert (fault.spec.kind, fault.spec.status, fault.spec.code, fault.spec.message) == (
        "error",
        450,
        "TeaPotError",
        FAULT_MESSAGE,
    )


def test_partial_custom_error_takes_defaults(api: ChaosApi) -> None:
    send(
        api,
        "POST",
        FAULTS_PATH,
        [
            {"service": "s3", "error": {"statusCode": 500}},
            {"service": "sqs", "error": {"code": "Nope"}},
        ],
    )
    assert (lambda s: (s.status, s.code))(api.state.match(aws_call("s3"), RNG)[0].spec) == (
        500,
        "ServiceUnavailable",
    )
    assert (lambda s: (s.status, s.code))(api.state.match(aws_call("sqs"), RNG)[0].spec) == (
        503,
        "Nope",
    )


def test_first_match_wins(api: ChaosApi) -> None:
    send(
        api,
        "POST",
        FAULTS_PATH,
        [
            {"service": "sqs"},
            {
                "service": "kinesis",
                "operation": "PutRecord",
                "error": {"statusCode": 400, "code": "ProvisionedThroughputExceededException"},
            },
            {"service": "kinesis", "error": {"statusCode": 500, "code": "InternalFailure"}},
            {},
        ],
    )

    def first(name: str, op: str) -> tuple[str, int | None]:
        faults = api.state.match(aws_call(name, op), RNG)
        assert len(faults) == 1
        return faults[0].source, faults[0].spec.status

    assert first("kinesis", "PutRecord") == ("chaos/1", 400)
    assert first("kinesis", "GetRecords") == ("chaos/2", 500)
    assert first("sqs", "SendMessage") == ("chaos/0", 503)
    assert first("s3", "ListBuckets") == ("chaos/3", 503)


@pytest.mark.parametrize("probability", [0.1, 0.3, 0.5, 0.9])
def test_probability_is_sampled_per_request(api: ChaosApi, probability: float) -> None:
    send(
        api,
        "POST",
        FAULTS_PATH,
        [{"service": "kinesis", "operation": "PutRecord", "probability": probability}],
    )
    rng = random.Random(1234)
    n = 4000
    hits = sum(bool(api.state.match(aws_call("kinesis", "PutRecord"), rng)) for _ in range(n))
    assert abs(hits / n - probability) < 0.05
    # the seed makes it reproducible
    rng2 = random.Random(1234)
    again = sum(bool(api.state.match(aws_call("kinesis", "PutRecord"), rng2)) for _ in range(n))
    assert again == hits


def test_probability_edges(api: ChaosApi) -> None:
    send(
        api,
        "POST",
        FAULTS_PATH,
        [{"service": "s3", "probability": 0}, {"service": "sqs", "probability": 1}],
    )
    rng = random.Random(7)
    assert not any(api.state.match(aws_call("s3"), rng) for _ in range(500))
    assert all(api.state.match(aws_call("sqs"), rng) for _ in range(500))


def test_lost_roll_lets_later_rules_match(api: ChaosApi) -> None:
    send(
        api,
        "POST",
        FAULTS_PATH,
        [{"service": "s3", "probability": 0.5, "error": {"statusCode": 500}}, {"service": "s3"}],
    )
    rng = random.Random(3)
    statuses = {api.state.match(aws_call("s3"), rng)[0].spec.status for _ in range(200)}
    assert statuses == {500, 503}


# --- effects (9.2) -------------------------------------------------------------------------------


def test_effects_get_and_post(api: ChaosApi) -> None:
    assert send(api, "GET", EFFECTS_PATH) == (200, {"latency": 0})
    assert send(api, "POST", EFFECTS_PATH, {"latency": 250}) == (200, {"latency": 250})
    assert send(api, "GET", EFFECTS_PATH) == (200, {"latency": 250})
    assert send(api, "POST", EFFECTS_PATH, {"latency": 0}) == (200, {"latency": 0})
    assert api.state.match(aws_call("s3"), RNG) == []


def test_latency_applies_to_every_call_before_the_error(api: ChaosApi) -> None:
    send(api, "POST", EFFECTS_PATH, {"latency": 250})
    [latency] = api.state.match(aws_call("s3", region=None), RNG)
    assert latency.source == "chaos/effects" and latency.label == "chaos/effects/latency"
    assert latency.spec == FaultSpec(kind="latency", latency_ms=250.0)
    assert latency.latency_ms == 250.0

    send(api, "POST", FAULTS_PATH, [{"service": "s3"}])
    faults = api.state.match(aws_call("s3"), RNG)
    assert [f.spec.kind for f in faults] == ["latency", "error"]
    assert [f.spec.kind for f in api.state.match(aws_call("sqs"), RNG)] == ["latency"]


INVALID_EFFECTS = [
    ({"latency": "abcd"}, "'abcd' is not of type 'integer'"),
    ({"latency": -3}, "-3 is less than the minimum of 0"),
    ({"latency": 6.9}, "6.9 is not of type 'integer'"),
    ({"latency": True}, "True is not of type 'integer'"),
    ({"latency": None}, "None is not of type 'integer'"),
    (
        {"latency": 5, "jitter": 5},
        "Additional properties are not allowed ('jitter' was unexpected)",
    ),
    ({}, "'latency' is a required property"),
    ([], "[] is not of type 'object'"),
    (100, "100 is not of type 'object'"),
]


@pytest.mark.parametrize(("body", "message"), INVALID_EFFECTS)
def test_invalid_effects(api: ChaosApi, body: Any, message: str) -> None:
    send(api, "POST", EFFECTS_PATH, {"latency": 7})
    assert send(api, "POST", EFFECTS_PATH, body) == (
        400,
        {"message": f"Error validating JSON schema: {message}"},
    )
    assert send(api, "GET", EFFECTS_PATH) == (200, {"latency": 7})


@pytest.mark.parametrize(("body", "message"), INVALID_EFFECTS)
def test_effect_messages_match_jsonschema(body: Any, message: str) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    with pytest.raises(jsonschema.ValidationError) as exc:
        jsonschema.validate(body, EFFECTS_SCHEMA)
    assert exc.value.message == message


# --- routing -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/_localstack/chaos",
        "/_localstack/chaos/other",
        "/_localstack/health",
        "/2020-12-01/experimentTemplates",
    ],
)
def test_other_paths_are_not_ours(api: ChaosApi, path: str) -> None:
    assert api.handle(ApiRequest("GET", path)) is None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", FAULTS_PATH),
        ("PATCH", EFFECTS_PATH),
        ("DELETE", EFFECTS_PATH),
        ("PUT", EFFECTS_PATH),
    ],
)
def test_method_not_allowed(api: ChaosApi, method: str, path: str) -> None:
    resp = api.handle(ApiRequest(method, path, body=b"[]"))
    assert resp is not None and resp.status == 405
    assert method not in resp.headers["allow"]


def test_trailing_slash_and_query(api: ChaosApi) -> None:
    resp = api.handle(
        ApiRequest("POST", FAULTS_PATH + "/", query={"x": ["1"]}, body=b'[{"service": "s3"}]')
    )
    assert resp is not None and resp.status == 200
    assert send(api, "GET", FAULTS_PATH) == (200, [{"service": "s3"}])


# --- persistence ---------------------------------------------------------------------------------


class DocStore:
    """Stands in for Store.get_doc / put_doc: keeps the document as JSON text, like SQLite."""

    def __init__(self) -> None:
        self.text: str | None = None
        self.saves = 0

    def load(self) -> dict | None:
        return None if self.text is None else json.loads(self.text)

    def save(self, doc: dict) -> None:
        self.text = json.dumps(doc)
        self.saves += 1


def test_restart_keeps_rules_and_effects() -> None:
    store = DocStore()
    api = ChaosApi(ChaosState(store.load, store.save))
    rules = [
        {"service": "s3", "region": "us-east-1"},
        {"probability": 0.25, "error": {"code": "Boom", "statusCode": 500}},
    ]
    send(api, "POST", FAULTS_PATH, rules)
    send(api, "PATCH", FAULTS_PATH, [{"service": "sqs"}])
    send(api, "DELETE", FAULTS_PATH, [{"service": "sqs"}])
    send(api, "POST", EFFECTS_PATH, {"latency": 40})
    assert store.saves == 4

    restarted = ChaosApi(ChaosState(store.load, store.save))
    assert send(restarted, "GET", FAULTS_PATH) == (200, rules)
    assert send(restarted, "GET", EFFECTS_PATH) == (200, {"latency": 40})
    faults = restarted.state.match(aws_call("s3"), RNG)
    assert [(f.source, f.spec.kind) for f in faults] == [
        ("chaos/effects", "latency"),
        ("chaos/0", "error"),
    ]


def test_rejected_input_is_not_saved() -> None:
    store = DocStore()
    api = ChaosApi(ChaosState(store.load, store.save))
    send(api, "POST", FAULTS_PATH, [{"service": ""}])
    send(api, "POST", EFFECTS_PATH, {"latency": -1})
    send(api, "POST", FAULTS_PATH, raw=b"nope")
    assert store.saves == 0 and store.text is None


def test_failed_save_changes_nothing() -> None:
    def broken(doc: dict) -> None:
        raise OSError("disk full")

    state = ChaosState(save=broken)
    with pytest.raises(OSError):
        state.set_faults([FaultRule(service="s3")])
    assert state.faults == [] and state.match(aws_call("s3"), RNG) == []


def test_unusable_saved_config_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fisproxy.fis.chaos"):
        state = ChaosState(
            load=lambda: {"faults": [{"service": "s3", "bogus": 1}], "effects": {"latency": 5}}
        )
    assert state.faults == [] and state.effects.latency == 0
    assert "bogus" in caplog.text


def test_state_interface() -> None:
    saved: list[dict] = []
    state = ChaosState(save=saved.append)
    state.set_faults([FaultRule(service="s3"), FaultRule(region="eu-west-1")])
    state.add_faults([FaultRule(operation="PutItem")])
    state.remove_faults([FaultRule(service="s3")])
    state.set_effects(NetworkEffects(latency=3))
    assert state.faults_doc() == [{"region": "eu-west-1"}, {"operation": "PutItem"}]
    assert saved[-1] == {
        "faults": [{"region": "eu-west-1"}, {"operation": "PutItem"}],
        "effects": {"latency": 3},
    }
    # sources follow positions in the current list
    assert [f.source for f in state.match(aws_call("dynamodb", "PutItem", "us-east-1"), RNG)] == [
        "chaos/effects",
        "chaos/1",
    ]
