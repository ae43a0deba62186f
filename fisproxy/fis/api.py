"""The FIS control API: all 26 operations of botocore's `fis` model (restJson1).

Routes, label names, query parameter names and types, and error HTTP statuses are read from the
model, so handlers only see decoded values: `_Input.uri` (percent-decoded labels: ARNs, action
ids), `_Input.query` (typed: ints, lists) and `_Input.body` (the JSON object), all keyed by the
model's member names. Each handler is the snake_case operation name; it validates its request
model, calls the store or the engine, and returns the response dict.

Errors are the model's error shapes, rendered in rest-json by `aws/errors.py` like every AWS
error: `x-amzn-ErrorType: <Code>`, body `{"message": ...}`, and `x-amzn-RequestId`.

Templates, experiments and tags are not partitioned by region: the region of the request only
goes into new ARNs. Experiments belong to the engine (it persists every change); tags added to
an experiment later are kept beside it (`experiment-tags` docs) so the two never overwrite
each other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

from botocore import xform_name
from botocore.model import ListShape, OperationModel, Shape

from fisproxy.aws import catalog, errors
from fisproxy.aws.call import AwsCall
from fisproxy.fis import actions as action_catalog
from fisproxy.fis import ids, jsonbody
from fisproxy.fis.models import (
    Action,
    ActionParameter,
    ActionSummary,
    ActionTarget,
    CreateExperimentTemplateRequest,
    CreateTargetAccountConfigurationRequest,
    Experiment,
    ExperimentSummary,
    ExperimentTemplate,
    ExperimentTemplateExperimentOptions,
    ExperimentTemplateSummary,
    FieldError,
    ResolvedTarget,
    SafetyLever,
    SafetyLeverState,
    StartExperimentRequest,
    TagResourceRequest,
    TargetAccountConfiguration,
    TargetResourceType,
    TargetResourceTypeParameter,
    TargetResourceTypeSummary,
    UpdateExperimentTemplateRequest,
    UpdateSafetyLeverStateRequest,
    UpdateTargetAccountConfigurationRequest,
    parse,
    validate_template,
)
from fisproxy.fis.passrole import RolePolicy
from fisproxy.fis.ports import FisStore, SaveError, StoreUnavailable
from fisproxy.httpdata import ApiRequest, ApiResponse

log = logging.getLogger(__name__)

DEFAULT_ACCOUNT_ID = "123456789012"
MAX_TEMPLATES = 500
MAX_ACTIVE_EXPERIMENTS = 5
MAX_TARGET_ACCOUNTS = 10
MAX_TAGS = 50
DEFAULT_PAGE_SIZE = 100
SAFETY_LEVER_IDS = ("default",)

# Store document kinds.
CLIENT_TOKENS = "client-token"
SAFETY_LEVERS = "safety-lever"
EXPERIMENT_TAGS = "experiment-tags"
EXPERIMENT_ACCOUNTS = "experiment-target-accounts"


def _template_accounts_kind(template_id: str) -> str:
    return f"target-account/{template_id}"


class ExperimentRunner(Protocol):
    """What the API needs from the experiment engine (`fis/engine.py`)."""

    def start_experiment(
        self, template: ExperimentTemplate, *, region: str, tags: dict[str, str], actions_mode: str
    ) -> Experiment:
        """Persist a new experiment and return it, `initiating`."""
        ...

    def stop_experiment(self, experiment_id: str) -> Experiment:
        """Return the experiment `stopping` (or as it is, if already terminal)."""
        ...

    def cancel_all(self, reason: str) -> None: ...

    def active_count(self) -> int: ...

    def resolved_targets(self, experiment_id: str) -> list[ResolvedTarget]: ...


class FisError(Exception):
    """An error shape of the fis model: `code` is its name (`ValidationException`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        return _error_statuses().get(self.code, 403 if self.code == "AccessDeniedException" else 400)


def _invalid(message: str) -> FisError:
    return FisError("ValidationException", message)


def _not_found(message: str) -> FisError:
    return FisError("ResourceNotFoundException", message)


def _conflict(message: str) -> FisError:
    return FisError("ConflictException", message)


def _quota(message: str) -> FisError:
    return FisError("ServiceQuotaExceededException", message)


FIS_CALL = AwsCall(service="fis", api="fis", protocol="rest-json")


def render_error(code: str, status: int, message: str, request_id: str | None = None) -> ApiResponse:
    """A FIS API error in the model's rest-json shape, rendered like every AWS error."""
    err = errors.render_error(FIS_CALL, status, code, message, request_id=request_id)
    return ApiResponse(err.status, dict(err.headers), err.body)


# ---- routing, from the model ----------------------------------------------------------------

@dataclass(frozen=True)
class _Route:
    operation: OperationModel
    method: str
    pattern: re.Pattern[str]
    labels: Mapping[str, str]  # URI label -> input member name
    query: Mapping[str, str]  # query parameter -> input member name
    body_members: frozenset[str]
    members: Mapping[str, Shape]  # the input's members (none when the operation takes no input)


@dataclass
class _Input:
    uri: dict[str, str] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


_cached_routes: list[_Route] | None = None
_cached_statuses: dict[str, int] | None = None


def _routes() -> list[_Route]:
    global _cached_routes
    if _cached_routes is None:
        model = catalog.service_model("fis")
        routes = []
        for name in model.operation_names:
            op = model.operation_model(name)
            uri = op.http["requestUri"].split("?")[0]
            pattern = re.sub(
                r"\\\{(\w+)(\\\+)?\\\}",
                # A greedy label, or an ARN a client left unencoded (`/` inside), takes slashes.
                lambda m: f"(?P<{m[1]}>.+)" if m[2] or m[1] == "resourceArn" else f"(?P<{m[1]}>[^/]+)",
                re.escape(uri),
            )
            labels, query, body = {}, {}, set()
            members = op.input_shape.members if op.input_shape else {}
            for member, shape in members.items():
                where = shape.serialization.get("location")
                wire = shape.serialization.get("name", member)
                if where == "uri":
                    labels[wire] = member
                elif where == "querystring":
                    query[wire] = member
                elif where is None:
                    body.add(member)
            routes.append(_Route(op, op.http["method"], re.compile(f"^{pattern}/?$"), labels, query,
                                 frozenset(body), members))
        _cached_routes = routes
    return _cached_routes


def _error_statuses() -> dict[str, int]:
    global _cached_statuses
    if _cached_statuses is None:
        model = catalog.service_model("fis")
        _cached_statuses = {s.name: s.metadata["error"]["httpStatusCode"] for s in model.error_shapes}
    return _cached_statuses


def _match(method: str, path: str) -> tuple[_Route, dict[str, str]] | None:
    allowed = False
    for route in _routes():
        m = route.pattern.match(path)
        if m:
            allowed = True
            if route.method == method:
                labels = {}
                for wire, raw in m.groupdict().items():
                    member = route.labels[wire]
                    labels[member] = _checked_string(wire, unquote(raw), route.members[member])
                return route, labels
    if allowed:
        raise _invalid(f"{method} is not allowed on {_shown(path)}")
    return None


def _shown(value: str, limit: int = 64) -> str:
    """`value` for an error message: at most `limit` characters, undecodable bytes escaped."""
    short = value if len(value) <= limit else value[: limit - 3] + "..."
    return short.encode("utf-8", "backslashreplace").decode()


@cache
def _pattern(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:  # a Java-only construct: the length checks still hold
        return None


def _checked_string(wire: str, value: str, shape: Shape) -> str:
    """A URI label or query value as the model constrains it: valid text, its length bounds,
    its pattern; ValidationException naming `wire` otherwise."""
    try:
        value.encode()
    except UnicodeEncodeError:  # undecodable bytes on the wire (lone surrogates here)
        raise _invalid(f"{wire}: must be valid UTF-8 text") from None
    lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
    if lo is not None and len(value) < lo:
        raise _invalid(f'{wire}: must be at least {lo} characters, got "{_shown(value)}"')
    if hi is not None and len(value) > hi:
        raise _invalid(f'{wire}: must be at most {hi} characters, got "{_shown(value)}"')
    pattern = shape.metadata.get("pattern")
    compiled = _pattern(pattern) if pattern else None
    if compiled is not None and not compiled.fullmatch(value):
        raise _invalid(f'{wire}: must match {pattern}, got "{_shown(value)}"')
    return value


def _typed_query(route: _Route, query: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for wire, member in route.query.items():
        values = list(query.get(wire, []))
        if not values:
            continue
        shape = route.members[member]
        if isinstance(shape, ListShape):
            out[member] = [_checked_string(wire, v, shape.member) for v in values]
        elif shape.type_name in ("integer", "long"):
            if not _INTEGER.fullmatch(values[0]):
                raise _invalid(f'{wire}: must be an integer, got "{_shown(values[0])}"')
            n = int(values[0])
            lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
            if (lo is not None and n < lo) or (hi is not None and n > hi):
                raise _invalid(f"{wire}: must be {lo}-{hi}, got {n}")
            out[member] = n
        else:
            out[member] = _checked_string(wire, values[0], shape)
    return out


_INTEGER = re.compile(r"-?[0-9]{1,18}")  # ASCII digits only (int() also takes "1_0", "\u0663")


# ---- pagination and idempotency helpers -----------------------------------------------------

def _page(items: Sequence[dict[str, Any]], inp: _Input, key: str) -> dict[str, Any]:
    """One page of `items` under `key`, with `nextToken` when more remain."""
    start = 0
    token = inp.query.get("nextToken")
    if token is not None:
        start = _token_offset(token)
    size = inp.query.get("maxResults", DEFAULT_PAGE_SIZE)
    out: dict[str, Any] = {key: list(items[start:start + size])}
    if start + size < len(items):
        out["nextToken"] = _token(start + size)
    return out


# A page token is base64 of exactly `{"offset": <n>}`; read back by this pattern, never by a
# JSON parser (a token is client input: it could decode to Infinity or deeply nested arrays).
_TOKEN_BODY = re.compile(rb'\{"offset": (0|[1-9][0-9]{0,8})\}')


def _token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _token_offset(token: str) -> int:
    try:
        decoded = base64.urlsafe_b64decode(token.encode("ascii"))
    except (ValueError, binascii.Error):  # UnicodeEncodeError is a ValueError
        decoded = b""
    m = _TOKEN_BODY.fullmatch(decoded)
    if m is None:
        raise _invalid(f'nextToken: not a token this API issued: "{_shown(token)}"')
    return int(m[1])


def _fingerprint(data: Mapping[str, Any]) -> str:
    body = {k: v for k, v in data.items() if k != "clientToken"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


class FisApi:
    """FIS control API over a Store and an ExperimentRunner. Thread-safe: one lock serialises
    operations (they are few and fast), which also makes clientToken checks atomic."""

    def __init__(self, store: FisStore, engine: ExperimentRunner, *, account_id: str = DEFAULT_ACCOUNT_ID,
                 max_active_experiments: int = MAX_ACTIVE_EXPERIMENTS,
                 roles: RolePolicy | None = None) -> None:
        self.store = store
        self.engine = engine
        self.account_id = account_id
        self.roles = roles or RolePolicy()  # which roleArns callers may pass (iam:PassRole)
        # FIS's default quota; adjustable, as AWS's is on request.
        self.max_active_experiments = max_active_experiments
        self._lock = threading.RLock()

    # ---- HTTP entry ----

    def handle(self, request: ApiRequest, region: str) -> ApiResponse:
        request_id = str(uuid.uuid4())
        try:
            route, inp = self._decode(request)
            handler: Callable[[_Input, str], dict[str, Any]] = getattr(self, "_" + xform_name(route.operation.name))
            with self._lock:
                data = handler(inp, region)
        except FisError as e:
            return render_error(e.code, e.status, e.message, request_id)
        except FieldError as e:
            return render_error("ValidationException", 400, str(e), request_id)
        except _UnknownOperation as e:
            return render_error("UnknownOperationException", 404, str(e), request_id)
        except StoreUnavailable as e:
            # The shared store is down: nothing was changed; the client may retry (SDKs do).
            log.debug("FIS API: the store is unavailable: %s", e)  # announced by the store
            return render_error("ServiceUnavailableException", 503,
                                f"fisproxy's store is unavailable: {e}", request_id)
        except SaveError as e:
            log.error("FIS API: %s", e)
            return render_error("InternalServerException", 500, f"fisproxy could not save the change: {e}",
                                request_id)
        return ApiResponse.json(200, data, {"x-amzn-RequestId": request_id})

    def _decode(self, request: ApiRequest) -> tuple[_Route, _Input]:
        path, _, raw_query = request.path.partition("?")
        query: dict[str, list[str]] = {k: list(v) for k, v in request.query.items()}
        for k, v in parse_qs(raw_query).items():
            query.setdefault(k, []).extend(v)
        found = _match(request.method.upper(), path)
        if found is None:
            raise _UnknownOperation(f"No FIS operation for {request.method} {path}")
        route, labels = found
        body: dict[str, Any] = {}
        if route.body_members and request.body.strip():
            try:
                body = jsonbody.loads(request.body)
            except jsonbody.BodyError as e:
                raise _invalid(f"The request body is not valid JSON: {e}") from None
            if not isinstance(body, dict):
                raise _invalid("The request body must be a JSON object")
        return route, _Input(labels, _typed_query(route, query), body)

    # ---- Python-level operations (also used by templates files) ----

    def create_template(self, req: CreateExperimentTemplateRequest, region: str) -> ExperimentTemplate:
        with self._lock:
            if req.client_token:
                found = self._replay("CreateExperimentTemplate", req.client_token, req.wire())
                if found and (t := self.store.get_template(found)):
                    return t
            if len(self.store.list_templates()) >= MAX_TEMPLATES:
                raise _quota(f"You have reached the quota of {MAX_TEMPLATES} experiment templates")
            template_id = ids.new_template_id()
            created = ids.now()
            options = req.experiment_options or ExperimentTemplateExperimentOptions()
            template = ExperimentTemplate(
                id=template_id,
                arn=ids.template_arn(region, self.account_id, template_id),
                description=req.description,
                targets=req.targets,
                actions=req.actions,
                stop_conditions=req.stop_conditions,
                creation_time=created,
                last_update_time=created,
                role_arn=req.role_arn,
                tags=req.tags,
                log_configuration=req.log_configuration,
                experiment_options=ExperimentTemplateExperimentOptions(
                    account_targeting=options.account_targeting or "single-account",
                    empty_target_resolution_mode=options.empty_target_resolution_mode or "fail",
                ),
                experiment_report_configuration=req.experiment_report_configuration,
            )
            self.store.put_template(template)
            if req.client_token:
                self._remember("CreateExperimentTemplate", req.client_token, req.wire(), template_id)
            return template

    def replace_template(self, template_id: str, req: CreateExperimentTemplateRequest) -> ExperimentTemplate:
        """Make template `template_id` exactly `req` (templates as code: the file wins), keeping
        its id, ARN and creation time. Unchanged content is not rewritten."""
        with self._lock:
            old = self._template(template_id)
            options = req.experiment_options or ExperimentTemplateExperimentOptions()
            new = old.model_copy(update={
                "description": req.description,
                "targets": req.targets,
                "actions": req.actions,
                "stop_conditions": req.stop_conditions,
                "role_arn": req.role_arn,
                "tags": req.tags,
                "log_configuration": req.log_configuration,
                "experiment_options": ExperimentTemplateExperimentOptions(
                    account_targeting=options.account_targeting or "single-account",
                    empty_target_resolution_mode=options.empty_target_resolution_mode or "fail",
                ),
                "experiment_report_configuration": req.experiment_report_configuration,
            })
            if new.wire() == old.wire():
                return old
            new.last_update_time = ids.now()
            self.store.put_template(new)
            return new

    def update_template(self, template_id: str, req: UpdateExperimentTemplateRequest) -> ExperimentTemplate:
        with self._lock:
            updated = req.apply_to(self._template(template_id))
            validate_template(updated)
            self._check_role(updated.role_arn, updated.actions)
            updated.last_update_time = ids.now()
            self.store.put_template(updated)
            return updated

    # ---- experiment templates ----

    def _template(self, template_id: str) -> ExperimentTemplate:
        t = self.store.get_template(template_id)
        if t is None:
            raise _not_found(f"Experiment template {template_id} not found")
        return t

    def _check_role(self, role_arn: str | None, actions: Mapping[str, Any] | None, *,
                    run_actions: bool = True) -> None:
        refusal = self.roles.refusal(role_arn, actions, run_actions=run_actions)
        if refusal is not None:
            raise FisError("AccessDeniedException", refusal)

    def _create_experiment_template(self, inp: _Input, region: str) -> dict[str, Any]:
        req = parse(CreateExperimentTemplateRequest, inp.body)
        self._check_role(req.role_arn, req.actions)
        return {"experimentTemplate": self.create_template(req, region).wire()}

    def _get_experiment_template(self, inp: _Input, region: str) -> dict[str, Any]:
        return {"experimentTemplate": self._template(inp.uri["id"]).wire()}

    def _update_experiment_template(self, inp: _Input, region: str) -> dict[str, Any]:
        req = parse(UpdateExperimentTemplateRequest, inp.body)
        return {"experimentTemplate": self.update_template(inp.uri["id"], req).wire()}

    def _delete_experiment_template(self, inp: _Input, region: str) -> dict[str, Any]:
        t = self._template(inp.uri["id"])
        self.store.delete_template(t.id)
        kind = _template_accounts_kind(t.id)
        for account in self.store.list_docs(kind):
            self.store.delete_doc(kind, account)
        return {"experimentTemplate": t.wire()}

    def _list_experiment_templates(self, inp: _Input, region: str) -> dict[str, Any]:
        items = [ExperimentTemplateSummary.of(t).wire() for t in self.store.list_templates()]
        return _page(items, inp, "experimentTemplates")

    # ---- experiments ----

    def _experiment(self, experiment_id: str) -> Experiment:
        e = self.store.get_experiment(experiment_id)
        if e is None:
            raise _not_found(f"Experiment {experiment_id} not found")
        return self._with_tags(e)

    def _with_tags(self, e: Experiment) -> Experiment:
        doc = self.store.get_doc(EXPERIMENT_TAGS, e.id)
        if doc is not None:
            e.tags = dict(doc["tags"])
        return e

    def _start_experiment(self, inp: _Input, region: str) -> dict[str, Any]:
        req = parse(StartExperimentRequest, inp.body)
        if req.client_token:
            found = self._replay("StartExperiment", req.client_token, req.wire())
            if found and self.store.get_experiment(found):
                return {"experiment": self._experiment(found).wire()}
        template = self._template(req.experiment_template_id)
        lever = self._lever("default", region)
        if lever.state.status != "disengaged":
            raise _conflict(f"Safety lever {lever.id} is {lever.state.status}: experiments cannot start "
                            f"({lever.state.reason or 'no reason given'})")
        if self.engine.active_count() >= self.max_active_experiments:
            raise _quota(f"You have reached the quota of {self.max_active_experiments} active experiments")
        mode = (req.experiment_options.actions_mode if req.experiment_options else None) or "run-all"
        self._check_role(template.role_arn, template.actions, run_actions=mode != "skip-all")
        experiment = self.engine.start_experiment(template, region=region, tags=dict(req.tags), actions_mode=mode)
        accounts = self.store.list_docs(_template_accounts_kind(template.id))
        self.store.put_doc(EXPERIMENT_ACCOUNTS, experiment.id, {"accounts": list(accounts.values())})
        if req.client_token:
            self._remember("StartExperiment", req.client_token, req.wire(), experiment.id)
        return {"experiment": self._with_tags(experiment).wire()}

    def _get_experiment(self, inp: _Input, region: str) -> dict[str, Any]:
        return {"experiment": self._experiment(inp.uri["id"]).wire()}

    def _stop_experiment(self, inp: _Input, region: str) -> dict[str, Any]:
        experiment = self._experiment(inp.uri["id"])
        return {"experiment": self._with_tags(self.engine.stop_experiment(experiment.id)).wire()}

    def _list_experiments(self, inp: _Input, region: str) -> dict[str, Any]:
        template_id = inp.query.get("experimentTemplateId")
        items = [
            ExperimentSummary.of(self._with_tags(e)).wire()
            for e in self.store.list_experiments()
            if template_id is None or e.experiment_template_id == template_id
        ]
        return _page(items, inp, "experiments")

    def _list_experiment_resolved_targets(self, inp: _Input, region: str) -> dict[str, Any]:
        experiment = self._experiment(inp.uri["experimentId"])
        name = inp.query.get("targetName")
        if name is not None and name not in experiment.targets:
            raise _not_found(f"Target {name} not found in experiment {experiment.id}")
        items = [
            t.wire() for t in self.engine.resolved_targets(experiment.id)
            if name is None or t.target_name == name
        ]
        return _page(items, inp, "resolvedTargets")

    # ---- actions and target resource types ----

    def _action(self, spec: action_catalog.ActionSpec, region: str, *, full: bool) -> dict[str, Any]:
        cls = Action if full else ActionSummary
        extra: dict[str, Any] = {"parameters": {
            name: ActionParameter(description=doc.description, required=doc.required)
            for name, doc in spec.parameters.items()
        }} if full else {}
        return cls(
            id=spec.action_id,
            arn=ids.action_arn(region, self.account_id, spec.action_id),
            description=spec.description,
            targets={key: ActionTarget(resource_type=rt) for key, rt in spec.targets.items()},
            **extra,
        ).wire()

    def _get_action(self, inp: _Input, region: str) -> dict[str, Any]:
        spec = action_catalog.ACTIONS.get(inp.uri["id"])
        if spec is None:
            raise _not_found(f"Action {inp.uri['id']} not found")
        return {"action": self._action(spec, region, full=True)}

    def _list_actions(self, inp: _Input, region: str) -> dict[str, Any]:
        items = [self._action(s, region, full=False) for s in action_catalog.ACTIONS.values()]
        return _page(items, inp, "actions")

    def _resource_type(self, resource_type: str, description: str, *, full: bool) -> dict[str, Any]:
        if not full:
            return TargetResourceTypeSummary(resource_type=resource_type, description=description).wire()
        params = {}
        if resource_type == action_catalog.ROLE:
            params["accessKeyIds"] = TargetResourceTypeParameter(
                description="fisproxy: comma-separated access key ids whose calls count as this role's.",
                required=False,
            )
        return TargetResourceType(resource_type=resource_type, description=description, parameters=params).wire()

    def _get_target_resource_type(self, inp: _Input, region: str) -> dict[str, Any]:
        name = inp.uri["resourceType"]
        description = action_catalog.target_resource_types().get(name)
        if description is None:
            raise _not_found(f"Target resource type {name} not found")
        return {"targetResourceType": self._resource_type(name, description, full=True)}

    def _list_target_resource_types(self, inp: _Input, region: str) -> dict[str, Any]:
        items = [self._resource_type(n, d, full=False) for n, d in action_catalog.target_resource_types().items()]
        return _page(items, inp, "targetResourceTypes")

    # ---- tags ----

    def _tagged(self, arn: str) -> tuple[str, str]:
        parsed = ids.parse_fis_arn(arn)
        if parsed is None or parsed[0] not in ("experiment-template", "experiment"):
            raise _invalid(f'resourceArn: not an experiment template or experiment ARN: "{arn}"')
        kind, resource_id = parsed
        if kind == "experiment-template":
            self._template(resource_id)
        else:
            self._experiment(resource_id)
        return kind, resource_id

    def _set_tags(self, kind: str, resource_id: str, change: Callable[[dict[str, str]], None]) -> None:
        if kind == "experiment-template":
            t = self._template(resource_id)
            change(t.tags)
            self._check_tag_count(t.tags)
            self.store.put_template(t)
        else:
            tags = dict(self._experiment(resource_id).tags)
            change(tags)
            self._check_tag_count(tags)
            self.store.put_doc(EXPERIMENT_TAGS, resource_id, {"tags": tags})

    @staticmethod
    def _check_tag_count(tags: Mapping[str, str]) -> None:
        if len(tags) > MAX_TAGS:
            raise _invalid(f"tags: at most {MAX_TAGS} tags per resource, got {len(tags)}")

    def _tag_resource(self, inp: _Input, region: str) -> dict[str, Any]:
        kind, resource_id = self._tagged(inp.uri["resourceArn"])
        req = parse(TagResourceRequest, inp.body)
        self._set_tags(kind, resource_id, lambda tags: tags.update(req.tags))
        return {}

    def _untag_resource(self, inp: _Input, region: str) -> dict[str, Any]:
        kind, resource_id = self._tagged(inp.uri["resourceArn"])
        keys = inp.query.get("tagKeys", [])

        def remove(tags: dict[str, str]) -> None:
            for key in keys:
                tags.pop(key, None)

        self._set_tags(kind, resource_id, remove)
        return {}

    def _list_tags_for_resource(self, inp: _Input, region: str) -> dict[str, Any]:
        kind, resource_id = self._tagged(inp.uri["resourceArn"])
        if kind == "experiment-template":
            return {"tags": self._template(resource_id).tags}
        return {"tags": self._experiment(resource_id).tags}

    # ---- target account configurations ----

    def _account_config(self, template_id: str, account_id: str) -> TargetAccountConfiguration:
        self._template(template_id)
        doc = self.store.get_doc(_template_accounts_kind(template_id), account_id)
        if doc is None:
            raise _not_found(f"Target account configuration {account_id} not found for template {template_id}")
        return TargetAccountConfiguration.model_validate(doc)

    def _count_accounts(self, template_id: str) -> None:
        t = self._template(template_id)
        t.target_account_configurations_count = len(self.store.list_docs(_template_accounts_kind(template_id)))
        self.store.put_template(t)

    def _create_target_account_configuration(self, inp: _Input, region: str) -> dict[str, Any]:
        template_id, account_id = inp.uri["experimentTemplateId"], inp.uri["accountId"]
        req = parse(CreateTargetAccountConfigurationRequest, inp.body)
        kind = _template_accounts_kind(template_id)
        key = f"{template_id}/{account_id}/{req.client_token}"
        self._template(template_id)
        if req.client_token and self._replay("CreateTargetAccountConfiguration", key, req.wire()):
            if (doc := self.store.get_doc(kind, account_id)) is not None:
                return {"targetAccountConfiguration": doc}
        if self.store.get_doc(kind, account_id) is not None:
            raise _conflict(f"Target account configuration {account_id} already exists for template {template_id}")
        if len(self.store.list_docs(kind)) >= MAX_TARGET_ACCOUNTS:
            raise _quota(f"At most {MAX_TARGET_ACCOUNTS} target account configurations per experiment template")
        config = TargetAccountConfiguration(role_arn=req.role_arn, account_id=account_id, description=req.description)
        self.store.put_doc(kind, account_id, config.wire())
        self._count_accounts(template_id)
        if req.client_token:
            self._remember("CreateTargetAccountConfiguration", key, req.wire(), account_id)
        return {"targetAccountConfiguration": config.wire()}

    def _get_target_account_configuration(self, inp: _Input, region: str) -> dict[str, Any]:
        config = self._account_config(inp.uri["experimentTemplateId"], inp.uri["accountId"])
        return {"targetAccountConfiguration": config.wire()}

    def _update_target_account_configuration(self, inp: _Input, region: str) -> dict[str, Any]:
        template_id, account_id = inp.uri["experimentTemplateId"], inp.uri["accountId"]
        config = self._account_config(template_id, account_id)
        req = parse(UpdateTargetAccountConfigurationRequest, inp.body)
        updated = config.model_copy(update=req.model_dump(exclude_unset=True, exclude_none=True))
        self.store.put_doc(_template_accounts_kind(template_id), account_id, updated.wire())
        return {"targetAccountConfiguration": updated.wire()}

    def _delete_target_account_configuration(self, inp: _Input, region: str) -> dict[str, Any]:
        template_id, account_id = inp.uri["experimentTemplateId"], inp.uri["accountId"]
        config = self._account_config(template_id, account_id)
        self.store.delete_doc(_template_accounts_kind(template_id), account_id)
        self._count_accounts(template_id)
        return {"targetAccountConfiguration": config.wire()}

    def _list_target_account_configurations(self, inp: _Input, region: str) -> dict[str, Any]:
        template_id = inp.uri["experimentTemplateId"]
        self._template(template_id)
        items = list(self.store.list_docs(_template_accounts_kind(template_id)).values())
        return _page(items, inp, "targetAccountConfigurations")

    def _experiment_accounts(self, experiment_id: str) -> list[dict[str, Any]]:
        self._experiment(experiment_id)
        doc = self.store.get_doc(EXPERIMENT_ACCOUNTS, experiment_id)
        return list(doc["accounts"]) if doc else []

    def _get_experiment_target_account_configuration(self, inp: _Input, region: str) -> dict[str, Any]:
        experiment_id, account_id = inp.uri["experimentId"], inp.uri["accountId"]
        for config in self._experiment_accounts(experiment_id):
            if config["accountId"] == account_id:
                return {"targetAccountConfiguration": config}
        raise _not_found(f"Target account configuration {account_id} not found for experiment {experiment_id}")

    def _list_experiment_target_account_configurations(self, inp: _Input, region: str) -> dict[str, Any]:
        return _page(self._experiment_accounts(inp.uri["experimentId"]), inp, "targetAccountConfigurations")

    # ---- safety levers: a persisted kill switch ----

    def _lever(self, lever_id: str, region: str) -> SafetyLever:
        if lever_id not in SAFETY_LEVER_IDS:
            raise _not_found(f"Safety lever {lever_id} not found (valid: {', '.join(SAFETY_LEVER_IDS)})")
        doc = self.store.get_doc(SAFETY_LEVERS, lever_id)
        state = SafetyLeverState.model_validate(doc) if doc else SafetyLeverState(status="disengaged")
        return SafetyLever(id=lever_id, arn=ids.safety_lever_arn(region, self.account_id, lever_id), state=state)

    def _get_safety_lever(self, inp: _Input, region: str) -> dict[str, Any]:
        return {"safetyLever": self._lever(inp.uri["id"], region).wire()}

    def _update_safety_lever_state(self, inp: _Input, region: str) -> dict[str, Any]:
        lever = self._lever(inp.uri["id"], region)
        req = parse(UpdateSafetyLeverStateRequest, inp.body)
        if lever.state.status == req.state.status:
            raise _conflict(f"Safety lever {lever.id} is already {lever.state.status}")
        lever.state = SafetyLeverState(status=req.state.status, reason=req.state.reason)
        # Persist first: a restart while cancelling must not forget the lever was engaged.
        self.store.put_doc(SAFETY_LEVERS, lever.id, lever.state.wire())
        if req.state.status == "engaged":
            self.engine.cancel_all(req.state.reason or "Safety lever engaged")
        return {"safetyLever": lever.wire()}

    # ---- clientToken idempotency ----

    def _replay(self, operation: str, token: str, request: Mapping[str, Any]) -> str | None:
        """The id created by an earlier call with `token`, or None. ConflictException if the
        token was used with different parameters."""
        doc = self.store.get_doc(CLIENT_TOKENS, f"{operation}/{token}")
        if doc is None:
            return None
        if doc["fingerprint"] != _fingerprint(request):
            raise _conflict(f"clientToken {token} was already used with different parameters")
        return str(doc["id"])

    def _remember(self, operation: str, token: str, request: Mapping[str, Any], resource_id: str) -> None:
        self.store.put_doc(CLIENT_TOKENS, f"{operation}/{token}",
                           {"id": resource_id, "fingerprint": _fingerprint(request)})


class _UnknownOperation(Exception):
    pass
