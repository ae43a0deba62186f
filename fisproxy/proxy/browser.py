"""No web page but fisproxy's own can drive the control APIs: DNS rebinding and CSRF.

A browser on the machine that runs fisproxy reaches `127.0.0.1:8082` as readily as curl does,
and with resource actions a request from a page could stop instances. Three rules keep pages
out, and change nothing for the AWS CLI, the SDKs, Chaos Toolkit, LocalStack's SDK or curl
(tools that are not browsers send JSON and no `Origin` or `Sec-Fetch-*` headers):

1. **Host** (DNS rebinding). A page on a name its author controls can make that name resolve to
   127.0.0.1 once loaded: its requests are then same-origin and the browser lets it read the
   answers. They carry that name in `Host`. Only names fisproxy is known by are served: IP
   addresses (a page whose origin is an address and port is this port itself), `localhost` and
   `*.localhost` (browsers resolve them to loopback themselves), the FIS API's hostnames (through
   the proxy), the listen host, and the names given with `--allowed-host` (`*.domain` patterns;
   `*` turns the check off).
2. **Content type** (CSRF). A page may send a cross-origin request without asking first only
   with a simple method and a form, multipart or text/plain body, or none
   (https://fetch.spec.whatwg.org/#cors-safelisted-request-header). Every request that changes
   something must say it is JSON: `application/json` (botocore's and the JS SDK v3's restJson1,
   LocalStack's SDK, `curl -H 'Content-Type: application/json'`) or `application/x-amz-json-1.0`
   / `-1.1`. For any other type a browser asks first (a CORS preflight), and fisproxy never
   answers one with `Access-Control-Allow-*`: no other origin may send it, or read any answer.
3. **Origin and fetch metadata.** A state change that carries an `Origin` is served only when
   that is fisproxy's own origin (the scheme, host and port it was sent to) or one given with
   `--allowed-origin`: fisproxy's own pages (the console at `GET /`) post JSON to it freely.
   A request whose `Sec-Fetch-Site` says another site sent it is refused, reads included,
   except a top-level navigation (a link to a report opens in fisproxy's own origin).

Refusals are FIS-shaped errors: 403 AccessDeniedException (Host, Origin), 415 for a body that is
not JSON; each says what to send or which option allows it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from fisproxy.fis.api import render_error
from fisproxy.httpdata import ApiResponse, first_header, header_values

# fis.<region>.amazonaws.com, fis-fips..., fis.<region>.api.aws: the FIS API through the proxy.
FIS_HOST = re.compile(r"^fis(?:-fips)?\.([a-z0-9-]+)\.(?:amazonaws\.com(?:\.cn)?|api\.aws)$")

READS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON_TYPES = frozenset({"application/json", "application/x-amz-json-1.0", "application/x-amz-json-1.1"})
DEFAULT_PORTS = {"http": 80, "https": 443}
_NAME = re.compile(r"^(\*|(\*\.)?[a-z0-9_-]+(\.[a-z0-9_-]+)*)$")  # a host name, *.domain, or *


def split_host(host: str) -> tuple[str, int | None] | None:
    """`Host` -> (lower-case name without a trailing dot, port or None); None if malformed.
    `[::1]:8082` -> ("::1", 8082)."""
    host = host.strip().lower()
    if host.startswith("["):
        name, sep, rest = host[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port_text = rest[1:] if rest else ""
    else:
        name, _, port_text = host.partition(":") if host.count(":") <= 1 else (host, "", "")
    if port_text and not (port_text.isascii() and port_text.isdigit() and int(port_text) < 65536):
        return None
    return name.rstrip("."), int(port_text) if port_text else None


def is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def parse_hosts(entries: Sequence[str]) -> tuple[str, ...]:
    """Allowed host names and `*.domain` patterns, lower case (addresses and blanks skipped:
    every address is served anyway); ValueError saying which entry is wrong."""
    names = []
    for entry in entries:
        name = entry.strip().lower().rstrip(".")
        if not name or is_ip(name.strip("[]")):
            continue
        if not _NAME.match(name):
            raise ValueError(f"{entry[:80]!r} is not a host name, *.domain or *")
        names.append(name)
    return tuple(names)


def parse_origins(entries: Sequence[str]) -> frozenset[str]:
    """Allowed origins, normalised; ValueError saying which entry is wrong."""
    allowed = set()
    for entry in entries:
        if not entry.strip():
            continue
        origin = normal_origin(entry.strip())
        if origin is None:
            raise ValueError(f"{entry[:80]!r} is not an origin like https://console.example.com:8443")
        allowed.add(origin)
    return frozenset(allowed)


@dataclass(frozen=True)
class BrowserGuard:
    """The three rules, with the names and origins the user allowed. Plain data in, plain data
    out (no mitmproxy)."""

    hosts: tuple[str, ...] = ()  # lower-case names and `*.domain` patterns; `*`: any
    origins: frozenset[str] = frozenset()  # normalised `scheme://host[:port]`

    @classmethod
    def from_options(cls, hosts: Sequence[str], origins: Sequence[str], listen_host: str = "") -> BrowserGuard:
        """ValueError naming the option for a malformed entry."""
        try:
            names = parse_hosts([*hosts, listen_host])
        except ValueError as e:
            raise ValueError(f"fisproxy_allowed_hosts: {e}") from None
        try:
            allowed = parse_origins(origins)
        except ValueError as e:
            raise ValueError(f"fisproxy_allowed_origins: {e}") from None
        return cls(names, allowed)

    def known_host(self, name: str) -> bool:
        if not name or is_ip(name) or name == "localhost" or name.endswith(".localhost"):
            return True
        if FIS_HOST.match(name):
            return True
        for allowed in self.hosts:
            if allowed == "*" or allowed == name or (
                    allowed.startswith("*.") and name.endswith(allowed[1:])):
                return True
        return False

    def check(self, method: str, host: str, headers: Mapping[str, str], body: bytes, *,
              scheme: str = "http") -> ApiResponse | None:
        """The refusal for a request a web page may have sent on its own behalf, else None.
        `host` is the Host header (or HTTP/2 authority), `scheme` how the request arrived."""
        split = split_host(host)
        if split is None or not self.known_host(split[0]):
            shown = _shown(host)
            return _denied(f"fisproxy: this proxy does not answer to the name {shown} (web pages "
                           "on other names could read and change it: DNS rebinding). Use "
                           "127.0.0.1 or localhost, or allow the name with --allowed-host NAME.")
        method = method.upper()
        origin = first_header(headers, "origin")
        own = origin is not None and self._allowed_origin(origin, split, scheme)
        site = (first_header(headers, "sec-fetch-site") or "").lower()
        if site in ("cross-site", "same-site") and not own and not _navigation(method, headers):
            return _denied(f"fisproxy: requests sent by web pages of other sites are refused "
                           f"(Origin {_shown(origin or 'absent')}); allow a page with "
                           "--allowed-origin ORIGIN.")
        if method in READS:
            return None
        if origin is not None and not own:
            return _denied(f"fisproxy: changes from web pages of other origins are refused "
                           f"(Origin {_shown(origin)}); allow a page with --allowed-origin ORIGIN.")
        if (body or method == "POST") and not _json(headers):
            return render_error(
                "UnsupportedMediaTypeException", 415,
                "fisproxy: send the body as JSON, with 'Content-Type: application/json' (a form or "
                "text/plain body is what a web page of another origin could send: CSRF).")
        return None

    def _allowed_origin(self, origin: str, host: tuple[str, int | None], scheme: str) -> bool:
        normal = normal_origin(origin)
        if normal is None:
            return False  # `null` (sandboxed frames, file: pages) and anything malformed
        if normal in self.origins:
            return True
        split = urlsplit(normal)
        name, port = host
        return (split.hostname == name
                and (split.port or DEFAULT_PORTS[split.scheme]) == (port or DEFAULT_PORTS.get(scheme, 80)))


def normal_origin(origin: str) -> str | None:
    """`HTTPS://Example.com:443` -> `https://example.com`; None if not an http(s) origin."""
    try:
        split = urlsplit(origin)
        port = split.port
    except ValueError:
        return None
    if split.scheme not in DEFAULT_PORTS or not split.hostname or split.path not in ("", "/") \
            or split.query or split.fragment or split.username or split.password:
        return None
    name = split.hostname.rstrip(".")
    shown = f"[{name}]" if ":" in name else name
    return f"{split.scheme}://{shown}" + (f":{port}" if port and port != DEFAULT_PORTS[split.scheme] else "")


def _navigation(method: str, headers: Mapping[str, str]) -> bool:
    """A top-level navigation (a link followed, a URL typed): harmless, and the page then runs
    in fisproxy's own origin. Frames are not navigations here (clickjacking)."""
    return (method in ("GET", "HEAD")
            and (first_header(headers, "sec-fetch-mode") or "").lower() == "navigate"
            and (first_header(headers, "sec-fetch-dest") or "document").lower() == "document")


def _json(headers: Mapping[str, str]) -> bool:
    """Exactly one Content-Type, of a JSON type. A list (`application/json, text/plain`) is
    refused: browsers read the last type of a list, servers often the first."""
    values = header_values(headers, "content-type")
    if len(values) != 1 or "," in values[0]:
        return False
    essence = values[0].split(";", 1)[0].strip().lower()
    return essence in JSON_TYPES or (essence.startswith("application/") and essence.endswith("+json"))


def _shown(value: str, limit: int = 80) -> str:
    short = value if len(value) <= limit else value[:limit] + "..."
    return repr(short.encode("utf-8", "backslashreplace").decode())


def _denied(message: str) -> ApiResponse:
    return render_error("AccessDeniedException", 403, message)
