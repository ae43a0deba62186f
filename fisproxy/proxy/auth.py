"""Authentication for the control APIs, and the warnings for a proxy exposed without it.

Bound to anything but loopback, anyone who reaches fisproxy could start experiments. The control
APIs (the control listener, and `fis.<region>.amazonaws.com` through the proxy) then accept a
request when it carries a configured token (`Authorization: Bearer <token>` or
`x-fisproxy-token: <token>`), or when it is SigV4-signed with a configured access key: the
`aws fis ...` CLI and boto3 work unchanged once given those credentials. The signature is
recomputed with botocore's own signer, so the canonical request is exactly what clients compute.

Who may do what is decided from the path the router will serve, exactly as it will serve it,
never from a URL rebuilt from headers: a Host header is the client's to choose, so
`Host: x/_fisproxy/health?` must not make `/experiments` look like the open health check.
The Host header (or the HTTP/2 authority) only enters the signature check, as a signed value.

Plain data in, plain data out (no mitmproxy), and secrets are never part of a message or repr.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

from fisproxy.fis.api import render_error
from fisproxy.httpdata import ApiResponse, first_header, header_values

HEALTH_PATH = "/_fisproxy/health"
METRICS_PATH = "/metrics"
TOKEN_HEADER = "x-fisproxy-token"
SIGV4_ALGORITHM = "AWS4-HMAC-SHA256"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
MAX_SKEW_SECONDS = 15 * 60  # what AWS allows between X-Amz-Date and its clock
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"

# Access key ids end up in `Credential=<id>/<date>/...`: no slash, comma, space or '='.
ACCESS_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
# Tokens travel in a header: printable ASCII, no spaces.
TOKEN = re.compile(r"^[\x21-\x7e]+$")
HEX_SHA256 = re.compile(r"^[0-9a-f]{64}$")
SIGNING_SERVICE = "fis"
# AWS region names: `us-east-1`, `us-gov-west-1`, `eu-isoe-west-1`, `cn-north-1`.
REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$")
# Where the canonical request's URL points: never used for anything but its path and query.
_SIGNED_URL_HOST = "fisproxy.invalid"

# AWS's own messages, so the CLI and SDKs show what people already know.
BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation "
    "for details."
)
UNKNOWN_KEY = "The security token included in the request is invalid."
# A proxy protected by a token only: the AWS CLI and SDKs sign with access keys and cannot send
# a token, so say what to configure instead of AWS's words about an invalid security token.
TOKEN_ONLY = (
    "fisproxy: this proxy accepts its control token only (Authorization: Bearer or "
    f"{TOKEN_HEADER}), which the AWS CLI and SDKs cannot send. To use them, start fisproxy with "
    "--control-credentials ACCESS_KEY_ID:SECRET_ACCESS_KEY (or $FISPROXY_CONTROL_CREDENTIALS) "
    "and give the AWS CLI or SDK that access key"
)


class Refusal(str):
    """Why a request was refused: the message, with the AWS error code it is answered with."""

    code: str

    def __new__(cls, message: str, code: str = "AccessDeniedException") -> Refusal:
        self = super().__new__(cls, message)
        self.code = code
        return self


MISSING = Refusal(
    "fisproxy: authentication required: send 'Authorization: Bearer <token>' or "
    f"'{TOKEN_HEADER}: <token>', or sign the request (SigV4) with a configured access key"
)
BAD_TOKEN = Refusal("fisproxy: the token is not valid")


def parse_token(token: str | None) -> str | None:
    """A control token as configured (empty: none); ValueError saying what is wrong with it,
    never quoting it."""
    token = token or None
    if token is not None and not TOKEN.match(token):
        raise ValueError("must be printable ASCII without spaces")
    return token


def parse_credentials(entries: Sequence[str]) -> Mapping[str, str]:
    """`ACCESS_KEY_ID:SECRET_ACCESS_KEY` entries (blank ones skipped) -> key id -> secret;
    ValueError saying which entry is wrong, never quoting a secret."""
    parsed: dict[str, str] = {}
    for number, entry in enumerate(entries, 1):
        entry = entry.strip()
        if not entry:
            continue
        key_id, sep, secret = entry.partition(":")
        if not sep or not ACCESS_KEY_ID.match(key_id) or not secret or not TOKEN.match(secret):
            raise ValueError(
                f"entry {number} is not ACCESS_KEY_ID:SECRET_ACCESS_KEY (key id: letters, digits, "
                "'_.-'; secret: printable, no spaces)"
            )
        if parsed.get(key_id, secret) != secret:
            raise ValueError(f"two secrets for {key_id}")
        parsed[key_id] = secret
    return MappingProxyType(parsed)


@dataclass(frozen=True)
class ControlAuth:
    """Who may use the control APIs. Disabled (everyone may) when neither is configured."""

    token: str | None = field(default=None, repr=False)
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)  # key id -> secret
    public_metrics: bool = False  # let Prometheus scrape /metrics without credentials

    def __repr__(self) -> str:  # never the secrets
        token = "<set>" if self.token else None
        return (f"ControlAuth(token={token}, access_keys={sorted(self.credentials)}, "
                f"public_metrics={self.public_metrics})")

    @property
    def enabled(self) -> bool:
        return bool(self.token or self.credentials)

    @classmethod
    def from_options(cls, token: str | None, credentials: Sequence[str], *,
                     public_metrics: bool = False) -> ControlAuth:
        """From `fisproxy_control_token` and `fisproxy_control_credentials` (`AKID:SECRET`
        entries); ValueError naming the option, never quoting a secret."""
        try:
            token = parse_token(token)
        except ValueError as e:
            raise ValueError(f"fisproxy_control_token: {e}") from None
        try:
            parsed = parse_credentials(credentials)
        except ValueError as e:
            raise ValueError(f"fisproxy_control_credentials: {e}") from None
        return cls(token, parsed, public_metrics)

    def is_public(self, method: str, path: str) -> bool:
        """Requests answered without credentials: health (container health checks) and, when
        configured, metrics. `path` is the path served, compared exactly like the router does
        (no decoding, no normalising: `/_fisproxy/%68ealth` is not health, and not served as
        health either)."""
        if method.upper() not in ("GET", "HEAD"):
            return False
        return path == HEALTH_PATH or (self.public_metrics and path == METRICS_PATH)

    def check(self, method: str, path: str, headers: Mapping[str, str], body: bytes, *,
              query: str = "", scheme: str = "http", authority: str | None = None,
              now: float | None = None) -> Refusal | None:
        """None when the request may be served, else why not (a `Refusal`, a str with `.code`).

        `path` is the path the router will serve (`urlsplit(target).path`, percent-encoded as
        received) and `query` the raw query string: authorization is decided from `path`, and
        a SigV4 signature is checked over both. `headers` is a case-insensitive mapping
        (mitmproxy's Headers, or a plain dict); `body` the raw bytes; `scheme` how the request
        arrived (UNSIGNED-PAYLOAD is accepted over https only); `authority` the HTTP/2
        `:authority`, which stands for the Host header when none was sent.
        """
        if not self.enabled:
            return None
        if not path.startswith("/"):
            return Refusal("fisproxy: the request target is not a path")
        if self.is_public(method, path):
            return None
        authorization = first_header(headers, "authorization") or ""
        kind, _, credentials = authorization.strip().partition(" ")
        presented = first_header(headers, TOKEN_HEADER)
        if presented is None and kind.lower() == "bearer":
            presented = credentials.strip()
        if presented is not None and self.token is not None and _same(presented, self.token):
            return None
        if kind == SIGV4_ALGORITHM:
            request = _Signed(method, path, query, headers, body, scheme, authority)
            return self._check_sigv4(request, credentials, now)
        return BAD_TOKEN if presented is not None else MISSING

    def _check_sigv4(self, request: _Signed, params: str, now: float | None) -> Refusal | None:
        headers = request.headers
        parts = _sigv4_parameters(params)
        if parts is None:
            return Refusal("Authorization header requires 'Credential', 'SignedHeaders' and "
                           "'Signature' parameters.", "IncompleteSignatureException")
        (key_id, date, region, service), signed, signature = parts
        secret = self.credentials.get(key_id)
        if secret is None:
            if not self.credentials:
                return Refusal(TOKEN_ONLY, "UnrecognizedClientException")
            named = f"access key {key_id}" if ACCESS_KEY_ID.match(key_id) else "the access key"
            return Refusal(f"{UNKNOWN_KEY} (fisproxy: {named} is not one of its "
                           "--control-credentials)", "UnrecognizedClientException")
        if service != SIGNING_SERVICE:
            return Refusal(f"Credential should be scoped to correct service: '{SIGNING_SERVICE}'.",
                           "InvalidSignatureException")
        if not REGION.match(region):
            return Refusal("Credential should be scoped to a valid region.", "InvalidSignatureException")
        if not HEX_SHA256.match(signature):
            return Refusal("fisproxy: the signature is not 64 hexadecimal digits.",
                           "IncompleteSignatureException")
        if "host" not in signed:
            return Refusal("'Host' must be a signed header.", "IncompleteSignatureException")
        amz_date = first_header(headers, "x-amz-date")
        if amz_date is None:
            return Refusal("fisproxy: SigV4 requests need an X-Amz-Date header.",
                           "IncompleteSignatureException")
        try:
            signed_at = datetime.strptime(amz_date, AMZ_DATE_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            return Refusal("fisproxy: X-Amz-Date is not YYYYMMDDTHHMMSSZ.",
                           "IncompleteSignatureException")
        if amz_date[:8] != date:
            return Refusal("Credential should be scoped to a valid date.", "InvalidSignatureException")
        skew = _skew(signed_at, time.time() if now is None else now)
        if skew:
            return skew
        payload = first_header(headers, "x-amz-content-sha256")
        if payload is not None:
            refusal = _check_payload_hash(payload, request.scheme, request.body)
            if refusal:
                return refusal
        missing = [name for name in signed if name != "host" and not header_values(headers, name)]
        if missing:
            return Refusal(f"fisproxy: signed header {missing[0]} is missing.", "InvalidSignatureException")
        covered = [request.method, request.path, request.query, request.authority or ""]
        covered += [v for name in signed for v in header_values(headers, name)]
        if not all(_is_text(v) for v in covered):  # bytes that are not UTF-8: signed by no SDK
            return Refusal(BAD_SIGNATURE, "InvalidSignatureException")
        expected = _signature(request, signed, amz_date, Credentials(key_id, secret), service, region)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            return Refusal(BAD_SIGNATURE, "InvalidSignatureException")
        return None


@dataclass(frozen=True)
class _Signed:
    """What a SigV4 signature covers, as received: the served path and the raw query (never a
    URL rebuilt from the Host header)."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    scheme: str
    authority: str | None

    @property
    def url(self) -> str:
        # Only the path and query of this URL reach the canonical request; the host comes
        # from the signed Host header (or the authority).
        return f"{self.scheme}://{_SIGNED_URL_HOST}{self.path}" + (f"?{self.query}" if self.query else "")


def denied_response(reason: str) -> ApiResponse:
    """The answer to a refused request, in the FIS API's rest-json error shape."""
    return render_error(getattr(reason, "code", "AccessDeniedException"), 403, str(reason))


class _Verifier(SigV4Auth):
    """botocore's SigV4 signer, over exactly the headers the client says it signed (botocore
    would skip a few, like user-agent, that other SDKs may sign)."""

    def __init__(self, credentials: Credentials, service: str, region: str,
                 signed: Sequence[str]) -> None:
        super().__init__(credentials, service, region)
        self._signed = signed

    def headers_to_sign(self, request: AWSRequest) -> HTTPHeaders:
        header_map = HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or []:
                header_map[name] = value
        return header_map


def _signature(signed_request: _Signed, signed: Sequence[str], amz_date: str,
               credentials: Credentials, service: str, region: str) -> str:
    sent = HTTPHeaders()
    for name in signed:
        values = header_values(signed_request.headers, name)
        if name == "host" and not values and signed_request.authority:
            values = [signed_request.authority]  # HTTP/2: the authority, not a Host header
        for value in values:
            sent[name] = value  # appends: repeated headers stay repeated, as signed
    # botocore copies `headers` by items() into its own HTTPHeaders (a Message, not the Mapping
    # its stubs name): repeated headers stay repeated
    request = AWSRequest(method=signed_request.method.upper(), url=signed_request.url,
                         headers=sent, data=signed_request.body)  # type: ignore[arg-type]
    request.context["timestamp"] = amz_date
    signer = _Verifier(credentials, service, region, signed)
    canonical = signer.canonical_request(request)
    return signer.signature(signer.string_to_sign(request, canonical), request)


def _sigv4_parameters(params: str) -> tuple[tuple[str, str, str, str], list[str], str] | None:
    """`Credential=AKID/20240101/us-east-1/fis/aws4_request, SignedHeaders=a;b, Signature=hex`
    -> ((key id, date, region, service), signed header names, signature)."""
    fields: dict[str, str] = {}
    for part in params.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name] = value.strip()
    scope = fields.get("Credential", "").split("/")
    signed = [h for h in fields.get("SignedHeaders", "").lower().split(";") if h]
    signature = fields.get("Signature", "")
    if len(scope) != 5 or scope[4] != "aws4_request" or not all(scope) or not signed or not signature:
        return None
    key_id, date, region, service, _ = scope
    return (key_id, date, region, service), signed, signature


