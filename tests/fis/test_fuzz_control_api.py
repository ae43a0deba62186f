"""Fuzzing the control APIs with Hypothesis: request shapes drawn from botocore's `fis` model.

Each example picks an operation of the model, fills its URI labels, query string and JSON body
from the members' shapes and types (with plausible values: action ids from the catalogue, ids
of templates and experiments that exist, ISO 8601 durations), then mutates some of it: wrong
types, huge numbers, odd Unicode (lone surrogates as mitmproxy hands over undecodable bytes,
NUL, right-to-left marks), deep nesting, missing required and unknown members, raw bytes that
are not JSON. It goes to `FisApi.handle` over a real SQLite store and the real engine, and:

- no answer is a 5xx;
- every 4xx is an error of the fis model: `x-amzn-ErrorType` names one of its error shapes,
  botocore's own rest-json parser reads the same code and a message;
- a refused request changes nothing: templates, experiments, tags and every other stored
  document are byte-for-byte what they were (read with a second SQLite connection).

The Chaos API handler is fuzzed the same way (no 5xx, a refused write changes nothing).
Fixed seed (`derandomize`) and a bounded budget (about 10 s): the same examples on every run of
the same test selection. (Hypothesis also mixes in constants it reads from the project modules
already imported, so this file run alone draws another fixed set than the whole suite does.)
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from botocore.model import OperationModel, Shape
from botocore.parsers import create_parser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fisproxy.aws import catalog
from fisproxy.fis import actions as action_catalog
from fisproxy.fis.api import FisApi
from fisproxy.fis.chaos import EFFECTS_PATH, FAULTS_PATH, ChaosApi, ChaosState
from fisproxy.fis.engine import Engine
from fisproxy.httpdata import ApiRequest, ApiResponse
from fisproxy.store import Store

FIS_EXAMPLES = 600  # every operation
TEMPLATE_EXAMPLES = 300  # the writes with the deepest bodies, again
CHAOS_EXAMPLES = 300
FUZZ = settings(
    derandomize=True, database=None, deadline=None, max_examples=FIS_EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)

MODEL = catalog.service_model("fis")
OPERATIONS = sorted(MODEL.operation_names)
ERROR_CODES = frozenset(s.name for s in MODEL.error_shapes) | {"UnknownOperationException"}
TEMPLATE_WRITES = ["CreateExperimentTemplate", "UpdateExperimentTemplate", "StartExperiment"]
# Writes with a body have the most to check: drawn three times as often.
WEIGHTED_OPERATIONS = [op for op in OPERATIONS for _ in range(
    3 if MODEL.operation_model(op).http["method"] in ("POST", "PATCH") else 1)]
ROLE_ARN = "arn:aws:iam::123456789012:role/fis"
ACCOUNT = "123456789012"

# ---- values ---------------------------------------------------------------------------------

SURROGATES = ["\ud800", "\udcff", "ab\udcfecd", "\udfff\ud800"]
ODD_TEXT = st.one_of(
    st.sampled_from(SURROGATES + ["", " ", "\x00", "\u202e", "\ufeff", "é" * 3, "\U0001f4a5", "a" * 5000,
                                  "../../etc", "%00", "%ED%A0%80", "null", "{}", "1e999"]),
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8", exclude_categories=()), max_size=20),
)
HUGE_NUMBERS = st.sampled_from([2**63, -(2**63) - 1, 10**30, 1e308, -1e308, float("inf"), float("-inf"),
                                float("nan"), -1, 0, 1.5, 10**400])
ANY_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), ODD_TEXT),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(ODD_TEXT, inner, max_size=3)),
    max_leaves=8,
)
WRONG = st.one_of(HUGE_NUMBERS, ODD_TEXT, ANY_JSON, st.builds(lambda n: [[[]]] * n, st.integers(0, 3)))

PARAMETER_NAMES = sorted({n for s in action_catalog.ACTIONS.values() for n in s.parameters})
NUMBERS = ["50", "100", "0", "1", "150", "-1", "12.5", "9" * 5000, "1e999", "NaN", "\u0663"]
PARAMETER_VALUES = {
    "duration": ["PT1M", "PT0.5S", "P1D", "PT12H", "PT13H", "P9999999999D", "PT" + "9" * 400 + "S",
                 "PT9999999999999999H", "PT", "P", "1 minute"],
    "service": ["dynamodb", "s3", "sqs", "monitoring", "nosuchservice", "DynamoDB"],
    "operations": ["PutItem,GetItem", "PutItem", "Invented", ",,", "GetObject"],
    "percentage": NUMBERS, "latencyMilliseconds": NUMBERS, "jitterMilliseconds": NUMBERS,
    "statusCode": ["400", "503", "200", "600", "9" * 5000], "errorCode": ["400", "abc", "503"],
    "phase": ["request", "response", "later"], "mode": ["close", "reset", "hang", "explode"],
    "region": ["us-east-1", "eu-west-1", "nowhere", "US-EAST-1"],
}
DEFAULT_VALUES = ["PT1M", "dynamodb", "50", "true", "us-east-1", "ThrottlingException"]


def parameter_value(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from(PARAMETER_VALUES.get(name, DEFAULT_VALUES))


SELECTION_MODES = ["ALL", "COUNT(1)", "PERCENT(50)", "ALL", "COUNT(2)", "COUNT(0)", "PERCENT(101)", "SOME"]


@st.composite
def coherent_template(draw: st.DrawFn, update: bool) -> dict[str, Any]:
    """A template body whose parts agree (action targets name defined targets of the right
    resource type, startAfter names actions): such bodies reach the deepest checks, where a
    body of independent random parts stops at the first reference."""
    actions: dict[str, Any] = {}
    targets: dict[str, Any] = {}
    for i in range(draw(st.integers(1, 3))):
        action = draw(template_action(required=True))
        spec = action_catalog.ACTIONS[action["actionId"]]
        action["targets"] = {}
        for key, resource_type in spec.targets.items():
            name = f"t{len(targets)}"
            targets[name] = {"resourceType": resource_type, "selectionMode": draw(st.sampled_from(SELECTION_MODES)),
                             "resourceTags": {"app": "fuzz"}}
            action["targets"][key] = name
        if actions and one_in(draw, 3):
            action["startAfter"] = [draw(st.sampled_from(sorted(actions)))]
        else:
            action.pop("startAfter", None)
        actions[f"a{i}"] = action
    body: dict[str, Any] = {"description": draw(st.sampled_from(["fuzz", "x" * 512])), "actions": actions,
                            "targets": targets, "roleArn": ROLE_ARN, "stopConditions": [{"source": "none"}]}
    if not update:
        body["clientToken"] = draw(st.uuids().map(str))
    if one_in(draw, 3):
        body["tags"] = {"k": draw(st.sampled_from(["v", "x" * 300]))}
    return body


@st.composite
def template_action(draw: st.DrawFn, required: bool) -> dict[str, Any]:
    """An action of a template: a catalogue action id, then parameters that action has."""
    # Mostly actions fisproxy performs: their parameters are checked the deepest.
    runnable = sorted(a for a, spec in action_catalog.ACTIONS.items() if spec.runnable)
    action_id = draw(st.sampled_from(runnable) | st.sampled_from(runnable) | st.sampled_from(sorted(action_catalog.ACTIONS)))
    spec = action_catalog.ACTIONS[action_id]
    needed = sorted(n for n, doc in spec.parameters.items() if doc.required)
    optional = sorted(n for n, doc in spec.parameters.items() if not doc.required)
    names = needed + draw(st.lists(st.sampled_from(optional or PARAMETER_NAMES), max_size=3))
    action: dict[str, Any] = {"parameters": {n: draw(parameter_value(n)) for n in names}}
    if required or draw(st.booleans()):
        action["actionId"] = action_id
    if spec.targets and draw(st.booleans()):
        action["targets"] = {key: draw(st.sampled_from(["roles", "nope"])) for key in spec.targets}
    if one_in(draw, 5):
        action["startAfter"] = draw(st.lists(st.sampled_from(["a0", "a1", "nope"]), max_size=2))
    return action


@dataclass
class Known:
    """Ids that exist in the store, so labels sometimes name real resources."""

    templates: list[str]
    experiments: list[str]

    def ids(self) -> st.SearchStrategy[str]:
        real = st.sampled_from(self.templates + self.experiments + ["EXTnothere", "default"])
        return st.one_of(real, real, real, ODD_TEXT)  # mostly real, sometimes anything


def string_value(shape: Shape, name: str, known: Known) -> st.SearchStrategy[Any]:
    if shape.enum:
        return st.sampled_from(list(shape.enum))
    by_shape = {
        "ActionId": st.sampled_from(sorted(action_catalog.ACTIONS)),
        "ExperimentTemplateId": st.sampled_from(known.templates),
        "ExperimentId": st.sampled_from(known.experiments),
        "SafetyLeverId": st.just("default"),
        "TargetResourceTypeId": st.sampled_from(sorted(action_catalog.target_resource_types())),
    }
    if shape.name in by_shape:
        return by_shape[shape.name] | known.ids()
    lowered = name.lower()
    if lowered == "rolearn":
        return st.sampled_from([ROLE_ARN, "arn:aws:iam::123456789012:role/other"])
    if lowered == "resourcearn":
        return st.sampled_from([f"arn:aws:fis:us-east-1:{ACCOUNT}:experiment-template/{known.templates[0]}",
                                f"arn:aws:fis:us-east-1:{ACCOUNT}:experiment/{known.experiments[0]}",
                                f"arn:aws:fis:us-east-1:{ACCOUNT}:experiment/EXPnothere"])
    if lowered.endswith(("arn", "arns")):
        return st.sampled_from([ROLE_ARN, "arn:aws:logs:us-east-1:123456789012:log-group:g:*"])
    if lowered in ("id", "experimenttemplateid", "experimentid"):
        return known.ids()
    if lowered == "resourcetype":
        return st.sampled_from(["aws:iam:role", "aws:ec2:instance", "aws:nothing"])
    if lowered == "selectionmode":
        return st.sampled_from(["ALL", "COUNT(1)", "PERCENT(50)", "COUNT(-1)", "PERCENT(1000)", "SOME"])
    if lowered == "source":
        return st.sampled_from(["none", "aws:cloudwatch:alarm", "aws:nothing"])
    if lowered == "accountid":
        return st.sampled_from([ACCOUNT, "210987654321", "1"])
    if lowered == "status":
        return st.sampled_from(["engaged", "disengaged", "maybe"])
    if lowered == "value":  # a stop condition's alarm
        return st.just("arn:aws:cloudwatch:us-east-1:123456789012:alarm:a")
    lo = max(1, shape.metadata.get("min", 1))
    hi = max(lo, min(shape.metadata.get("max", 24), 24))
    return st.text(st.characters(codec="ascii", categories=["L", "Nd"]), min_size=lo, max_size=hi)


def shape_value(shape: Shape, name: str, known: Known, depth: int = 0) -> st.SearchStrategy[Any]:
    """A value of `shape` as a client would send it, or (sometimes) something else entirely."""
    kind = shape.type_name
    if depth > 6:
        return st.none()
    if kind == "structure":
        members = shape.members
        required = set(shape.required_members)
        drawn = st.fixed_dictionaries(
            {m: shape_value(s, m, known, depth + 1) for m, s in members.items() if m in required},
            optional={m: shape_value(s, m, known, depth + 1) for m, s in members.items() if m not in required},
        )
        if shape.name in ("CreateExperimentTemplateRequest", "UpdateExperimentTemplateRequest"):
            return coherent_template(update=shape.name.startswith("Update")) | drawn
        if shape.name in ("CreateExperimentTemplateActionInput", "UpdateExperimentTemplateActionInputItem"):
            return template_action(required=bool(required))
        return drawn
    if kind == "list":
        return st.lists(shape_value(shape.member, name, known, depth + 1), max_size=3)
    if kind == "map" and name == "actions":
        keys = st.sampled_from(["a0", "a1", "a2"]) | ODD_TEXT
        return st.dictionaries(keys, shape_value(shape.value, name, known, depth + 1), min_size=1, max_size=3)
    if kind == "map":
        keys: st.SearchStrategy[str]
        values: st.SearchStrategy[Any]
        if name == "parameters":
            keys = st.sampled_from(["accessKeyIds", "x"])
            values = st.sampled_from(["AKIAEXAMPLE", ""]) | ODD_TEXT
        elif name == "targets" and shape.value.type_name == "structure":
            keys = st.sampled_from(["roles", "other"])
            values = shape_value(shape.value, name, known, depth + 1)
        else:
            keys = string_value(shape.key, name, known)
            values = shape_value(shape.value, name, known, depth + 1)
        return st.dictionaries(keys, values, max_size=3)
    if kind == "string":
        return string_value(shape, name, known)
    if kind in ("integer", "long"):
        lo, hi = shape.metadata.get("min", -5), shape.metadata.get("max", 10_000)
        return st.integers(lo, hi)
    if kind == "boolean":
        return st.booleans()
    if kind in ("float", "double"):
        return st.floats(allow_nan=False)
    if kind == "timestamp":
        return st.floats(0, 2e9)
    return ANY_JSON


def one_in(draw: st.DrawFn, n: int) -> bool:
    """True about once in `n` examples. A middle value, because Hypothesis favours the bounds
    (0 comes up far more often than 1 in n)."""
    return draw(st.integers(0, n - 1)) == n // 2


@st.composite
def mutated(draw: st.DrawFn, value: Any) -> Any:
    """`value` with some of its parts wrong: other types, huge numbers, odd text, members
    dropped or added, deep nesting."""
    if one_in(draw, 10):
        return draw(WRONG)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if one_in(draw, 12):
                continue  # a member missing (required or not)
            out[key] = draw(mutated(item))
        if one_in(draw, 8):
            out[draw(ODD_TEXT)] = draw(ANY_JSON)  # a member the model does not have
        return out
    if isinstance(value, list):
        return [draw(mutated(item)) for item in value]
    if isinstance(value, str) and one_in(draw, 4):
        return draw(ODD_TEXT)
    return value


def deep(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


@st.composite
def body_bytes(draw: st.DrawFn, data: Any) -> bytes:
    text = json.dumps(data, allow_nan=True)  # NaN/Infinity tokens, \ud800 escapes included
    if not one_in(draw, 6):
        return text.encode()
    return draw(st.one_of(
        st.binary(max_size=64),
        st.sampled_from([40, 1000, 100_000]).map(deep),
        st.sampled_from([33, 5000, 100_000]).map(lambda n: b"[" * n),
        st.integers(0, max(0, len(text) - 1)).map(lambda n: text[:n].encode()),  # truncated
    ))


# ---- requests from the model ----------------------------------------------------------------


def label(value: Any, raw: bool) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if raw else quote(text.encode("utf-8", "surrogatepass"), safe="")


@st.composite
def fis_request(draw: st.DrawFn, known: Known, operations: list[str]) -> tuple[OperationModel, ApiRequest]:
    op = MODEL.operation_model(draw(st.sampled_from(operations)))
    members = op.input_shape.members if op.input_shape else {}
    uri = op.http["requestUri"].split("?")[0]
    body: dict[str, Any] = {}
    query: dict[str, list[str]] = {}
    sample = draw(shape_value(op.input_shape, "", known)) if op.input_shape else {}
    sample = draw(mutated(sample)) if one_in(draw, 3) else sample
    if not isinstance(sample, dict):
        sample = {"": sample}
    raw_labels = one_in(draw, 5)  # as mitmproxy hands them over, not encoded
    for member, shape in members.items():
        where = shape.serialization.get("location")
        wire = shape.serialization.get("name", member)
        if where == "uri":
            value = sample.get(member, draw(known.ids()))
            uri = uri.replace("{" + wire + "}", label(value, raw_labels)).replace("{" + wire + "+}", label(value, True))
        elif where == "querystring" and member in sample:
            value = sample[member]
            values = value if isinstance(value, list) else [value]
            query[wire] = [v if isinstance(v, str) else json.dumps(v) for v in values]
        elif where is None and member in sample:
            body[member] = sample[member]
    for member in sample:
        if member not in members:
            body[member] = sample[member]  # unknown members stay in the body
    method = draw(st.sampled_from(["GET", "PUT", "PATCH"])) if one_in(draw, 20) else op.http["method"]
    headers = {"content-type": "application/json"}
    return op, ApiRequest(method, uri, query, headers, draw(body_bytes(body)))


def snapshot(path: Path) -> list[tuple[Any, ...]]:
    """Every stored template, experiment and document (tags, client tokens, levers, target
    accounts), read through a second connection."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT 't', id, doc, '' FROM templates UNION ALL "
                          "SELECT 'e', id, doc, runtime FROM experiments UNION ALL "
                          "SELECT 'd', kind, key, value FROM docs").fetchall()
    return sorted(rows, key=repr)


