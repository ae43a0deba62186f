"""Control API authentication, with real botocore-signed requests as the oracle: boto3 fis clients
whose `before-send` hook captures the request exactly as it would go on the wire, and botocore's
own rest-json parser reading the refusals."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from mitmproxy import http
from mitmproxy.http import Headers
from mitmproxy.net.http.http1 import read_request_head

from fisproxy.proxy.auth import ControlAuth, denied_response, exposure_warnings, is_loopback

KEY, SECRET = "AKIDFIS", "fis/Secret+Key=1"
OTHER_KEY, OTHER_SECRET = "AKIDOTHER", "other-secret"
TOKEN = "s3cr3t-t0ken"
CONTROL = "http://127.0.0.1:8082"
FIS_HOST = "https://fis.us-east-1.amazonaws.com"
AUTH = ControlAuth.from_options(TOKEN, [f"{KEY}:{SECRET}", f"{OTHER_KEY}:{OTHER_SECRET}"])
TEMPLATE_ARN = "arn:aws:fis:us-east-1:123456789012:experiment-template/EXTabc"


def check_url(auth: ControlAuth, method: str, url: str, headers: Mapping[str, str], body: bytes,
              **kw: Any) -> str | None:
    """`auth.check` as the addon calls it for a request sent to `url`: the request target
    (path and query) split like the router splits it, the scheme it arrived on."""
    parts = urlsplit(url)
    target = url[len(f"{parts.scheme}://{parts.netloc}"):]
    served = urlsplit(target)
    return auth.check(method, served.path, headers, body, query=served.query, scheme=parts.scheme, **kw)


@dataclass
class Sent:
    """One request as the client sends it: what the proxy's control router would see."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    def check(self, auth: ControlAuth = AUTH, **kw: Any) -> str | None:
        return check_url(auth, self.method, self.url, self.headers, self.body, **kw)

    def replace(self, **changes: Any) -> Sent:
        return Sent(**{**self.__dict__, **changes})

    def with_header(self, name: str, value: str) -> Sent:
        headers = {k: v for k, v in self.headers.items() if k.lower() != name.lower()}
        return self.replace(headers={**headers, name: value})


class _Captured(Exception):
    pass


def fis_client(endpoint: str = CONTROL, key: str = KEY, secret: str = SECRET,
               region: str = "us-east-1") -> Any:
    return boto3.session.Session().client(
        "fis", region_name=region, endpoint_url=endpoint, aws_access_key_id=key,
        aws_secret_access_key=secret, config=Config(retries={"total_max_attempts": 1}),
    )


def wire(request: Any) -> Sent:
    """A prepared botocore request as it goes out: urllib3 adds the Host header."""
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    headers.setdefault("Host", urlsplit(request.url).netloc)
    body = request.body or b""
    return Sent(request.method, request.url, headers, body.encode() if isinstance(body, str) else body)


def signed(operation: str, endpoint: str = CONTROL, key: str = KEY, secret: str = SECRET,
           region: str = "us-east-1", **params: Any) -> Sent:
    """The request a boto3 fis client sends for `operation`, signed with key/secret."""
    client = fis_client(endpoint, key, secret, region)
    seen: list[Sent] = []

    def capture(request: Any, **_: Any) -> None:
        seen.append(wire(request))
        raise _Captured

    client.meta.events.register("before-send.fis", capture)
    with pytest.raises(_Captured):
        getattr(client, operation)(**params)
    return seen[0]


def create_template() -> Sent:
    return signed(
        "create_experiment_template", description="d", roleArn="arn:aws:iam::123456789012:role/r",
        stopConditions=[{"source": "none"}], actions={"a": {"actionId": "aws:fis:wait",
                                                           "parameters": {"duration": "PT1S"}}},
    )


# ---- configuration ---------------------------------------------------------------------


def test_from_options_parses_credentials_and_token() -> None:
    auth = ControlAuth.from_options("tok", [" A1:s1 ", "", "B_2.x-y:s/2+=", "A1:s1"])
    assert auth.enabled and auth.token == "tok"
    assert dict(auth.credentials) == {"A1": "s1", "B_2.x-y": "s/2+="}
    assert not ControlAuth.from_options(None, []).enabled
    assert not ControlAuth.from_options("", [" "]).enabled  # an empty $FISPROXY_CONTROL_TOKEN
    assert ControlAuth.from_options(None, ["K:S"]).enabled
    assert ControlAuth.from_options("t", []).enabled