def _skew(signed_at: datetime, now: float) -> Refusal | None:
    def stamp(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).strftime(AMZ_DATE_FORMAT)

    signed, offset = signed_at.timestamp(), now - signed_at.timestamp()
    if offset > MAX_SKEW_SECONDS:
        return Refusal(f"Signature expired: {stamp(signed)} is now earlier than "
                       f"{stamp(now - MAX_SKEW_SECONDS)} ({stamp(now)} - 15 min.)",
                       "InvalidSignatureException")
    if offset < -MAX_SKEW_SECONDS:
        return Refusal(f"Signature not yet current: {stamp(signed)} is still later than "
                       f"{stamp(now + MAX_SKEW_SECONDS)} ({stamp(now)} + 15 min.)",
                       "InvalidSignatureException")
    return None


def _check_payload_hash(payload: str, scheme: str, body: bytes) -> Refusal | None:
    """The canonical request uses the x-amz-content-sha256 value, not the body: the body must
    match it. UNSIGNED-PAYLOAD leaves the body unprotected, so only over TLS (botocore never
    sends it over plain HTTP); streaming (chunk-signed) payloads are S3 uploads, not ours."""
    if HEX_SHA256.match(payload):
        if not hmac.compare_digest(hashlib.sha256(body).hexdigest(), payload):
            return Refusal("The provided 'x-amz-content-sha256' header does not match what was "
                           "computed.", "InvalidSignatureException")
        return None
    if payload == UNSIGNED_PAYLOAD and scheme == "https":
        return None
    return Refusal(f"fisproxy: x-amz-content-sha256 {payload[:40]!r} is not accepted here "
                   "(UNSIGNED-PAYLOAD only over HTTPS)", "InvalidSignatureException")