def check_error_shape(op: OperationModel, response: ApiResponse) -> None:
    code = response.headers.get("x-amzn-ErrorType")
    assert code in ERROR_CODES, (code, response.body[:300])
    message = json.loads(response.body)["message"]
    assert isinstance(message, str) and message
    parsed = create_parser("rest-json").parse(
        {"status_code": response.status, "body": response.body,
         "headers": {k.lower(): v for k, v in response.headers.items()}},
        op.output_shape,
    )
    assert parsed["Error"]["Code"] == code and parsed["Error"]["Message"] == message


@pytest.fixture(scope="module")
def fis_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FisApi, Known, Path]]:
    workdir = tmp_path_factory.mktemp("fuzz-fis")
    path = workdir / "state.sqlite"
    store = Store(path)
    engine = Engine(store, state_dir=workdir, rng=random.Random(7))
    api = FisApi(store, engine)
    templates = []
    for i in range(2):
        body = {"description": f"fuzz {i}", "roleArn": ROLE_ARN, "stopConditions": [{"source": "none"}],
                "actions": {"wait": {"actionId": "aws:fis:wait", "parameters": {"duration": "PT1M"}}},
                "tags": {"k": "v"}}
        response = api.handle(ApiRequest("POST", "/experimentTemplates", body=json.dumps(body).encode()), "us-east-1")
        templates.append(json.loads(response.body)["experimentTemplate"]["id"])
    started = api.handle(ApiRequest("POST", "/experiments", body=json.dumps(
        {"experimentTemplateId": templates[0], "clientToken": "fuzz"}).encode()), "us-east-1")
    experiments = [json.loads(started.body)["experiment"]["id"]]
    yield api, Known(templates, experiments), path
    engine.close()
    store.close()