@pytest.mark.parametrize("entry", [
    "NOCOLONs3kr1t", "AKID:", ":s3kr1t", "AK/ID:s3kr1t", "AKID:s3kr1t X", "AK ID:s3kr1t",
])
def test_malformed_credentials_name_the_option_not_the_secret(entry: str) -> None:
    with pytest.raises(ValueError, match=r"^fisproxy_control_credentials: entry 2 ") as info:
        ControlAuth.from_options(None, ["OK:fine", entry])
    assert "s3kr1t" not in str(info.value)


def test_two_secrets_for_one_key_are_refused() -> None:
    with pytest.raises(ValueError, match="fisproxy_control_credentials: two secrets for AKID") as info:
        ControlAuth.from_options(None, ["AKID:first-secret", "AKID:second-secret"])
    assert "secret" not in str(info.value).split("for")[1]


def test_bad_token_is_refused_without_quoting_it() -> None:
    with pytest.raises(ValueError, match="^fisproxy_control_token: ") as info:
        ControlAuth.from_options("my token", [])
    assert "my token" not in str(info.value)


def test_repr_never_shows_secrets() -> None:
    text = repr(AUTH) + str(AUTH)
    assert TOKEN not in text and SECRET not in text and OTHER_SECRET not in text
    assert KEY in text and "<set>" in text


# ---- SigV4 -----------------------------------------------------------------------------


@pytest.mark.parametrize("sent", [
    pytest.param(lambda: signed("list_experiments"), id="GET"),
    pytest.param(lambda: signed("list_experiments", maxResults=5, nextToken="a b/c+d=="), id="query"),
    pytest.param(create_template, id="POST-body"),
    pytest.param(lambda: signed("tag_resource", resourceArn=TEMPLATE_ARN, tags={"k": "v"}), id="arn-in-path"),
    pytest.param(lambda: signed("untag_resource", resourceArn=TEMPLATE_ARN, tagKeys=["a", "b"]), id="repeated-query"),
    pytest.param(lambda: signed("list_experiments", key=OTHER_KEY, secret=OTHER_SECRET), id="second-key"),
    pytest.param(lambda: signed("list_actions", region="eu-west-1"), id="other-region"),
    pytest.param(lambda: signed("get_experiment", endpoint=FIS_HOST, id="EXP1"), id="through-proxy-https"),
])
def test_botocore_signed_requests_are_accepted(sent: Callable[[], Sent]) -> None:
    request = sent()
    assert request.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
    assert request.check() is None
    # mitmproxy's Headers (what the addon passes) read the same way as a plain dict.
    assert check_url(AUTH, request.method, request.url, Headers(**{k.replace("-", "_"): v for k, v in request.headers.items()}), request.body) is None


def tamper_header(sent: Sent) -> Sent:
    return sent.with_header("Content-Type", "application/x-www-form-urlencoded")


@pytest.mark.parametrize("change, code", [
    (lambda s: s.replace(body=s.body.replace(b'"PT1S"', b'"PT9S"')), "InvalidSignatureException"),
    (lambda s: s.replace(body=s.body + b" "), "InvalidSignatureException"),
    (tamper_header, "InvalidSignatureException"),
    (lambda s: s.with_header("Host", "127.0.0.1:9999"), "InvalidSignatureException"),
    (lambda s: s.replace(url=s.url.replace("/experimentTemplates", "/experimentTemplatez")), "InvalidSignatureException"),
    (lambda s: s.replace(url=s.url + "?maxResults=1"), "InvalidSignatureException"),
    (lambda s: s.replace(method="PUT"), "InvalidSignatureException"),
    (lambda s: s.with_header("Authorization", s.headers["Authorization"][:-4] + "0000"), "InvalidSignatureException"),
    (lambda s: s.replace(headers={k: v for k, v in s.headers.items() if k != "Content-Type"}), "InvalidSignatureException"),
    (lambda s: s.replace(headers={k: v for k, v in s.headers.items() if k != "Authorization"}), "AccessDeniedException"),
    (lambda s: s.with_header("Authorization", "AWS4-HMAC-SHA256 Signature=abc"), "IncompleteSignatureException"),
])
def test_tampered_post_is_refused(change: Callable[[Sent], Sent], code: str) -> None:
    refusal = change(create_template()).check()
    assert refusal is not None and refusal.code == code, refusal


def test_tampered_query_is_refused() -> None:
    sent = signed("list_experiments", maxResults=5)
    assert sent.check() is None
    assert sent.replace(url=sent.url.replace("maxResults=5", "maxResults=6")).check().code == "InvalidSignatureException"
    assert sent.replace(url=sent.url + "&extra=1").check().code == "InvalidSignatureException"


