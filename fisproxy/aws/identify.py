"""Which AWS API call a proxied HTTP request is: service, region, operation, caller key.

Evidence, best first (how SDKs sign and address calls: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv.html,
https://smithy.io/2.0/aws/protocols/index.html):
- caller key: SigV4 `Authorization` Credential, presigned `X-Amz-Credential`, SigV2
  `AWS AKID:sig` header or presigned `AWSAccessKeyId`;
- signing service and region: the SigV4 credential scope `AKID/date/region/service/aws4_request`
  (SigV4a has no region: `X-Amz-Region-Set`, else the host); the host as fallback;
- botocore service (api): `X-Amz-Target` prefix, rpc-v2-cbor path, else the services sharing
  the signing name, narrowed by the host's endpoint prefix;
- operation: `X-Amz-Target` suffix (json), `Action` (query/ec2, query string or form body),
  `/service/<X>/operation/<Op>` (rpc-v2-cbor), method + path (rest-json/rest-xml, restmatch).

Everything taken from the wire is checked against botocore's data before it leaves here: a
service is a known signing name (else the host decides, else the request is not identified),
an operation is one of the model's operations (else None: unknown), a region and an access
key id are short ASCII (else None). So the values that reach metric labels, the request log
and the caches below form a set bounded by the models, whatever clients send (undecodable
bytes arrive from mitmproxy as lone surrogates and never match).

Everything per request is string splitting and dict lookups over indexes built once, lazily,
from botocore's models (`warm()` builds them up front).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache, lru_cache
from urllib.parse import unquote, unquote_plus

from fisproxy.aws import catalog, hosts, restmatch
from fisproxy.aws.call import AwsCall

_QUERY_PROTOCOLS = frozenset({"query", "ec2"})
_REST_PROTOCOLS = frozenset({"rest-json", "rest-xml"})
_CBOR = "smithy-rpc-v2-cbor"
_FORM = "application/x-www-form-urlencoded"
# Signing names seen on the wire that no model declares, mapped to the model's signing name.
_SIGNING_ALIASES = {"s3express": "s3", "s3-object-lambda": "s3"}
# Regions botocore does not list yet, or that local upstreams accept (`local`): short,
# lower-case ASCII letters, digits and dashes, like `us-gov-west-1`.
_REGION = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?", re.ASCII)
# Services warmed by `warm()`: the ones FIS users target most.
COMMON_APIS = (
    "s3", "dynamodb", "sqs", "sns", "lambda", "ec2", "kinesis", "sts", "iam", "cloudwatch",
    "logs", "kms", "ssm", "stepfunctions", "events", "secretsmanager", "apigateway",
)  # fmt: skip


class _Credential:
    __slots__ = ("access_key", "region", "service", "sigv4a", "scoped")

    def __init__(
        self, access_key: str | None, region: str | None, service: str | None, sigv4a: bool,
        scoped: bool = True,
    ) -> None:
        self.access_key = access_key
        self.region = region
        self.service = service  # None: no scope (SigV2), or a name botocore does not know
        self.sigv4a = sigv4a
        self.scoped = scoped  # a SigV4 credential scope, as opposed to a bare SigV2 key


@lru_cache(maxsize=256)  # a client sends the same scopes all day; bounded (clients choose them)
def _scope(credential: str) -> _Credential | None:
    # AKID/yyyymmdd/region/service/aws4_request (SigV4) or AKID/yyyymmdd/service/aws4_request
    # (SigV4a). Access key ids contain no "/".
    parts = credential.split("/")
    if len(parts) == 5:
        return _Credential(_key(parts[0]), parts[2] or None, _known(parts[3]), False)
    if len(parts) == 4:
        return _Credential(_key(parts[0]), None, _known(parts[2]), True)
    return None


def _key(value: str) -> str | None:
    # Printable ASCII, as short as real ids (str.isascii is O(1): cheaper than a regex).
    return value if 0 < len(value) <= 128 and value.isascii() and value.isprintable() else None


def _clean_region(value: str | None) -> str | None:
    if not value:
        return None
    return value if value in hosts.region_names() or _REGION.fullmatch(value) else None


@cache
def _signing_names() -> frozenset[str]:
    # Every name a credential scope may carry: the models' signing names, the wire-only
    # aliases, and endpoints.json's service keys (their own signing names).
    return frozenset(catalog.apis_by_signing_name()) | frozenset(_SIGNING_ALIASES) | hosts.endpoint_prefixes()


def _known(service: str) -> str | None:
    """The credential scope's service if botocore knows it; None lets the host decide."""
    return service if service in _signing_names() else None


