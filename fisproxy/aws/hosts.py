"""AWS host names, parsed with botocore's `partitions.json` and `endpoints.json`.

A host tells less than the SigV4 credential scope (which wins whenever present), but it is all
there is for unsigned requests and for the S3 bucket of virtual-hosted requests. Shapes handled:

    sqs.eu-west-1.amazonaws.com               endpoint prefix . region . DNS suffix
    kms-fips.us-east-1.amazonaws.com          FIPS
    dynamodb.us-east-1.api.aws                dual-stack DNS suffix
    my.bucket.s3.dualstack.eu-west-1...       S3 legacy dual-stack; bucket = everything left of s3
    bucket.s3-eu-west-1.amazonaws.com         S3 legacy dash-region form
    bucket.s3.amazonaws.com, iam.amazonaws.com  global endpoints: endpoints.json's hostname and
                                              credentialScope region
    123456789012.ddb.eu-west-1.amazonaws.com  DynamoDB account-ID endpoint
    sync-states.us-east-1.amazonaws.com       model `hostPrefix` glued to the endpoint prefix
    vpce-0a1b.sqs.us-east-1.vpce.amazonaws.com  interface VPC endpoint
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import cache, lru_cache

from fisproxy.aws import catalog

# Host labels that name a service endpoint but are no model's endpoint prefix (they come from the
# S3 and DynamoDB endpoint rule sets, which are code, not data), mapped to the endpoint prefix.
_LABEL_ALIASES = {
    "ddb": "dynamodb",  # account-ID endpoints
    "s3-accelerate": "s3",
    "s3-accesspoint": "s3",
    "s3-global": "s3",  # multi-region access points (SigV4a)
    "s3-object-lambda": "s3",
    "s3express-control": "s3",
}
# S3 Express zonal endpoints: `bucket--usw2-az1--x-s3.s3express-usw2-az1.us-west-2...`.
_S3_EXPRESS_ZONAL = "s3express-"
# Labels whose left-hand labels are a bucket (virtual-hosted style) rather than a host prefix.
_PATH_STYLE_S3_LABELS = frozenset({"s3express-control"})
# Labels whose left-hand label is an AWS account id.
_ACCOUNT_LABELS = frozenset({"ddb", "s3-control"})


@dataclass(frozen=True, slots=True)
class HostInfo:
    """What an AWS host name says about a request.

    `endpoint_prefix` is the botocore model's `endpointPrefix` (`s3` for every S3 data-plane
    host form); `label` the host label it was read from (`s3-accelerate`, `ddb`, `sync-states`);
    `prefix_labels` what stands left of it (bucket, account id, API id, host prefix).
    """

    endpoint_prefix: str
    label: str
    region: str | None = None
    partition: str = "aws"
    fips: bool = False
    dualstack: bool = False
    is_global: bool = False
    # endpoints.json `credentialScope.service` when it differs from the model (importexport).
    signing_name: str | None = None
    prefix_labels: tuple[str, ...] = ()

    @property
    def bucket(self) -> str | None:
        """The S3 bucket (or access point / MRAP alias) of a virtual-hosted request."""
        if self.endpoint_prefix != "s3" or self.label in _PATH_STYLE_S3_LABELS:
            return None
        labels = [lab for lab in self.prefix_labels if not lab.startswith("vpce-")]
        return ".".join(labels) or None

    @property
    def account(self) -> str | None:
        if self.label in _ACCOUNT_LABELS and self.prefix_labels:
            account = self.prefix_labels[-1]
            return account if account.isdigit() else None
        return None


@dataclass(frozen=True, slots=True)
class _Partition:
    name: str
    suffixes: tuple[str, ...]
    dualstack_suffixes: frozenset[str]
    region_re: re.Pattern[str]
    regions: frozenset[str]
    global_region: str | None


@cache
def _partitions() -> tuple[_Partition, ...]:
    loader = catalog.loader()
    endpoints = {p["partition"]: p for p in loader.load_data("endpoints")["partitions"]}
    result = []
    for part in loader.load_data("partitions")["partitions"]:
        outputs = part["outputs"]
        plain = {outputs["dnsSuffix"]}
        dual = {outputs["dualStackDnsSuffix"]} if outputs.get("dualStackDnsSuffix") else set()
        legacy = endpoints.get(part["id"], {})
        if legacy.get("dnsSuffix"):
            plain.add(legacy["dnsSuffix"])
        for variant in legacy.get("defaults", {}).get("variants", ()):
            if variant.get("dnsSuffix"):
                (dual if "dualstack" in variant["tags"] else plain).add(variant["dnsSuffix"])
        # `aws-global` and friends are listed as regions but are endpoint keys, not host labels.
        regions = {
            r for r in set(part["regions"]) | set(legacy.get("regions", {}))
            if not r.endswith("-global")
        }
        result.append(
            _Partition(
                name=part["id"],
                suffixes=tuple(sorted(plain | dual, key=len, reverse=True)),
                dualstack_suffixes=frozenset(dual),
                region_re=re.compile(part["regionRegex"]),
                regions=frozenset(regions),
                global_region=outputs.get("implicitGlobalRegion"),
            )
        )
    return tuple(result)


@cache
def _suffixes() -> tuple[tuple[str, _Partition], ...]:
    """(".suffix", partition), longest first, so `amazonaws.com.cn` wins over `amazonaws.com`.

    aws and aws-us-gov share their suffixes; the first partition listed (aws) is kept and the
    region decides the partition later.
    """
    seen: dict[str, _Partition] = {}
    for part in _partitions():
        for suffix in part.suffixes:
            seen.setdefault(suffix, part)
    return tuple(sorted(((f".{s}", p) for s, p in seen.items()), key=lambda x: -len(x[0])))


def _split_suffix(host: str) -> tuple[str, str, _Partition] | None:
    for dotted, part in _suffixes():
        if host.endswith(dotted) and len(host) > len(dotted):
            return host[: -len(dotted)], dotted[1:], part
    return None


@lru_cache(maxsize=4096)
def is_aws_host(host: str) -> bool:
    """True if `host` lies under an AWS partition's DNS suffix (amazonaws.com, api.aws, ...)."""
    return _split_suffix(host.lower().rstrip(".")) is not None