def test_wrong_secret_and_unknown_key() -> None:
    wrong = signed("list_experiments", secret="not-the-secret")
    refusal = wrong.check()
    assert refusal is not None and refusal.code == "InvalidSignatureException"
    assert "signature we calculated does not match" in refusal
    unknown = signed("list_experiments", key="AKIDNOBODY", secret=SECRET)
    assert unknown.check().code == "UnrecognizedClientException"
    # A token-only configuration knows no access keys at all.
    assert signed("list_experiments").check(ControlAuth.from_options(TOKEN, [])).code == "UnrecognizedClientException"


def test_clock_skew_of_15_minutes_is_allowed_not_more() -> None:
    sent = signed("list_experiments")
    now = time.time()
    for offset in (14 * 60, -14 * 60):
        assert sent.check(now=now + offset) is None
    late = sent.check(now=now + 16 * 60)
    assert late.code == "InvalidSignatureException" and late.startswith("Signature expired: ")
    early = sent.check(now=now - 16 * 60)
    assert early.code == "InvalidSignatureException" and early.startswith("Signature not yet current: ")


def test_date_is_part_of_the_signature() -> None:
    sent = signed("list_experiments")
    stamp = sent.headers["X-Amz-Date"]
    moved = stamp[:-3] + ("00Z" if stamp[-3:] != "00Z" else "01Z")  # same day, another second
    assert sent.with_header("X-Amz-Date", moved).check().code == "InvalidSignatureException"
    assert sent.with_header("X-Amz-Date", "yesterday").check().code == "IncompleteSignatureException"
    undated = sent.replace(headers={k: v for k, v in sent.headers.items() if k != "X-Amz-Date"})
    assert undated.check().code == "IncompleteSignatureException"


def sign_raw(url: str, body: bytes, headers: Mapping[str, str], *, payload_signing: bool = True) -> Sent:
    """Sign with botocore's SigV4Auth directly (the content-sha256 and unsigned variants)."""
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    request.context["payload_signing_enabled"] = payload_signing
    SigV4Auth(Credentials(KEY, SECRET), "fis", "us-east-1").add_auth(request)
    return wire(request.prepare())


def test_signed_content_sha256_must_match_the_body() -> None:
    import hashlib
    body = b'{"clientToken": "x"}'
    sent = sign_raw(f"{CONTROL}/experiments", body, {"x-amz-content-sha256": hashlib.sha256(body).hexdigest()})
    assert "x-amz-content-sha256" in sent.headers["Authorization"]
    assert sent.check() is None
    assert sent.replace(body=b'{"clientToken": "y"}').check().code == "InvalidSignatureException"


def test_unsigned_payload_only_over_https() -> None:
    body = b'{"clientToken": "x"}'
    over_tls = sign_raw(f"{FIS_HOST}/experiments", body, {}, payload_signing=False)
    assert over_tls.headers["X-Amz-Content-SHA256"] == "UNSIGNED-PAYLOAD"
    assert over_tls.check() is None
    assert over_tls.replace(body=b"anything").check() is None  # what UNSIGNED-PAYLOAD means
    plain = over_tls.replace(url=over_tls.url.replace("https://", "http://"))
    assert plain.check().code == "InvalidSignatureException"


def test_headers_signed_but_not_sent_are_refused() -> None:
    sent = sign_raw(f"{CONTROL}/experiments", b"{}", {"x-custom": "1"})
    assert "x-custom" in sent.headers["Authorization"] and sent.check() is None
    gone = sent.replace(headers={k: v for k, v in sent.headers.items() if k != "x-custom"})
    assert gone.check().code == "InvalidSignatureException"


# ---- tokens and public paths -----------------------------------------------------------


@pytest.mark.parametrize("headers, allowed", [
    ({"Authorization": f"Bearer {TOKEN}"}, True),
    ({"authorization": f"bearer  {TOKEN}"}, True),
    ({"X-Fisproxy-Token": TOKEN}, True),
    ({"Authorization": "Bearer wrong"}, False),
    ({"Authorization": f"Bearer {TOKEN}x"}, False),
    ({"x-fisproxy-token": TOKEN[:-1]}, False),
    ({"Authorization": f"Basic {TOKEN}"}, False),
    ({}, False),
])
def test_token(headers: dict[str, str], allowed: bool) -> None:
    refusal = check_url(AUTH, "POST", f"{CONTROL}/_localstack/chaos/faults", headers, b"[]")
    assert (refusal is None) == allowed, refusal
    if not allowed:
        assert refusal.code == "AccessDeniedException"
        assert TOKEN not in refusal