@pytest.fixture(scope="module")
def known(fis_api: tuple[FisApi, Known, Path]) -> Known:
    return fis_api[1]


@pytest.mark.parametrize("operations, examples", [
    pytest.param(WEIGHTED_OPERATIONS, FIS_EXAMPLES, id="every-operation"),
    pytest.param(TEMPLATE_WRITES, TEMPLATE_EXAMPLES, id="template-writes"),
])
def test_fuzz_fis_api(fis_api: tuple[FisApi, Known, Path], operations: list[str], examples: int) -> None:
    api, known, path = fis_api
    outcomes: dict[int, int] = {}

    @settings(FUZZ, max_examples=examples)
    @given(st.data())
    def one(data: st.DataObject) -> None:
        op, request = data.draw(fis_request(known, operations))
        before = snapshot(path)
        response = api.handle(request, data.draw(st.sampled_from(["us-east-1", "eu-west-1"])))
        outcomes[response.status] = outcomes.get(response.status, 0) + 1
        assert response.status < 500, (op.name, request, response.body[:300])
        response.body.decode("utf-8")
        if response.status >= 400:
            check_error_shape(op, response)
            assert snapshot(path) == before, (op.name, request, response.body[:300])
        else:
            assert isinstance(json.loads(response.body), dict)

    one()
    # The fuzzer reached the handlers (successes) and their checks (refusals) alike.
    assert outcomes.get(200, 0) >= examples // 25 and sum(outcomes.values()) >= examples, outcomes


