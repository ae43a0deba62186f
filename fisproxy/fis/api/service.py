"""FisApi: the FIS control API's one entry, `handle(request, region)`.

A request is decoded against botocore's `fis` model (`wire.py`), dispatched to the handler of
its operation, which returns the operation's response model (`outputs.py`), and answered as
JSON; every error is one of the model's error shapes (`errors.py`). Handlers live in one small
class per resource (templates, experiments, action types, tags, accounts, safety levers), each
listing the operations it answers in `handlers()`.

Templates, experiments and tags are not partitioned by region: the region of the request only
goes into new ARNs.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping

from fisproxy.fis.api.accounts import AccountOperations
from fisproxy.fis.api.actiontypes import ActionTypeOperations
from fisproxy.fis.api.errors import FisError, UnknownOperation, render_error
from fisproxy.fis.api.experiments import (
    MAX_ACTIVE_EXPERIMENTS,
    ExperimentOperations,
    ExperimentRunner,
)
from fisproxy.fis.api.levers import LeverOperations
from fisproxy.fis.api.records import Records
from fisproxy.fis.api.tags import TagOperations
from fisproxy.fis.api.templates import MAX_TEMPLATES, TemplateOperations
from fisproxy.fis.api.wire import OperationInput, decode
from fisproxy.fis.fielderror import FieldError
from fisproxy.fis.inputs import CreateExperimentTemplateRequest, UpdateExperimentTemplateRequest
from fisproxy.fis.models import ExperimentTemplate, FisModel
from fisproxy.fis.passrole import RolePolicy
from fisproxy.fis.ports import FisStore, SaveError, StoreUnavailable
from fisproxy.httpdata import ApiRequest, ApiResponse

log = logging.getLogger(__name__)

DEFAULT_ACCOUNT_ID = "123456789012"

# One operation's handler: its decoded input and the request's region in, its response out.
Handler = Callable[[OperationInput, str], FisModel]


class FisApi:
    """FIS control API over a store and an ExperimentRunner. Thread-safe: one lock serialises
    operations (they are few and fast), which also makes clientToken checks atomic."""

    def __init__(self, store: FisStore, engine: ExperimentRunner, *, account_id: str = DEFAULT_ACCOUNT_ID,
                 max_active_experiments: int = MAX_ACTIVE_EXPERIMENTS, max_templates: int = MAX_TEMPLATES,
                 roles: RolePolicy | None = None) -> None:
        self.store = store
        self.engine = engine
        self.account_id = account_id
        self._lock = threading.RLock()
        records = Records(store, account_id)
        roles = roles or RolePolicy()  # which roleArns callers may pass (iam:PassRole)
        self.templates = TemplateOperations(records, max_templates=max_templates, roles=roles)
        experiments = ExperimentOperations(records, engine, max_active_experiments=max_active_experiments,
                                           roles=roles)
        types = ActionTypeOperations(account_id)
        tags = TagOperations(records)
        accounts = AccountOperations(records)
        levers = LeverOperations(records, engine)
        # botocore's operation name -> handler.
        self.handlers: Mapping[str, Handler] = {
            "CreateExperimentTemplate": self.templates.create_experiment_template,
            "GetExperimentTemplate": self.templates.get_experiment_template,
            "UpdateExperimentTemplate": self.templates.update_experiment_template,
            "DeleteExperimentTemplate": self.templates.delete_experiment_template,
            "ListExperimentTemplates": self.templates.list_experiment_templates,
            "StartExperiment": experiments.start_experiment,
            "GetExperiment": experiments.get_experiment,
            "StopExperiment": experiments.stop_experiment,
            "ListExperiments": experiments.list_experiments,
            "ListExperimentResolvedTargets": experiments.list_experiment_resolved_targets,
            "GetAction": types.get_action,
            "ListActions": types.list_actions,
            "GetTargetResourceType": types.get_target_resource_type,
            "ListTargetResourceTypes": types.list_target_resource_types,
            "TagResource": tags.tag_resource,
            "UntagResource": tags.untag_resource,
            "ListTagsForResource": tags.list_tags_for_resource,
            "CreateTargetAccountConfiguration": accounts.create_target_account_configuration,
            "GetTargetAccountConfiguration": accounts.get_target_account_configuration,
            "UpdateTargetAccountConfiguration": accounts.update_target_account_configuration,
            "DeleteTargetAccountConfiguration": accounts.delete_target_account_configuration,
            "ListTargetAccountConfigurations": accounts.list_target_account_configurations,
            "GetExperimentTargetAccountConfiguration": accounts.get_experiment_target_account_configuration,
            "ListExperimentTargetAccountConfigurations": accounts.list_experiment_target_account_configurations,
            "GetSafetyLever": levers.get_safety_lever,
            "UpdateSafetyLeverState": levers.update_safety_lever_state,
        }

    def handle(self, request: ApiRequest, region: str) -> ApiResponse:
        request_id = str(uuid.uuid4())
        try:
            inp = decode(request)
            handler = self.handlers[inp.operation]
            with self._lock:
                out = handler(inp, region)
        except FisError as e:
            return render_error(e.code, e.status, e.message, request_id)
        except FieldError as e:
            return render_error("ValidationException", 400, str(e), request_id)
        except UnknownOperation as e:
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
        return ApiResponse.json(200, out.wire(), {"x-amzn-RequestId": request_id})

    # ---- the template writes, for templates files (`templates_file.py`) ----

    def create_template(self, req: CreateExperimentTemplateRequest, region: str) -> ExperimentTemplate:
        with self._lock:
            return self.templates.create(req, region)

    def replace_template(self, template_id: str, req: CreateExperimentTemplateRequest) -> ExperimentTemplate:
        """Make template `template_id` exactly `req` (the file wins), keeping its id, ARN and
        creation time."""
        with self._lock:
            return self.templates.replace(template_id, req)

    def update_template(self, template_id: str, req: UpdateExperimentTemplateRequest) -> ExperimentTemplate:
        with self._lock:
            return self.templates.update(template_id, req)