@cache
def region_names() -> frozenset[str]:
    """Every region botocore's partitions list."""
    return frozenset(r for part in _partitions() for r in part.regions)


def _region_partition(label: str) -> _Partition | None:
    for part in _partitions():
        if label in part.regions or part.region_re.match(label):
            return part
    return None


@cache
def _explicit_hosts() -> dict[str, HostInfo]:
    """Every hostname endpoints.json spells out (global endpoints, odd regional ones, variants),
    with the signing region of its `credentialScope`."""
    index: dict[str, HostInfo] = {}
    for part in catalog.loader().load_data("endpoints")["partitions"]:
        suffix = part["dnsSuffix"]
        global_region = next(
            (p.global_region for p in _partitions() if p.name == part["partition"]), None
        )
        for key_name, service in part["services"].items():
            prefix = _model_prefix(key_name)
            global_key = service.get("partitionEndpoint")
            for key, endpoint in service.get("endpoints", {}).items():
                scope = endpoint.get("credentialScope", {})
                is_global = key == global_key
                region = scope.get("region") or _region_of_key(key)
                if region is None and is_global:
                    region = global_region
                forms = [endpoint.get("hostname")]
                forms += [v.get("hostname") for v in endpoint.get("variants", ())]
                for hostname in filter(None, forms):
                    hostname = hostname.format(service=key_name, region=key, dnsSuffix=suffix)
                    # `bedrock` lists `bedrock-runtime.<region>...` hosts: a first label that
                    # is another model's endpoint prefix names that model's host.
                    label = hostname.split(".", 1)[0].removesuffix("-fips")
                    if label != prefix and label in catalog.apis_by_endpoint_prefix():
                        continue
                    # Flags from the name itself: some variants tagged dual-stack keep the
                    # plain name (cognito-identity), so the tags would mislabel it.
                    index.setdefault(
                        hostname,
                        HostInfo(
                            endpoint_prefix=prefix,
                            label=prefix,
                            region=region,
                            partition=part["partition"],
                            fips="fips" in hostname,
                            dualstack=_is_dualstack_name(hostname),
                            is_global=is_global,
                            signing_name=scope.get("service"),
                        ),
                    )
    return index


