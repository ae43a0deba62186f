"""HeaderIndex: a request's headers read once, as mitmproxy's Headers.get would answer."""

from __future__ import annotations

from mitmproxy.http import Headers

from fisproxy.aws.identify import identify
from fisproxy.proxy.headers import HeaderIndex


def test_answers_as_headers_get_does() -> None:
    headers = Headers([(b"X-Amz-Target", b"A.B"), (b"x-amz-target", b"second"),
                       (b"User-Agent", "caf\u00e9".encode()), (b"X-Raw", b"\xff")])
    index = HeaderIndex(headers)
    for name in ("x-amz-target", "user-agent", "x-raw", "absent"):
        assert index.get(name) == headers.get(name)
    assert index["x-amz-target"] == "A.B, second"
    assert set(index) == {"x-amz-target", "user-agent", "x-raw"} and len(index) == 3


def test_a_required_header_with_capitals_in_the_model_is_found() -> None:
    # CloudFront DeleteFunction requires `If-Match` (so spelt in the model): the route only
    # accepts a request that has it
    auth = ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/us-east-1/cloudfront/aws4_request, "
            "SignedHeaders=host, Signature=" + "0" * 64)
    path = "/2020-05-31/function/my-function"
    call = identify("DELETE", "cloudfront.amazonaws.com", path,
                    HeaderIndex(Headers(authorization=auth, if_match="E2QWRUHAPOMQZL")))
    assert call is not None and call.operation == "DeleteFunction"