def _from_authorization(auth: str) -> _Credential | None:
    algorithm, _, params = auth.strip().partition(" ")
    # `<VENDOR>4-HMAC-SHA256` / `...4-ECDSA-P256-SHA256`: AWS4 and look-alikes (OSC4, ...).
    if algorithm.endswith(("4-HMAC-SHA256", "4-ECDSA-P256-SHA256")):
        start = params.find("Credential=")
        if start < 0:
            return None
        start += len("Credential=")
        end = params.find(",", start)
        return _scope(params[start:end].strip() if end >= 0 else params[start:].strip())
    if algorithm == "AWS" and ":" in params:  # SigV2 (S3 HmacV1): "AWS AKID:signature"
        return _Credential(_key(params.partition(":")[0].strip()), None, None, False, scoped=False)
    return None


def _from_query(query: Mapping[str, str]) -> _Credential | None:
    credential = query.get("X-Amz-Credential")
    if credential is not None:
        return _scope(unquote(credential))
    key = query.get("AWSAccessKeyId")
    if key is not None:
        return _Credential(_key(unquote(key)), None, None, False, scoped=False)
    return None


def parse_query(query: str) -> dict[str, str]:
    """Raw query string -> {decoded key: raw value}; the first value of a repeated key wins."""
    result: dict[str, str] = {}
    if not query:
        return result
    for part in query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        if "%" in key or "+" in key:
            key = unquote_plus(key)
        result.setdefault(key, value)
    return result


def _form_fields(body: bytes, names: tuple[bytes, ...]) -> dict[bytes, str]:
    """Values of a few fields of a form-encoded body, without splitting the whole body."""
    found: dict[bytes, str] = {}
    for name in names:
        needle = name + b"="
        pos = 0 if body.startswith(needle) else body.find(b"&" + needle)
        if pos < 0:
            continue
        if pos:
            pos += 1
        start = pos + len(needle)
        end = body.find(b"&", start)
        raw = body[start:] if end < 0 else body[start:end]
        found[name] = unquote_plus(raw.decode("latin-1"))
    return found


@cache
def _operations(api: str) -> frozenset[str]:
    return frozenset(catalog.service_model(api).operation_names)


def _modelled(api: str | None, operation: str | None) -> str | None:
    """`operation` if `api`'s model has it, else None (unknown): names invented by clients
    never become metric labels, report rows or fault matches."""
    if api is None or not operation or operation not in _operations(api):
        return None
    return operation


@cache
def _rank_order(service: str, endpoint_prefix: str | None, apis: tuple[str, ...]) -> tuple[str, ...]:
    # Preference when the wire cannot tell: the api named like the signing name or endpoint
    # prefix (rds before docdb/neptune, lambda before lambda-core), then by name.
    return tuple(sorted(apis, key=lambda a: (a != service, a != endpoint_prefix, a)))


def _candidates(service: str, info: hosts.HostInfo | None) -> tuple[str, ...]:
    if info is None:
        return _candidates_for(service, None, False)
    return _candidates_for(service, info.endpoint_prefix, info.label == "s3express-control")


@lru_cache(maxsize=1024)  # on every request: 1.4 µs of identify's 9 uncached; bounded
def _candidates_for(service: str, prefix: str | None, s3express_control: bool) -> tuple[str, ...]:
    by_signing = catalog.apis_by_signing_name()
    apis = by_signing.get(service) or by_signing.get(_SIGNING_ALIASES.get(service, ""), ())
    # The S3 Express control host serves both s3 (directory buckets) and s3control (their
    # access points): let the path decide.
    if prefix is not None and not s3express_control:
        by_prefix = catalog.apis_by_endpoint_prefix().get(prefix, ())
        narrowed = tuple(a for a in apis if a in by_prefix)
        apis = narrowed or apis or by_prefix
    return _rank_order(service, prefix, apis)


def _pick(apis: tuple[str, ...], candidates: tuple[str, ...], operation: str | None) -> str:
    """One api out of several that share a target prefix (timestream-query / -write)."""
    if len(apis) == 1:
        return apis[0]
    preferred = tuple(a for a in candidates if a in apis) or apis
    if operation is not None:
        for api in preferred:
            if operation in _operations(api):
                return api
    return preferred[0]


def _signing_name_for_host(info: hosts.HostInfo) -> str | None:
    if info.signing_name:
        return info.signing_name
    apis = catalog.apis_by_endpoint_prefix().get(info.endpoint_prefix)
    if apis:
        return catalog.signing_name(apis[0])
    # An endpoint prefix known only to endpoints.json: its key is the signing name too.
    return info.endpoint_prefix