def _model_prefix(key: str) -> str:
    # endpoints.json keys are mostly endpoint prefixes, but some are botocore names sharing
    # another service's host (docdb, neptune -> rds; iotwireless -> api.iotwireless).
    if key in catalog.apis_by_endpoint_prefix():
        return key
    if key in catalog.api_names():
        return catalog.endpoint_prefix(key)
    return key


def _region_of_key(key: str) -> str | None:
    # endpoints.json keys: a region, or a legacy pseudo-region (`fips-us-east-2`, `us-east-1-fips`).
    for candidate in (key, key.removeprefix("fips-"), key.removesuffix("-fips")):
        if _region_partition(candidate):
            return candidate
    return None


def _is_dualstack_name(hostname: str) -> bool:
    split = _split_suffix(hostname)
    if split is None:
        return False
    rest, suffix, part = split
    return suffix in part.dualstack_suffixes or ".dualstack" in f".{rest}"


@cache
def endpoint_prefixes() -> frozenset[str]:
    """Endpoint prefixes of every model, plus the service keys of endpoints.json."""
    keys = set(catalog.apis_by_endpoint_prefix())
    for part in catalog.loader().load_data("endpoints")["partitions"]:
        keys.update(part["services"])
    return frozenset(keys)


def _service_label(label: str) -> tuple[str, str | None] | None:
    """(endpoint prefix, region in the label) for a single host label, or None."""
    known = endpoint_prefixes()
    if label in known:
        return label, None
    if label in _LABEL_ALIASES:
        return _LABEL_ALIASES[label], None
    if label.startswith(_S3_EXPRESS_ZONAL):
        return "s3", None
    # Legacy `s3-eu-west-1` form: endpoint prefix, dash, region.
    for i, ch in enumerate(label):
        if ch == "-" and label[:i] in known and _region_partition(label[i + 1 :]):
            return label[:i], label[i + 1 :]
    # A model `hostPrefix` glued to the endpoint prefix: `sync-states`, `streaming-logs`.
    head, _, rest = label.partition("-")
    if rest in known:
        return rest, None
    return None


@lru_cache(maxsize=4096)
def parse_host(host: str) -> HostInfo | None:
    """Parse an AWS host name (no port); None if it is not under an AWS DNS suffix or names no
    known service endpoint."""
    host = host.lower().rstrip(".")
    split = _split_suffix(host)
    if split is None:
        return None
    rest, suffix, part = split
    labels = rest.split(".")
    # Exact hostnames from endpoints.json first: global endpoints and their bucket subdomains.
    explicit = _explicit_hosts()
    info = explicit.get(host)
    if info is not None:
        return info
    for i in range(1, len(labels)):
        info = explicit.get(f"{'.'.join(labels[i:])}.{suffix}")
        if info is not None and info.endpoint_prefix == "s3":  # bucket.s3.amazonaws.com
            return replace(info, prefix_labels=tuple(labels[:i]))
    dualstack = suffix in part.dualstack_suffixes
    region = None
    if labels[-1] == "vpce" and len(labels) > 1:  # interface VPC endpoints
        labels.pop()
    region_part = _region_partition(labels[-1])
    if region_part is not None and len(labels) > 1:
        region = labels.pop()
        part = region_part
    if labels[-1] == "dualstack" and len(labels) > 1:
        dualstack = True
        labels.pop()
    fips = False
    if labels[-1].endswith("-fips"):
        fips = True
        labels[-1] = labels[-1][: -len("-fips")]
    # Multi-label endpoint prefixes first (`streams.dynamodb` before `dynamodb`).
    known = endpoint_prefixes()
    for width in (3, 2):
        if len(labels) >= width and (joined := ".".join(labels[-width:])) in known:
            return HostInfo(
                endpoint_prefix=joined,
                label=joined,
                region=region,
                partition=part.name,
                fips=fips,
                dualstack=dualstack,
                prefix_labels=tuple(labels[:-width]),
            )
    found = _service_label(labels[-1])
    if found is None:
        return None
    prefix, label_region = found
    if label_region is not None:
        region = label_region
    return HostInfo(
        endpoint_prefix=prefix,
        label=labels[-1],
        region=region,
        partition=part.name,
        fips=fips,
        dualstack=dualstack,
        prefix_labels=tuple(labels[:-1]),
    )


def warm() -> None:
    """Build the host indexes now rather than on the first request."""
    _suffixes()
    _explicit_hosts()
    endpoint_prefixes()
