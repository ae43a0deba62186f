"""botocore's service models, loaded once and indexed: the single source of AWS facts.

Names, as botocore keeps them apart:
- *api* (botocore service name): the model's folder, `cloudwatch`, `stepfunctions`, `sesv2`;
- *signing name*: the SigV4 credential-scope service, `monitoring`, `states`, `ses`;
- *endpoint prefix*: the first host label, `monitoring`, `states`, `email`.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import defaultdict
from functools import cache
from typing import Any, TypedDict, cast

from botocore.exceptions import DataNotFoundError
from botocore.loaders import Loader
from botocore.model import ServiceModel
from botocore.utils import PRIORITY_ORDERED_SUPPORTED_PROTOCOLS


class ModelMetadata(TypedDict, total=False):
    """The fields of a model's `metadata` block that fisproxy reads (a JSON object: more keys)."""

    apiVersion: str
    endpointPrefix: str
    signingName: str
    protocol: str
    protocols: list[str]
    targetPrefix: str
    awsQueryCompatible: dict[str, Any]


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
def _metadata() -> dict[str, ModelMetadata]:
    # Every model's `metadata` block, read without parsing whole models (~50 ms for 445 files
    # instead of ~3.5 s): see `_read_metadata`.
    return {api: _read_metadata(api) for api in api_names()}


def _model_file(api: str) -> str | None:
    # The file `Loader.load_service_model` would read: latest version, first search path.
    version = loader().determine_latest_version(api, "service-2")
    for base in loader().search_paths:
        stem = os.path.join(base, api, version, "service-2")
        for path in (stem + ".json", stem + ".json.gz"):
            if os.path.isfile(path):
                return path
    return None


_DECODER = json.JSONDecoder()


def _read_metadata(api: str) -> ModelMetadata:
    """The model's `metadata`, decoded from the head of the (gzipped) model file.

    botocore writes `metadata` before `operations`, so a few KiB suffice. Anything unexpected
    (another layout, a customer model) falls back to botocore's full load. The sdk-extras merge
    botocore applies to metadata (a `serviceId` for eks and secretsmanager) is applied too.
    """
    found = _model_file(api)
    metadata = _metadata_from_head(found) if found else None
    if metadata is None:
        return cast(ModelMetadata, dict(loader().load_service_model(api, "service-2")["metadata"]))
    version = loader().determine_latest_version(api, "service-2")
    try:
        extras = loader().load_data(os.path.join(api, version, "service-2.sdk-extras"))
    except DataNotFoundError:
        extras = None
    if extras:
        metadata.update(extras.get("merge", {}).get("metadata", {}))
    return metadata


def _metadata_from_head(path: str) -> ModelMetadata | None:
    buf = b""
    with gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb") as fp:
        while chunk := fp.read(8192):
            buf += chunk
            start = buf.find(b'"metadata"')
            if start < 0:
                continue
            colon = buf.find(b":", start)
            try:
                value, _ = _DECODER.raw_decode(buf[colon + 1 :].decode("utf-8").lstrip())
            except ValueError:  # incomplete object (or a split UTF-8 sequence): read more
                continue
            return cast(ModelMetadata, value) if isinstance(value, dict) else None
    return None


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


def metadata(api: str) -> ModelMetadata:
    """The model's `metadata` block (read-only; cheap, no full model load)."""
    return _metadata()[api]


def protocols(api: str) -> tuple[str, ...]:
    """The protocols the model supports, in the model's order."""
    md = _metadata()[api]
    return tuple(md.get("protocols") or (md["protocol"],))


def resolved_protocol(api: str) -> str:
    """What `ServiceModel.resolved_protocol` returns for `api`, computed from metadata only."""
    supported = protocols(api)
    for protocol in PRIORITY_ORDERED_SUPPORTED_PROTOCOLS:
        if protocol in supported:
            return protocol
    return _metadata()[api]["protocol"]


def target_prefix(api: str) -> str | None:
    """`X-Amz-Target` prefix (json) and rpc-v2-cbor path service segment, if the model has one."""
    return _metadata()[api].get("targetPrefix")


def api_version(api: str) -> str:
    return _metadata()[api]["apiVersion"]


@cache
def checksum_headers() -> dict[str, str]:
    """Endpoint prefix -> the response header that carries a CRC32 of the body, for the
    services whose SDKs check it (DynamoDB's `x-amz-crc32`). From botocore's retry
    configuration (`_retry.json`), where a `crc32body` response check makes the client retry
    a response whose body does not match it."""
    data = loader().load_data("_retry")
    definitions = data.get("definitions", {})
    found: dict[str, str] = {}
    for prefix, operations in data["retry"].items():
        if prefix == "__default__":  # every service's: throttling and transient errors only
            continue
        for config in operations.values():  # the service's `__default__`, per-operation entries
            for policy in config.get("policies", {}).values():
                policy = definitions.get(policy.get("$ref"), policy)
                header = policy.get("applies_when", {}).get("response", {}).get("crc32body")
                if header:
                    found[prefix] = header
    return found


@cache
def apis_by_target_prefix() -> dict[str, tuple[str, ...]]:
    index: dict[str, list[str]] = defaultdict(list)
    for api in api_names():
        prefix = target_prefix(api)
        if prefix:
            index[prefix].append(api)
    return {name: tuple(apis) for name, apis in index.items()}