# ---- the Chaos API --------------------------------------------------------------------------

RULE = st.fixed_dictionaries({}, optional={
    "service": st.sampled_from(["dynamodb", "s3", "nosuch", ""]) | ODD_TEXT,
    "region": st.sampled_from(["us-east-1", "eu-west-1", "mars-1"]) | ODD_TEXT,
    "operation": st.sampled_from(["PutItem", "GetObject", "Invented"]) | ODD_TEXT,
    "probability": st.floats(0, 1) | HUGE_NUMBERS,
    "description": ODD_TEXT,
    "error": st.fixed_dictionaries({}, optional={"statusCode": st.integers(100, 700) | HUGE_NUMBERS,
                                                 "code": ODD_TEXT}),
})


@st.composite
def chaos_request(draw: st.DrawFn) -> ApiRequest:
    path = draw(st.sampled_from([FAULTS_PATH, EFFECTS_PATH, FAULTS_PATH + "/"]))
    method = draw(st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT"]))
    if path == EFFECTS_PATH:
        data: Any = draw(st.fixed_dictionaries({}, optional={"latency": st.integers(0, 10_000) | HUGE_NUMBERS}))
    else:
        data = draw(st.lists(RULE, max_size=3))
    if one_in(draw, 2):
        data = draw(mutated(data))
    return ApiRequest(method, path, {}, {"content-type": "application/json"}, draw(body_bytes(data)))


def test_fuzz_chaos_api() -> None:
    saved: list[Any] = []
    api = ChaosApi(ChaosState(load=lambda: None, save=saved.append))
    outcomes: dict[int, int] = {}

    def current() -> tuple[bytes, bytes]:
        faults = api.handle(ApiRequest("GET", FAULTS_PATH))
        effects = api.handle(ApiRequest("GET", EFFECTS_PATH))
        assert faults is not None and effects is not None
        return faults.body, effects.body

    @settings(FUZZ, max_examples=CHAOS_EXAMPLES)
    @given(chaos_request())
    def one(request: ApiRequest) -> None:
        before = current()
        response = api.handle(request)
        assert response is not None
        outcomes[response.status] = outcomes.get(response.status, 0) + 1
        assert response.status < 500, (request, response.body[:300])
        assert isinstance(json.loads(response.body), dict | list)
        if response.status >= 400:
            assert current() == before, (request, response.body[:300])

    one()
    assert outcomes.get(200, 0) >= CHAOS_EXAMPLES // 10 and outcomes.get(400, 0) >= CHAOS_EXAMPLES // 10, outcomes
