"""No web page but fisproxy's own can drive the control APIs (browser.py): the exact requests
browsers send for CSRF and after DNS rebinding are refused; what the AWS CLI, boto3, the JS SDK,
LocalStack's SDK, Chaos Toolkit and curl send is served unchanged. boto3's requests are captured
from a real fis client (its before-send hook), so the test follows botocore's own content type."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import boto3
import pytest
from botocore.config import Config
from mitmproxy.http import Headers

from fisproxy.fis.api import FisApi
from fisproxy.fis.chaos import ChaosApi, ChaosState
from fisproxy.proxy.auth import ControlAuth
from fisproxy.proxy.browser import BrowserGuard, normal_origin, split_host
from fisproxy.proxy.control import ControlPlane, ControlRequest, ControlRouter
from fisproxy.store import Store

HOST = "127.0.0.1:8082"
GUARD = BrowserGuard()
JSON = {"content-type": "application/json"}
EVIL = "http://evil.example:8082"


def check(method: str, host: str = HOST, headers: Mapping[str, str] | None = None, body: bytes = b"",
          guard: BrowserGuard = GUARD, scheme: str = "http") -> int | None:
    refused = guard.check(method, host, Headers(**dict(headers or {})) if headers else Headers(),
                          body, scheme=scheme)
    return None if refused is None else refused.status


def boto3_request(operation: str, **params: Any) -> tuple[str, dict[str, str], bytes]:
    """(method, headers, body) of a real boto3 fis call, as it would go on the wire."""
    captured: dict[str, Any] = {}

    def capture(request: Any, **_: Any) -> Any:
        captured.update(method=request.method, headers=dict(request.headers.items()), body=request.body or b"")
        from botocore.awsrequest import AWSResponse

        return AWSResponse(request.url, 200, {}, None)

    client = boto3.session.Session().client(
        "fis", region_name="us-east-1", endpoint_url=f"http://{HOST}",
        aws_access_key_id="AKID", aws_secret_access_key="secret", config=Config(proxies={}))
    client.meta.events.register("before-send", capture)
    try:
        getattr(client, operation)(**params)
    except Exception:  # the empty 200 does not parse; the request was captured
        pass
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in captured["headers"].items()}
    body = captured["body"].encode() if isinstance(captured["body"], str) else captured["body"]
    return captured["method"], headers, body


# ---- what tools send: served -----------------------------------------------------------------

@pytest.mark.parametrize("operation, params", [
    ("create_experiment_template", {"description": "d", "roleArn": "arn:aws:iam::1:role/r",
                                    "stopConditions": [{"source": "none"}], "actions": {}}),
    ("start_experiment", {"experimentTemplateId": "EXT1"}),
    ("stop_experiment", {"id": "EXP1"}),
    ("tag_resource", {"resourceArn": "arn:aws:fis:us-east-1:1:experiment/EXP1", "tags": {"a": "b"}}),
    ("untag_resource", {"resourceArn": "arn:aws:fis:us-east-1:1:experiment/EXP1", "tagKeys": ["a"]}),
    ("update_safety_lever_state", {"id": "default", "state": {"status": "engaged", "reason": "r"}}),
    ("list_experiments", {}),
])
def test_boto3_requests_are_served(operation: str, params: dict[str, Any]) -> None:
    method, headers, body = boto3_request(operation, **params)
    assert check(method, headers=headers, body=body) is None, (method, headers)


@pytest.mark.parametrize("method, headers, body", [
    ("GET", {}, b""),  # curl, Prometheus, health checks
    ("POST", {"content-type": "application/json"}, b"[]"),  # curl -H 'Content-Type: application/json', requests json=
    ("POST", {"content-type": "application/json; charset=utf-8"}, b"{}"),  # the JS SDK v3, LocalStack's SDK
    ("PATCH", {"content-type": "application/json"}, b"[]"),  # LocalStack's Chaos API PATCH
    ("DELETE", {}, b""),  # aws fis stop-experiment: no body, no type
    ("DELETE", {"content-type": "application/json"}, b"[]"),  # LocalStack's SDK: delete faults
    ("POST", {"content-type": "application/x-amz-json-1.1"}, b"{}"),  # older SDKs
    ("POST", {"content-type": "Application/JSON"}, b"{}"),
])
def test_what_tools_send_is_served(method: str, headers: dict[str, str], body: bytes) -> None:
    assert check(method, headers=headers, body=body) is None


@pytest.mark.parametrize("host", ["127.0.0.1:8082", "localhost:8082", "LOCALHOST", "localhost.",
                                  "app.localhost:8082", "[::1]:8082", "10.1.2.3:8082", "", "127.0.0.1",
                                  "fis.us-east-1.amazonaws.com", "fis-fips.us-gov-west-1.amazonaws.com:443"])
def test_names_the_proxy_is_known_by(host: str) -> None:
    assert check("GET", host) is None


# ---- what web pages send: refused --------------------------------------------------------------

@pytest.mark.parametrize("host", ["evil.example:8082", "evil.example", "localhost.evil.example",
                                  "127.0.0.1.nip.io:8082", "x/_fisproxy/health?", "evil.example.:8082",
                                  "[::1", "127.0.0.1:99999", "\udcff\udcfe"])
def test_dns_rebinding_names_are_refused_for_reads_and_health(host: str) -> None:
    # After rebinding, the page's own name reaches 127.0.0.1: same-origin, so no Origin on a GET.
    assert check("GET", host) == 403
    refused = GUARD.check("GET", host, Headers(), b"")
    assert refused is not None and b"--allowed-host" in refused.body


def test_dns_rebinding_writes_are_refused() -> None:
    # Chrome's POST after rebinding: same-origin, so Origin is the evil name, as is Host.
    assert check("POST", "evil.example:8082", {"origin": EVIL, "content-type": "application/json",
                                                "sec-fetch-site": "same-origin"}, b"{}") == 403


@pytest.mark.parametrize("content_type", [
    "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
    None,  # fetch with a Blob or ArrayBuffer body, navigator.sendBeacon with one
    "application/json, text/plain",  # browsers read the last type of a list
    "text/plain, application/json",
    "application/jsonx",
])
def test_a_body_that_is_not_json_is_refused_even_without_origin(content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    assert check("POST", headers=headers, body=b'{"experimentTemplateId": "EXT1"}') == 415


def test_two_content_types_are_refused() -> None:
    headers = Headers([(b"content-type", b"application/json"), (b"content-type", b"text/plain")])
    refused = GUARD.check("POST", HOST, headers, b"{}")
    assert refused is not None and refused.status == 415


def test_an_empty_post_needs_json_too() -> None:
    assert check("POST") == 415  # fetch(url, {method: "POST", mode: "no-cors"})


@pytest.mark.parametrize("origin", [EVIL, "http://localhost:8082", "http://127.0.0.1:8083", "null",
                                    "garbage"])
def test_writes_from_other_origins_are_refused(origin: str) -> None:
    # (a JSON type from another origin needs a preflight, which is never granted; an Origin that
    # still arrives is refused all the same)
    for headers in ({"origin": origin, **JSON}, {"origin": origin, "content-type": "text/plain"}):
        assert check("POST", headers=headers, body=b"{}") == 403, (origin, headers)
    assert check("DELETE", headers={"origin": origin}) == 403


def test_fisproxy_s_own_pages_may_write() -> None:
    # The console at GET / of the control port posts JSON to its own origin.
    own = {"origin": "http://127.0.0.1:8082", "sec-fetch-site": "same-origin", **JSON}
    assert check("POST", headers=own, body=b"{}") is None
    assert check("POST", "localhost:8082", {**own, "origin": "http://localhost:8082"}, b"{}") is None
    assert check("POST", "[::1]:8082", {**own, "origin": "http://[::1]:8082"}, b"{}") is None
    # ... but not a form: the content type rule holds for its own pages too
    assert check("POST", headers={**own, "content-type": "text/plain"}, body=b"{}") == 415


@pytest.mark.parametrize("mode, dest, method, refused", [
    ("cors", "empty", "GET", True),  # fetch() from another site
    ("no-cors", "script", "GET", True),  # <script src>: JSON as script
    ("no-cors", "image", "GET", True),
    ("navigate", "iframe", "GET", True),  # framed: clickjacking
    ("navigate", "document", "GET", False),  # a link to a report, followed
    ("navigate", "document", "POST", True),  # a form posted from another site
])
def test_requests_other_sites_sent_are_refused_except_navigations(mode: str, dest: str, method: str,
                                                                   refused: bool) -> None:
    headers = {"sec-fetch-site": "cross-site", "sec-fetch-mode": mode, "sec-fetch-dest": dest}
    if method == "POST":
        headers.update({"origin": EVIL, "content-type": "application/x-www-form-urlencoded"})
    assert (check(method, headers=headers, body=b"a=1" if method == "POST" else b"") == 403) is refused
    assert check(method, headers={**headers, "sec-fetch-site": "same-site"},
                 body=b"a=1" if method == "POST" else b"") in ((403,) if refused else (None,))


def test_allowed_names_and_origins() -> None:
    guard = BrowserGuard.from_options(["fisproxy", "*.svc.cluster.local"], ["https://dash.example.com:443"])
    assert check("GET", "fisproxy:8082", guard=guard) is None
    assert check("GET", "fisproxy.ns.svc.cluster.local:8082", guard=guard) is None
    assert check("GET", "svc.cluster.local", guard=guard) == 403
    assert check("GET", "fisproxy.evil.example", guard=guard) == 403
    dash = {"origin": "https://dash.example.com", "sec-fetch-site": "cross-site", **JSON}
    assert check("POST", "fisproxy:8082", dash, b"{}", guard=guard) is None
    assert check("POST", "fisproxy:8082", {**dash, "origin": "https://dash.example.com:8443"}, b"{}",
                 guard=guard) == 403
    anything = BrowserGuard.from_options(["*"], [])
    assert check("GET", "evil.example", guard=anything) is None
    assert BrowserGuard.from_options([], [], "my-host.internal").known_host("my-host.internal")
    assert BrowserGuard.from_options([], [], "0.0.0.0").hosts == ()


@pytest.mark.parametrize("hosts, origins, message", [
    (["bad host"], [], "fisproxy_allowed_hosts"),
    (["evil.*"], [], "fisproxy_allowed_hosts"),
    ([], ["null"], "fisproxy_allowed_origins"),
    ([], ["https://x.example/path"], "fisproxy_allowed_origins"),
    ([], ["ftp://x.example"], "fisproxy_allowed_origins"),
])
def test_bad_options_name_the_option(hosts: list[str], origins: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BrowserGuard.from_options(hosts, origins)


def test_the_fis_api_through_the_proxy() -> None:
    # A browser using fisproxy as its proxy: pages of other sites reach fis.<region>.amazonaws.com
    host = "fis.us-east-1.amazonaws.com"
    assert check("POST", host, {"origin": "https://evil.example", "content-type": "text/plain"},
                 b"{}", scheme="https") == 403
    assert check("POST", host, {"content-type": "text/plain"}, b"{}", scheme="https") == 415
    assert check("POST", host, {"origin": f"https://{host}", **JSON}, b"{}", scheme="https") is None
    assert check("POST", host, JSON, b"{}", scheme="https") is None


def test_helpers() -> None:
    assert split_host("[::1]:8082") == ("::1", 8082)
    assert split_host("Example.COM.") == ("example.com", None)
    assert split_host("a:b") is None
    assert normal_origin("HTTPS://Example.com:443") == "https://example.com"
    assert normal_origin("http://[::1]:8082") == "http://[::1]:8082"
    assert normal_origin("null") is None


# ---- in the control plane: refused before anything is read or written -------------------------

@pytest.fixture
def plane(tmp_path: Any) -> ControlPlane:
    store = Store(tmp_path / "s.sqlite")

    class NoEngine:
        def active_count(self) -> int:
            return 0

    api = FisApi(store, NoEngine())  # type: ignore[arg-type]
    chaos = ChaosState(load=lambda: None, save=lambda doc: None)
    return ControlPlane(ControlRouter(fis=api, chaos=ChaosApi(chaos)), ControlAuth())


def test_a_refused_request_changes_nothing(plane: ControlPlane) -> None:
    body = (b'{"description":"csrf","roleArn":"arn:aws:iam::123456789012:role/r","stopConditions":'
            b'[{"source":"none"}],"actions":{"w":{"actionId":"aws:fis:wait","parameters":{"duration":"PT1S"}}}}')
    forged = ControlRequest("POST", "/experimentTemplates", HOST,
                            Headers(origin=EVIL, content_type="text/plain"), body)
    answer = plane.serve(forged)
    assert answer.status == 403 and answer.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    assert answer.headers["x-content-type-options"] == "nosniff"
    listed = plane.serve(ControlRequest("GET", "/experimentTemplates", HOST, Headers(), b""))
    assert listed.status == 200 and b'"experimentTemplates": []' in listed.body
    made = plane.serve(ControlRequest("POST", "/experimentTemplates", HOST, Headers(content_type="application/json"), body))
    assert made.status == 200, made.body