def test_a_bearer_token_means_nothing_without_a_configured_token() -> None:
    keys_only = ControlAuth.from_options(None, [f"{KEY}:{SECRET}"])
    assert check_url(keys_only, "GET", f"{CONTROL}/experiments", {"Authorization": "Bearer "}, b"") is not None
    assert check_url(keys_only, "GET", f"{CONTROL}/experiments", {"x-fisproxy-token": ""}, b"") is not None
    assert signed("list_experiments").check(keys_only) is None


@pytest.mark.parametrize("method, path, public_metrics, open_", [
    ("GET", "/_fisproxy/health", False, True),
    ("HEAD", "/_fisproxy/health", False, True),
    ("GET", "/_fisproxy/health?verbose=1", False, True),
    ("POST", "/_fisproxy/health", False, False),
    ("GET", "/_fisproxy/health/", False, False),
    ("GET", "/_fisproxy/health/../metrics", True, False),
    ("GET", "/metrics", False, False),
    ("GET", "/metrics", True, True),
    ("POST", "/metrics", True, False),
    ("GET", "/_fisproxy/experiments/EXP1/report", True, False),
    ("GET", "/experiments", True, False),
])
def test_public_paths(method: str, path: str, public_metrics: bool, open_: bool) -> None:
    auth = ControlAuth.from_options(TOKEN, [], public_metrics=public_metrics)
    assert (check_url(auth, method, f"{CONTROL}{path}", {}, b"") is None) == open_


def test_disabled_auth_lets_everything_through() -> None:
    auth = ControlAuth.from_options(None, [])
    assert check_url(auth, "POST", f"{CONTROL}/experiments", {}, b"{}") is None
    assert signed("list_experiments", secret="whatever").check(auth) is None


# ---- refusals as botocore reads them ---------------------------------------------------


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def guarded_client(auth: ControlAuth, key: str, secret: str) -> Any:
    """A boto3 fis client whose requests are answered in-process: refused by `auth`, or `{}`."""
    client = fis_client(key=key, secret=secret)

    def answer(request: Any, **_: Any) -> AWSResponse:
        sent = wire(request)
        refusal = sent.check(auth)
        response = denied_response(refusal) if refusal is not None else None
        if response is None:
            return AWSResponse(request.url, 200, {"content-type": "application/json"}, _Raw(b"{}"))
        return AWSResponse(request.url, response.status, dict(response.headers), _Raw(response.body))

    client.meta.events.register("before-send.fis", answer)
    return client


@pytest.mark.parametrize("key, secret, code", [
    (KEY, SECRET, None),
    (KEY, "wrong", "InvalidSignatureException"),
    ("AKIDNOBODY", SECRET, "UnrecognizedClientException"),
])
def test_botocore_parses_the_refusal(key: str, secret: str, code: str | None) -> None:
    client = guarded_client(AUTH, key, secret)
    if code is None:
        assert client.list_experiments()["ResponseMetadata"]["HTTPStatusCode"] == 200
        return
    with pytest.raises(ClientError) as info:
        client.list_experiments()
    error = info.value.response["Error"]
    assert error["Code"] == code
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error["Message"]


def test_denied_response_shape() -> None:
    response = denied_response(check_url(AUTH, "GET", f"{CONTROL}/experiments", {}, b""))
    assert response.status == 403
    headers = {k.lower(): v for k, v in response.headers.items()}
    assert headers["x-amzn-errortype"] == "AccessDeniedException"
    assert headers["content-type"] == "application/json"
    assert "authentication required" in json.loads(response.body)["message"]
    assert denied_response("plain reason").headers["x-amzn-ErrorType"] == "AccessDeniedException"


# ---- exposure warnings -----------------------------------------------------------------

NONE = ControlAuth.from_options(None, [])
TOKEN_ONLY = ControlAuth.from_options(TOKEN, [])
KEYS_ONLY = ControlAuth.from_options(None, [f"{KEY}:{SECRET}"])


