"""rest-json / rest-xml operation matching: the inverse of botocore's REST serializers.

botocore builds a REST request from the operation's `http.method` and `http.requestUri`
(`/{Bucket}/{Key+}?uploads`) plus members bound to the query string and headers. A route
table per service turns that back into the operation:

1. the path template becomes a regex over the raw (percent-encoded) path: `{Name}` is one
   segment, `{Name+}` (greedy) any text including `/`; a trailing slash is optional;
2. literal query parts of the template must be present (`?uploads`: the key; `?list-type=2`:
   key and value);
3. *required* input members bound to the query string or a header must be present
   (`uploadId` tells ListParts from GetObject, `x-amz-copy-source` CopyObject from PutObject);
4. `x-id`, which non-botocore SDKs add (`?x-id=PutObject`), must name the operation if present;
5. the most specific route wins: more query/header constraints, more literal path characters,
   fewer greedy labels; then host context (S3's `UseS3ExpressControlEndpoint` routes on the
   `s3express-control` host only), then not deprecated.

The match carries its route, whose `labels(path)` gives the raw text of each `{label}` (the
FIS control API reads its URI members this way).

S3 virtual-hosted requests carry the bucket in the host: their table holds only the
bucket-scoped routes with the leading `/{Bucket}` removed, as botocore does
(`handlers.remove_bucket_from_url_paths_from_model`), so `GET /` there is ListObjects.

Some operation pairs are identical on the wire and stay ambiguous (S3 GetBucketLifecycle /
GetBucketLifecycleConfiguration and the Notification pairs: the non-deprecated one is reported).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache

from botocore.model import OperationModel

from fisproxy.aws import catalog

# Static context parameters a host can assert (S3 only so far): the route that sets one is
# preferred on hosts that assert it, and loses ties elsewhere.
HOST_CONTEXT_PARAMS = frozenset({"UseS3ExpressControlEndpoint", "UseObjectLambdaEndpoint"})

_LABEL = re.compile(r"\{([^}]+?)(\+?)\}")


@dataclass(frozen=True, slots=True)
class Route:
    operation: str
    method: str
    template: str
    pattern: re.Pattern[str]  # one group per label, in `label_names` order
    label_names: tuple[str, ...]
    # (key, value) pairs from the template's query part; value None means "key present".
    literal_query: tuple[tuple[str, str | None], ...]
    required_query: tuple[str, ...]
    required_headers: tuple[str, ...]
    host_context: frozenset[str]
    deprecated: bool
    # (constraints, literal path characters, -greedy labels): higher is more specific.
    specificity: tuple[int, int, int]

    def accepts(self, path: str, query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
        for key, value in self.literal_query:
            got = query.get(key)
            if got is None or (value is not None and got != value):
                return False
        for key in self.required_query:
            if key not in query:
                return False
        for name in self.required_headers:
            if headers.get(name) is None:
                return False
        x_id = query.get("x-id")
        if x_id is not None and x_id != self.operation:
            return False
        return self.pattern.fullmatch(path) is not None

    def labels(self, path: str) -> dict[str, str]:
        """The raw (percent-encoded) text of each label of `path`, by label name; empty if
        `path` is not this route's."""
        m = self.pattern.fullmatch(path)
        return dict(zip(self.label_names, m.groups(), strict=True)) if m else {}


@dataclass(frozen=True, slots=True)
class Match:
    operation: str
    # Comparable across services: (specificity..., host context score, not deprecated).
    rank: tuple[int, ...]
    route: Route = field(compare=False)


def _route(op: OperationModel, template: str) -> Route:
    path, _, literal = template.partition("?")
    literal_query: list[tuple[str, str | None]] = []
    for part in filter(None, literal.split("&")):
        key, eq, value = part.partition("=")
        literal_query.append((key, value if eq else None))
    regex, pos, literal_chars, greedy = [], 0, 0, 0
    label_names: list[str] = []
    for label in _LABEL.finditer(path):
        regex.append(re.escape(path[pos : label.start()]))
        literal_chars += label.start() - pos
        label_names.append(label.group(1))
        if label.group(2):
            greedy += 1
            regex.append("(.+)")
        else:
            regex.append("([^/]+)")
        pos = label.end()
    tail = path[pos:]
    literal_chars += len(tail)
    # A trailing slash is optional both ways: model versions and SDKs differ
    # (`/2015-03-31/functions` vs `/2015-03-31/functions/`).
    if len(path) > 1:
        tail = tail.removesuffix("/")
        regex.append(re.escape(tail) + "/?")
    else:
        regex.append(re.escape(tail))
    required_query: list[str] = []
    required_headers: list[str] = []
    shape = op.input_shape
    if shape is not None:
        for name in shape.required_members:
            member = shape.members[name]
            location = member.serialization.get("location")
            wire = member.serialization.get("name", name)
            if location == "querystring" and member.type_name != "map":
                required_query.append(wire)
            elif location == "header":
                required_headers.append(wire.lower())  # looked up by lower-case name
    host_context = frozenset(
        p.name for p in op.static_context_parameters if p.value is True
    ) & HOST_CONTEXT_PARAMS
    constraints = len(literal_query) + len(required_query) + len(required_headers)
    return Route(
        operation=op.name,
        method=op.http["method"],
        template=template,
        pattern=re.compile("".join(regex)),
        label_names=tuple(label_names),
        literal_query=tuple(literal_query),
        required_query=tuple(required_query),
        required_headers=tuple(required_headers),
        host_context=host_context,
        deprecated=bool(op.deprecated),
        specificity=(constraints, literal_chars, -greedy),
    )


class RouteTable:
    """The routes of one REST service, by method, most specific first."""

    def __init__(self, api: str, *, strip_label: str | None = None) -> None:
        """`strip_label`: keep only routes whose path starts with `/{<strip_label>}` and remove
        that segment (S3 virtual-hosted style, where the bucket is in the host)."""
        model = catalog.service_model(api)
        by_method: dict[str, list[Route]] = {}
        prefix = f"/{{{strip_label}}}" if strip_label else None
        for name in model.operation_names:
            op = model.operation_model(name)
            template = op.http.get("requestUri", "/")
            if prefix is not None:
                if not (template == prefix or template.startswith((prefix + "/", prefix + "?"))):
                    continue
                template = template[len(prefix) :]
                if not template.startswith("/"):
                    template = "/" + template
            by_method.setdefault(op.http["method"], []).append(_route(op, template))
        self.api = api
        self.routes = {
            method: tuple(sorted(routes, key=lambda r: r.specificity, reverse=True))
            for method, routes in by_method.items()
        }

    def match(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        host_context: frozenset[str] = frozenset(),
    ) -> Match | None:
        """The best route for a request. `path` is raw (percent-encoded, no query string);
        `query` maps raw query keys to raw values."""
        best: Match | None = None
        for route in self.routes.get(method, ()):
            if best is not None and route.specificity < best.rank[:3]:
                break  # sorted: nothing after this can beat or tie the best
            if not route.accepts(path, query, headers):
                continue
            context = len(route.host_context & host_context) - len(route.host_context - host_context)
            rank = (*route.specificity, context, not route.deprecated)
            if best is None or rank > best.rank:
                best = Match(route.operation, rank, route)
        return best


@cache
def route_table(api: str, virtual_bucket: bool = False) -> RouteTable:
    """The (cached) route table of a rest-json / rest-xml service; `virtual_bucket` gives the
    S3 virtual-hosted variant."""
    return RouteTable(api, strip_label="Bucket" if virtual_bucket else None)