def _is_text(value: str) -> bool:
    """Valid Unicode: mitmproxy hands over undecodable bytes as lone surrogates."""
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _same(presented: str, expected: str) -> bool:
    # Digests of equal length, so not even the token's length leaks through timing.
    # surrogatepass: undecodable bytes from the wire hash (and differ) instead of raising.
    digest = hashlib.sha256
    return hmac.compare_digest(digest(presented.encode("utf-8", "surrogatepass")).digest(),
                               digest(expected.encode()).digest())


# ---- exposure warnings -----------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1, localhost. An empty host (mitmproxy's default) is every interface."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name or "": may be reachable from anywhere


def exposure_warnings(listen_host: str, proxyauth: str | None, auth: ControlAuth, *,
                      control_host: str | None = None) -> list[str]:
    """The loud start-up lines for a proxy reachable from other machines without
    authentication. `control_host` defaults to where the control listener binds:
    `listen_host`, or 127.0.0.1 when that is empty (settings.py)."""
    label = listen_host or "all interfaces"
    if control_host is None:
        control_host = listen_host or "127.0.0.1"
    lines = []
    proxy_open = not is_loopback(listen_host) and (not proxyauth or proxyauth == "any")
    if proxy_open:
        why = "with proxyauth=any (any user name and password)" if proxyauth else "without proxyauth"
        lines.append(
            f"WARNING: listening on {label} {why}: anyone who can reach the proxy port can use "
            "fisproxy as an HTTP(S) proxy into your network. Set proxyauth "
            "(--set proxyauth=USER:PASS or @HTPASSWD_FILE) or bind to 127.0.0.1."
        )
    # The FIS API is also served through the proxy (fis.<region>.amazonaws.com).
    if (proxy_open or not is_loopback(control_host)) and not auth.enabled:
        lines.append(
            f"WARNING: listening on {label} without control API authentication: anyone who can "
            "reach the control port or the proxy can create templates and start experiments. Set "
            "--control-token / FISPROXY_CONTROL_TOKEN (option fisproxy_control_token) or "
            "--control-credentials AKID:SECRET / FISPROXY_CONTROL_CREDENTIALS "
            "(option fisproxy_control_credentials)."
        )
    return lines
