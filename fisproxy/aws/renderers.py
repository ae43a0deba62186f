"""Error renderers: one class per AWS wire protocol, keyed by botocore's protocol name.

The hierarchy mirrors botocore's parsers (`botocore/parsers.py`), so each renderer is the
inverse of the parser that SDKs run on the bytes it makes::

    ErrorRenderer                 render(): request id, HEAD handling (template method)
    +-- _JsonBodyRenderer         JSON body; optional x-amzn-query-error
    |   +-- JsonRenderer          json (awsJson1_0/1_1): __type == x-amzn-ErrorType, crc32
    |   |   +-- FallbackRenderer  unknown protocol: readable by json AND rest-json parsers
    |   +-- RestJsonRenderer      rest-json: x-amzn-ErrorType + {"message"}, Retry-After
    +-- CborRenderer              smithy-rpc-v2-cbor: smithy-protocol header + CBOR body
    +-- QueryRenderer             query: <ErrorResponse><Error>..</Error><RequestId>
    |   +-- Ec2Renderer           ec2: <Response><Errors><Error>..</Errors><RequestID>
    +-- RestXmlRenderer           rest-xml: S3 <Error> (no xmlns), else <ErrorResponse>

Why the split: botocore reads the json error code from the body `__type` only, Go v2 from the
header first, JS v3 from `__type` first, so json sends both, identical; rest-json parsers
read the header first; the xml protocols carry the request id in the body (S3 in headers);
rpc-v2-cbor responses without `smithy-protocol` are rejected by Go v2. Renderers only format:
`errors.py` resolves codes against the botocore model into `ErrorDetails` first.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
import zlib
from dataclasses import dataclass
from typing import NamedTuple
from xml.sax.saxutils import escape, quoteattr

from botocore.model import ServiceModel

from fisproxy.aws import catalog, cbor

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ErrorResponse:
    """A rendered AWS error: plain data for the HTTP layer (which adds Content-Length)."""

    status: int
    headers: Headers
    body: bytes


@dataclass(frozen=True)
class ErrorDetails:
    """One error, resolved against the service model, ready for any renderer."""

    status: int
    # Shape name as json/cbor put it in `__type` (`ThrottlingException`), with the namespace
    # the caller gave (`com.amazon.coral.availability`), if any.
    name: str
    namespace: str | None
    # The code xml protocols send and `x-amzn-query-error` carries: the model's error code
    # (`InternalError` for SNS's InternalErrorException), else the name.
    query_code: str
    message: str
    # Body key of the message: the modelled member's name (`Message` for SSM), else `message`.
    message_key: str = "message"
    # The modelled error binds a `Retry-After` header (Lambda, API Gateway throttles).
    retry_after: bool = False
    model: ServiceModel | None = None
    request_id: str | None = None
    head: bool = False

    @property
    def fault(self) -> str:
        """Query-style fault type: who is to blame."""
        return "Receiver" if self.status >= 500 else "Sender"

    @property
    def query_compatible(self) -> bool:
        return self.model is not None and "awsQueryCompatible" in self.model.metadata

    @property
    def api(self) -> str | None:
        return self.model.service_name if self.model is not None else None


class _Formatted(NamedTuple):
    content_type: str
    headers: list[tuple[str, str]]
    body: bytes


class ErrorRenderer:
    """Base: one public `render`; subclasses supply the body and protocol headers."""

    protocol: str = ""

    def render(self, d: ErrorDetails) -> ErrorResponse:
        request_id = d.request_id or self._new_request_id(d)
        id_headers = self._request_id_headers(d, request_id)
        if d.head:
            # A HEAD response has no body: SDKs see the status, ids and error headers only.
            return ErrorResponse(d.status, (*id_headers, *self._head_headers(d)), b"")
        out = self._format(d, request_id)
        headers = [("Content-Type", out.content_type), *id_headers, *out.headers]
        return ErrorResponse(d.status, tuple(headers), out.body)

    def _new_request_id(self, d: ErrorDetails) -> str:
        return str(uuid.uuid4())

    def _request_id_headers(self, d: ErrorDetails, request_id: str) -> list[tuple[str, str]]:
        return [("x-amzn-RequestId", request_id)]

    def _format(self, d: ErrorDetails, request_id: str) -> _Formatted:
        raise NotImplementedError(f"{type(self).__name__}._format")

    def _head_headers(self, d: ErrorDetails) -> list[tuple[str, str]]:
        """Headers that still carry the error when there is no body (HEAD)."""
        return []

    @staticmethod
    def _query_error_header(d: ErrorDetails) -> list[tuple[str, str]]:
        # awsQueryCompatible services (SQS, CloudWatch): SDKs report this code, not __type.
        if d.query_compatible:
            return [("x-amzn-query-error", f"{d.query_code};{d.fault}")]
        return []


def _json(value: dict[str, str]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class _JsonBodyRenderer(ErrorRenderer):
    def _type(self, d: ErrorDetails) -> str:
        return f"{d.namespace}#{d.name}" if d.namespace else d.name


# The `__type` namespaces real json services put on bare codes (seen on the wire; parsers strip
# them, some client libraries match the full string). Other json services send bare names.
_JSON_TYPE_NAMESPACES = {
    "dynamodb": "com.amazonaws.dynamodb.v20120810",
    "sqs": "com.amazonaws.sqs",
}


class JsonRenderer(_JsonBodyRenderer):
    protocol = "json"

    def _type(self, d: ErrorDetails) -> str:
        namespace = d.namespace or _JSON_TYPE_NAMESPACES.get(d.api or "")
        return f"{namespace}#{d.name}" if namespace else d.name

    def _content_type(self, d: ErrorDetails) -> str:
        version = d.model.metadata.get("jsonVersion", "1.0") if d.model else "1.0"
        return f"application/x-amz-json-{version}"

    def _format(self, d: ErrorDetails, request_id: str) -> _Formatted:
        error_type = self._type(d)
        body = _json({"__type": error_type, d.message_key: d.message})
        headers = [("x-amzn-ErrorType", error_type), *self._query_error_header(d)]
        checksum = catalog.checksum_headers().get(d.model.endpoint_prefix) if d.model else None
        if checksum:  # the SDK checks it (and retries on a mismatch)
            headers.append((checksum, str(zlib.crc32(body))))
        return _Formatted(self._content_type(d), headers, body)


class FallbackRenderer(JsonRenderer):
    """Unknown protocol: `__type` (json parsers) plus `x-amzn-ErrorType` (rest-json parsers)
    carry the same code, so either family of clients reads it."""

    protocol = "fallback"

    def _content_type(self, d: ErrorDetails) -> str:
        return "application/json"


class RestJsonRenderer(_JsonBodyRenderer):
    protocol = "rest-json"

    def _format(self, d: ErrorDetails, request_id: str) -> _Formatted:
        return _Formatted(
            "application/json", self._head_headers(d), _json({d.message_key: d.message})
        )

    def _head_headers(self, d: ErrorDetails) -> list[tuple[str, str]]:
        # rest-json parsers read the code from this header first, so it survives HEAD.
        headers = [("x-amzn-ErrorType", self._type(d)), *self._query_error_header(d)]
        if d.retry_after:
            headers.append(("Retry-After", "1"))
        return headers


class CborRenderer(ErrorRenderer):
    protocol = "smithy-rpc-v2-cbor"

    def _format(self, d: ErrorDetails, request_id: str) -> _Formatted:
        body = cbor.encode({"__type": self._shape_id(d), d.message_key: d.message})
        headers = [("smithy-protocol", "rpc-v2-cbor"), *self._query_error_header(d)]
        return _Formatted("application/cbor", headers, body)

    @staticmethod
    def _shape_id(d: ErrorDetails) -> str:
        # The spec wants an absolute shape id; AWS Smithy namespaces are
        # `com.amazonaws.<sdk id, lower case, no spaces>` (`com.amazonaws.cloudwatch`).
        namespace = d.namespace
        if not namespace and d.model is not None:
            namespace = "com.amazonaws." + d.model.service_id.replace(" ", "").lower()
        return f"{namespace}#{d.name}" if namespace else d.name


_XML_DECL = '<?xml version="1.0" encoding="UTF-8"?>\n'


def _error_element(d: ErrorDetails, with_type: bool) -> str:
    kind = f"<Type>{d.fault}</Type>" if with_type else ""
    return (
        f"<Error>{kind}<Code>{escape(d.query_code)}</Code>"
        f"<Message>{escape(d.message)}</Message></Error>"
    )


def _xmlns(d: ErrorDetails) -> str:
    namespace = d.model.metadata.get("xmlNamespace") if d.model else None
    return f" xmlns={quoteattr(namespace)}" if namespace else ""


class QueryRenderer(ErrorRenderer):
    protocol = "query"

    def _format(self, d: ErrorDetails, request_id: str) -> _Formatted:
        body = (
            f"{_XML_DECL}<ErrorResponse{_xmlns(d)}>{_error_element(d, with_type=True)}"
            f"<RequestId>{escape(request_id)}</RequestId></ErrorResponse>"
        )
        return _Formatted("text/xml", [], body.encode())


class Ec2Renderer(QueryRenderer):
    """EC2 nests errors in `<Errors>` and spells `RequestID` with a capital D."""

    protocol = "ec2"

    def _format(self, d: ErrorDetails, request_id: str) -> _Formatted:
        body = (
            f"{_XML_DECL}<Response><Errors>{_error_element(d, with_type=False)}</Errors>"
            f"<RequestID>{escape(request_id)}</RequestID></Response>"
        )
        return _Formatted("text/xml;charset=UTF-8", [], body.encode())


# rest-xml services that answer with S3's bare `<Error>` document and S3's id headers.
_S3_STYLE_APIS = frozenset({"s3"})


class RestXmlRenderer(ErrorRenderer):
    """S3: `<Error>` with no namespace (botocore only recognises the literal root tag `Error`),
    request id and host id in headers and body. Route 53, CloudFront: `<ErrorResponse>`."""

    protocol = "rest-xml"

    def _new_request_id(self, d: ErrorDetails) -> str:
        if d.api in _S3_STYLE_APIS:
            return uuid.uuid4().hex[:16].upper()
        return super()._new_request_id(d)

    def _request_id_headers(self, d: ErrorDetails, request_id: str) -> list[tuple[str, str]]:
        if d.api in _S3_STYLE_APIS:
            return [("x-amz-request-id", request_id), ("x-amz-id-2", _host_id(request_id))]
        return super()._request_id_headers(d, request_id)

    def _format(self, d: ErrorDetails, request_id: str) -> _Formatted:
        if d.api in _S3_STYLE_APIS:
            body = (
                f"{_XML_DECL}<Error><Code>{escape(d.query_code)}</Code>"
                f"<Message>{escape(d.message)}</Message>"
                f"<RequestId>{escape(request_id)}</RequestId>"
                f"<HostId>{_host_id(request_id)}</HostId></Error>"
            )
            return _Formatted("application/xml", [], body.encode())
        body = (
            f"{_XML_DECL}<ErrorResponse{_xmlns(d)}>{_error_element(d, with_type=True)}"
            f"<RequestId>{escape(request_id)}</RequestId></ErrorResponse>"
        )
        return _Formatted("text/xml", [], body.encode())


def _host_id(request_id: str) -> str:
    # S3's x-amz-id-2 is an opaque base64 token; derive it so header and body agree.
    return base64.b64encode(hashlib.sha512(request_id.encode()).digest()).decode()


RENDERERS: dict[str, ErrorRenderer] = {
    r.protocol: r
    for r in (
        JsonRenderer(),
        RestJsonRenderer(),
        CborRenderer(),
        QueryRenderer(),
        Ec2Renderer(),
        RestXmlRenderer(),
    )
}
FALLBACK = FallbackRenderer()


def renderer_for(protocol: str | None) -> ErrorRenderer:
    """The renderer for a botocore protocol name; unknown or None gets the json fallback."""
    return RENDERERS.get(protocol or "", FALLBACK)