@pytest.mark.parametrize("host, proxyauth, auth, proxy_warned, control_warned", [
    ("127.0.0.1", None, NONE, False, False),
    ("localhost", None, NONE, False, False),
    ("::1", None, NONE, False, False),
    ("127.0.0.2", None, NONE, False, False),
    ("0.0.0.0", None, NONE, True, True),
    ("0.0.0.0", "user:pass", NONE, False, True),
    ("0.0.0.0", None, TOKEN_ONLY, True, False),
    ("0.0.0.0", "user:pass", KEYS_ONLY, False, False),
    ("0.0.0.0", "any", TOKEN_ONLY, True, False),
    ("0.0.0.0", "any", NONE, True, True),
    ("10.1.2.3", "@/etc/fisproxy.htpasswd", TOKEN_ONLY, False, False),
    ("::", None, NONE, True, True),
    ("proxy.internal", "user:pass", NONE, False, True),
    # mitmproxy's default listen_host "" is every interface; the control listener then binds
    # 127.0.0.1, but the FIS API stays reachable through an open proxy.
    ("", None, NONE, True, True),
    ("", "user:pass", NONE, False, False),
])
def test_exposure_warnings(host: str, proxyauth: str | None, auth: ControlAuth,
                           proxy_warned: bool, control_warned: bool) -> None:
    lines = exposure_warnings(host, proxyauth, auth)
    assert any("HTTP(S) proxy into your network" in line for line in lines) == proxy_warned, lines
    assert any("start experiments" in line for line in lines) == control_warned, lines
    assert len(lines) == proxy_warned + control_warned
    label = host or "all interfaces"
    assert all(line.startswith(f"WARNING: listening on {label} ") for line in lines)
    assert not any(TOKEN in line or SECRET in line or "user:pass" in line for line in lines)
    if proxyauth == "any" and proxy_warned:
        assert "proxyauth=any" in lines[0]


def test_control_host_override() -> None:
    # A control listener bound elsewhere than the proxy (mitmdump users can mix them).
    assert len(exposure_warnings("127.0.0.1", None, NONE, control_host="0.0.0.0")) == 1
    assert exposure_warnings("127.0.0.1", None, NONE, control_host="127.0.0.1") == []


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("[::1]", True), ("LOCALHOST", True),
    ("0.0.0.0", False), ("", False), ("::", False), ("192.168.1.10", False), ("fisproxy", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) == loopback


# ---- attacks: authorization follows the path served, never the Host header -------------------


def received(raw: bytes) -> tuple[http.Request, SplitResult]:
    """A raw HTTP/1 request head parsed by mitmproxy's own parser, and the path and query the
    control router serves for it (`urlsplit(request.path)`, as the addon splits it)."""
    lines = [line + b"\r\n" for line in raw.split(b"\r\n")[:-2]]
    request = read_request_head(lines)
    return request, urlsplit(request.path)


def check_received(raw: bytes, auth: ControlAuth = AUTH, body: bytes = b"") -> str | None:
    """`auth.check` exactly as the addon calls it (the one-line wiring in `_serve_control`)."""
    req, served = received(raw)
    return auth.check(req.method, served.path, req.headers, body, query=served.query,
                      scheme=req.scheme or "http", authority=req.authority or None)


@pytest.mark.parametrize("raw", [
    # The probe's bypass: a Host header that makes a rebuilt URL look like the health check.
    b"GET /experiments HTTP/1.1\r\nHost: x/_fisproxy/health?\r\n\r\n",
    b"GET /experimentTemplates HTTP/1.1\r\nHost: 127.0.0.1:8082/_fisproxy/health#\r\n\r\n",
    b"GET /_localstack/chaos/faults HTTP/1.1\r\nHost: x/_fisproxy/health?a=\r\n\r\n",
    b"GET http://fis.us-east-1.amazonaws.com/experiments HTTP/1.1\r\nHost: x/_fisproxy/health?\r\n\r\n",
    b"GET /experiments?/_fisproxy/health HTTP/1.1\r\nHost: x\r\n\r\n",
    # Spellings of the health path that are not the health path (nor served as it).
    b"GET /_fisproxy/%68ealth HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET //_fisproxy/health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /_fisproxy//health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /_fisproxy/health/../../experiments HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /_fisproxy/health%2F..%2F..%2Fexperiments HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /_fisproxy/health;/experiments HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /_FISPROXY/HEALTH HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /_fisproxy/health%00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /_fisproxy/health/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET * HTTP/1.1\r\nHost: x/_fisproxy/health\r\n\r\n",
    # Absolute-form: the URL's own path counts, whatever its host.
    b"GET http://x/_fisproxy/metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET http://_fisproxy/health/experiments HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST http://x/_fisproxy/health HTTP/1.1\r\nHost: x\r\n\r\n",
])
def test_attack_requests_are_refused(raw: bytes) -> None:
    req, served = received(raw)
    assert not (req.method == "GET" and served.path == "/_fisproxy/health")  # not health when served
    refusal = check_received(raw)
    assert refusal is not None and refusal.code == "AccessDeniedException", refusal