def identify(
    method: str,
    host: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes | None = None,
) -> AwsCall | None:
    """Identify an AWS API request; None if it is not one (unsigned and not to an AWS host).

    `path` is the raw request target (path and query string), `host` the host name without
    port, `headers` read by lower-case names (a dict by lower-case name, or case-insensitive). For query/ec2 requests with `Action` only in the form body
    and no `body` given, the call has `operation=None, needs_body=True`.
    """
    raw_path, _, raw_query = path.partition("?")
    query: dict[str, str] | None = None
    auth = headers.get("authorization")
    credential = _from_authorization(auth) if auth else None
    if credential is None and raw_query:
        query = parse_query(raw_query)
        credential = _from_query(query)
    info = hosts.parse_host(host)
    if credential is None and info is None:
        return None

    service = credential.service if credential is not None else None
    if service is None and info is not None:
        service = _signing_name_for_host(info)
    if service is None:
        if credential is None or credential.scoped:
            return None  # no AWS host, and a scope naming no service botocore knows
        service = "s3"  # SigV2 without an AWS host: only S3 speaks SigV2 with a header key
    region = _clean_region(_region(credential, info, headers, query, raw_query))
    access_key = credential.access_key if credential is not None else None
    candidates = _candidates(service, info)

    target = headers.get("x-amz-target")
    if target:
        prefix, _, target_operation = target.rpartition(".")
        apis = catalog.apis_by_target_prefix().get(prefix)
        api = _pick(apis, candidates, target_operation) if apis else _first(candidates)
        return AwsCall(service, region, _modelled(api, target_operation), api, "json", access_key)

    if "/operation/" in raw_path and (
        headers.get("smithy-protocol") == "rpc-v2-cbor" or "/service/" in raw_path
    ):
        call = _rpc_v2(service, region, raw_path, candidates, access_key)
        if call is not None:
            return call

    query_apis = _query_apis(candidates)
    if query_apis:
        if query is None:
            query = parse_query(raw_query)
        content_type = headers.get("content-type") or ""
        if (
            "Action" in query
            or content_type.startswith(_FORM)
            or len(query_apis) == len(candidates)  # nothing but query services here
        ):
            return _query_call(service, region, query, body, method, query_apis, access_key)

    rest_apis = _rest_apis(candidates)
    if rest_apis:
        if query is None:
            query = parse_query(raw_query)
        operation, api = _rest_operation(method, host, info, raw_path, query, headers, rest_apis)
        return AwsCall(service, region, operation, api, catalog.resolved_protocol(api), access_key)
    api = _first(candidates)
    protocol = catalog.resolved_protocol(api) if api else None
    return AwsCall(service, region, None, api, protocol, access_key)


def _first(apis: tuple[str, ...]) -> str | None:
    return apis[0] if apis else None


def _region(
    credential: _Credential | None,
    info: hosts.HostInfo | None,
    headers: Mapping[str, str],
    query: dict[str, str] | None,
    raw_query: str,
) -> str | None:
    if credential is not None and credential.region:
        return credential.region
    host_region = info.region if info is not None else None
    if credential is not None and credential.sigv4a:
        if host_region:
            return host_region
        region_set = headers.get("x-amz-region-set")
        if region_set is None:
            region_set = unquote((query or parse_query(raw_query)).get("X-Amz-Region-Set", ""))
        # A single region is a region; "*" or a list is no one region.
        if region_set and "," not in region_set and "*" not in region_set:
            return region_set.strip()
        return None
    return host_region


def _rpc_v2(
    service: str, region: str | None, raw_path: str, candidates: tuple[str, ...], access_key: str | None
) -> AwsCall | None:
    # POST {prefix?}/service/<ServiceName or shape id>/operation/<Operation>
    head, _, operation = raw_path.rpartition("/operation/")
    _, sep, target = head.rpartition("/service/")
    if not sep or not operation or "/" in operation:
        return None
    target = unquote(target).rpartition("#")[2]  # absolute shape id: "com.amazonaws.x#Name"
    apis = catalog.apis_by_target_prefix().get(target)
    if apis:
        api = _pick(apis, candidates, operation)
    else:
        cbor = tuple(a for a in candidates if _CBOR in catalog.protocols(a))
        if not cbor:
            return None
        api = cbor[0]
    return AwsCall(service, region, _modelled(api, operation), api, _CBOR, access_key)


