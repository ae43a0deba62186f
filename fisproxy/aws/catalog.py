"""botocore's service models, loaded once and indexed: the single source of AWS facts.

Names, as botocore keeps them apart:
- *api* (botocore service name): the model's folder, `cloudwatch`, `stepfunctions`, `sesv2`;
- *signing name*: the SigV4 credential-scope service, `monitoring`, `states`, `ses`;
- *endpoint prefix*: the first host label, `monitoring`, `states`, `email`.
"""

from __future__ import annotations

from collections import defaultdict
from functools import cache

from botocore.loaders import Loader
from botocore.model import ServiceModel


@cache
def loader() -> Loader:
    return Loader()


@cache
def api_names() -> tuple[str, ...]:
    """Every botocore service name that has a service model."""
    return tuple(sorted(loader().list_available_services("service-2")))


@cache
def service_model(api: str) -> ServiceModel:
    """botocore's ServiceModel for `api` (raises botocore's UnknownServiceError if missing)."""
    return ServiceModel(loader().load_service_model(api, "service-2"), service_name=api)


@cache
def _metadata() -> dict[str, dict]:
    # Reading metadata needs the whole model file; this runs once, lazily, on first use.
    return {api: loader().load_service_model(api, "service-2")["metadata"] for api in api_names()}


def signing_name(api: str) -> str:
    md = _metadata()[api]
    return md.get("signingName") or md["endpointPrefix"]


def endpoint_prefix(api: str) -> str:
    return _metadata()[api]["endpointPrefix"]


@cache
def apis_by_signing_name() -> dict[str, tuple[str, ...]]:
    index: dict[str, list[str]] = defaultdict(list)
    for api in api_names():
        index[signing_name(api)].append(api)
    return {name: tuple(apis) for name, apis in index.items()}


@cache
def apis_by_endpoint_prefix() -> dict[str, tuple[str, ...]]:
    index: dict[str, list[str]] = defaultdict(list)
    for api in api_names():
        index[endpoint_prefix(api)].append(api)
    return {name: tuple(apis) for name, apis in index.items()}


def apis_for_service(name: str) -> tuple[str, ...]:
    """The botocore services a user-written service name means: a signing name (`monitoring`,
    `dynamodb`, which also covers `dynamodbstreams`) or a botocore name (`cloudwatch`).
    Empty if the name means nothing."""
    apis = set(apis_by_signing_name().get(name, ()))
    if name in _metadata():
        apis.add(name)
    return tuple(sorted(apis))


def is_known_service(name: str) -> bool:
    return bool(apis_for_service(name))


@cache
def operation_names(service: str) -> frozenset[str]:
    """All operation names of every botocore service that `service` means."""
    names: set[str] = set()
    for api in apis_for_service(service):
        names.update(service_model(api).operation_names)
    return frozenset(names)
