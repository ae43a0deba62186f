"""Cost of identifying one request, `identify(...)`, for each protocol family.

    .venv/bin/python bench/identify_cost.py [--number 200000]

Times identify() as the proxy calls it (the headers indexed once by `HeaderIndex`, included
in the time) with timeit on signed requests as SDKs send them (json X-Amz-Target, query
`Action` in the query string, rest-xml S3 path, rpc-v2-cbor path) and on one whose operation
no model has. Prints microseconds per call; identification runs on every proxied request.
"""

from __future__ import annotations

import argparse
import timeit

from mitmproxy.http import Headers

from fisproxy.aws.identify import identify, warm
from fisproxy.proxy.headers import HeaderIndex

AUTH = ("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/eu-west-1/{service}/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=" + "0" * 64)


def headers(service: str, **extra: str) -> Headers:
    return Headers(authorization=AUTH.format(service=service), **extra)


# (name, method, host, path, headers)
REQUESTS = [
    ("json dynamodb PutItem", "POST", "dynamodb.eu-west-1.amazonaws.com", "/",
     headers("dynamodb", x_amz_target="DynamoDB_20120810.PutItem")),
    ("json invented operation", "POST", "dynamodb.eu-west-1.amazonaws.com", "/",
     headers("dynamodb", x_amz_target="DynamoDB_20120810.Invented12345")),
    ("query sqs SendMessage", "GET", "sqs.eu-west-1.amazonaws.com",
     "/?Action=SendMessage&Version=2012-11-05", headers("sqs")),
    ("rest-xml s3 GetObject", "GET", "bucket.s3.eu-west-1.amazonaws.com", "/key.txt",
     headers("s3")),
    ("rpc-v2-cbor cloudwatch GetMetricData", "POST", "monitoring.eu-west-1.amazonaws.com",
     "/service/GraniteServiceVersion20100801/operation/GetMetricData",
     headers("monitoring", smithy_protocol="rpc-v2-cbor")),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args()
    warm()
    for name, method, host, path, hdrs in REQUESTS:
        call = identify(method, host, path, HeaderIndex(hdrs))
        best = min(timeit.repeat(lambda: identify(method, host, path, HeaderIndex(hdrs)),  # noqa: B023
                                 number=args.number, repeat=5))
        operation = call.operation if call else None
        print(f"{name:40s} {best / args.number * 1e6:6.2f} us  -> {operation}")


if __name__ == "__main__":
    main()