def complete(call: AwsCall, host: str, body: bytes) -> AwsCall:
    """Finish a `needs_body` call from its form body: only `Action`/`Version` are read; the
    credential scope and the host are not parsed again (identify already did)."""
    if not call.needs_body:
        return call
    apis = _query_apis(_candidates(call.service, hosts.parse_host(host)))
    if not apis and call.api is not None:  # always set on a needs_body call (_query_call)
        apis = (call.api,)
    return _query_call(call.service, call.region, {}, body, "POST", apis, call.access_key)


def _query_call(
    service: str,
    region: str | None,
    query: dict[str, str],
    body: bytes | None,
    method: str,
    apis: tuple[str, ...],
    access_key: str | None,
) -> AwsCall:
    action = query.get("Action")
    version = query.get("Version")
    if action is not None:
        action = unquote_plus(action)
    elif body is not None:
        fields = _form_fields(body, (b"Action", b"Version", b"AWSAccessKeyId"))
        action = fields.get(b"Action")
        version = fields.get(b"Version", version)
        access_key = access_key or fields.get(b"AWSAccessKeyId")
    elif method == "POST":
        api = apis[0]
        return AwsCall(service, region, None, api, _query_protocol(api), access_key, needs_body=True)
    api = apis[0]
    if len(apis) > 1:  # elb/elbv2, rds/docdb/neptune: the Version, then the Action decide
        by_version = tuple(a for a in apis if catalog.api_version(a) == version)
        api = _pick(by_version or apis, apis, action)
    return AwsCall(service, region, _modelled(api, action), api, _query_protocol(api), access_key)


@cache
def _query_apis(candidates: tuple[str, ...]) -> tuple[str, ...]:
    # Services that accept `Action=` requests: the query/ec2 models, and json models with the
    # `awsQueryCompatible` trait (SQS, CloudWatch), which older clients still call in query.
    return tuple(
        a
        for a in candidates
        if _QUERY_PROTOCOLS.intersection(catalog.protocols(a))
        or "awsQueryCompatible" in catalog.metadata(a)
    )


def _query_protocol(api: str) -> str:
    return "ec2" if "ec2" in catalog.protocols(api) else "query"


@cache
def _rest_apis(candidates: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(a for a in candidates if catalog.resolved_protocol(a) in _REST_PROTOCOLS)


def _rest_operation(
    method: str,
    host: str,
    info: hosts.HostInfo | None,
    raw_path: str,
    query: dict[str, str],
    headers: Mapping[str, str],
    apis: tuple[str, ...],
) -> tuple[str | None, str]:
    """(operation, api): the most specific route over the candidate services (lambda and
    lambda-core share a host; s3 and s3control share a signing name)."""
    best: restmatch.Match | None = None
    best_api = apis[0]
    for api in apis:
        virtual = False
        context: frozenset[str] = frozenset()
        if api == "s3":
            virtual, context = _s3_host(host, info)
        match = restmatch.route_table(api, virtual).match(
            method, raw_path or "/", query, headers, context
        )
        if match is not None and (best is None or match.rank > best.rank):
            best, best_api = match, api
    return (best.operation if best is not None else None), best_api


def _s3_host(host: str, info: hosts.HostInfo | None) -> tuple[bool, frozenset[str]]:
    """(virtual-hosted?, host context) for an S3 request."""
    if info is not None:
        if info.label == "s3express-control":
            return False, frozenset({"UseS3ExpressControlEndpoint"})
        if info.label == "s3-object-lambda":
            return False, frozenset({"UseObjectLambdaEndpoint"})
        return info.bucket is not None, frozenset()
    # Custom endpoints (LocalStack `bucket.s3.localhost.localstack.cloud`): a bucket label left
    # of an `s3` label means virtual-hosted; an IP or plain name means path style.
    lowered = host.lower()
    return (".s3." in lowered and not lowered.startswith("s3.")), frozenset()


def warm(apis: tuple[str, ...] = COMMON_APIS) -> None:
    """Build the indexes identification needs, so the first requests are not slow."""
    hosts.warm()
    catalog.apis_by_signing_name()
    catalog.apis_by_endpoint_prefix()
    catalog.apis_by_target_prefix()
    _signing_names()
    hosts.region_names()
    for api in apis:
        _operations(api)
        if catalog.resolved_protocol(api) in _REST_PROTOCOLS:
            restmatch.route_table(api)
            if api == "s3":
                restmatch.route_table(api, True)


def is_aws_host(host: str) -> bool:
    """True if `host` lies under an AWS partition's DNS suffix (from botocore's data)."""
    return hosts.is_aws_host(host)