@pytest.mark.parametrize("raw", [
    b"GET /_fisproxy/health HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /_fisproxy/health?verbose=1 HTTP/1.1\r\nHost: anything/at/all\r\n\r\n",
    b"HEAD http://fis.us-east-1.amazonaws.com/_fisproxy/health HTTP/1.1\r\nHost: x\r\n\r\n",
])
def test_the_health_check_stays_open_as_served(raw: bytes) -> None:
    assert received(raw)[1].path == "/_fisproxy/health"
    assert check_received(raw) is None


def test_a_request_target_that_is_not_a_path_is_refused() -> None:
    assert AUTH.check("GET", "http://x/_fisproxy/health", {}, b"").code == "AccessDeniedException"
    assert AUTH.check("GET", "", {}, b"") is not None


def signed_for(service: str, region: str) -> Sent:
    """A request to the control port signed with a configured key, for another service or region."""
    request = AWSRequest(method="GET", url=f"{CONTROL}/experiments", headers={})
    SigV4Auth(Credentials(KEY, SECRET), service, region).add_auth(request)
    return wire(request.prepare())


@pytest.mark.parametrize("service, region, problem", [
    ("s3", "us-east-1", "correct service: 'fis'"),
    ("execute-api", "us-east-1", "correct service: 'fis'"),
    ("FIS", "us-east-1", "correct service: 'fis'"),
    ("fis", "nowhere", "valid region"),
    ("fis", "us-east-1-", "valid region"),
    ("fis", "US-EAST-1", "valid region"),
    ("fis", "us-east-1\x00", "valid region"),
])
def test_sigv4_scoped_to_another_service_or_no_region_is_refused(service: str, region: str,
                                                                  problem: str) -> None:
    refusal = signed_for(service, region).check()
    assert refusal is not None and refusal.code == "InvalidSignatureException" and problem in refusal


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-3", "us-gov-west-1", "ap-southeast-5", "eu-isoe-west-1"])
def test_sigv4_scoped_to_fis_in_a_region_is_accepted(region: str) -> None:
    assert signed_for("fis", region).check() is None


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer \udcff\udcfe"},
    {"Authorization": f"Bearer {TOKEN}\udcff"},
    {"x-fisproxy-token": TOKEN + "\udcff"},
    {"x-fisproxy-token": "\ud800"},
    {"Authorization": "AWS4-HMAC-SHA256 \udcff"},
])
def test_undecodable_bytes_in_a_token_are_refused_not_raised(headers: dict[str, str]) -> None:
    refusal = check_url(AUTH, "GET", f"{CONTROL}/experiments", headers, b"")
    assert refusal is not None and refusal.code.endswith("Exception")


@pytest.mark.parametrize("change", [
    lambda s: s.with_header("Authorization", s.headers["Authorization"][:-64] + "\udcff" * 64),
    lambda s: s.with_header("Authorization", s.headers["Authorization"].replace(KEY, KEY + "\udcff")),
    lambda s: s.with_header("Host", "127.0.0.1:8082\udcff"),
    lambda s: s.with_header("X-Amz-Date", "2024\udcff0101T000000Z"),
    lambda s: s.replace(url=s.url.replace("/experiments", "/experiments\udcff")),
    lambda s: s.replace(method="G\udcffT"),
])
def test_undecodable_bytes_in_a_signed_request_are_refused_not_raised(change: Callable[[Sent], Sent]) -> None:
    refusal = change(signed("list_experiments")).check()
    assert refusal is not None and refusal.code.endswith("Exception")


def test_http2_authority_stands_for_a_missing_host_header() -> None:
    sent = signed("list_experiments")
    host = sent.headers["Host"]
    no_host = {k: v for k, v in sent.headers.items() if k != "Host"}
    served = urlsplit(sent.url)
    assert AUTH.check("GET", served.path, no_host, b"", query=served.query, authority=host) is None
    # The authority is a signed value, never a URL: a crafted one only fails the signature.
    refusal = AUTH.check("GET", served.path, no_host, b"", query=served.query, authority="x/_fisproxy/health?")
    assert refusal is not None and refusal.code == "InvalidSignatureException"
