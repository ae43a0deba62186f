"""Store URLs: checking `--store` values and showing them without their password."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SCHEMES = ("redis", "rediss")
HIDDEN = "***"
_SECRET_PARAMS = {"password"}  # redis-py also reads the password from the query string


def redacted(url: str) -> str:
    """`url` with any password replaced by ***: the only form of a store URL that may be
    logged or shown in an error."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:{HIDDEN}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(k.lower() in _SECRET_PARAMS for k, _ in pairs):
            query = urlencode([(k, HIDDEN if k.lower() in _SECRET_PARAMS else v) for k, v in pairs],
                              safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redis_url(url: str) -> str:
    """`url` if it is a usable Redis URL (`redis://host:port/db`, `rediss://...`, with an
    optional `user:password@`); otherwise ValueError saying what is wrong (the URL shown
    without its password; the caller names the setting)."""
    shown = redacted(url)
    expected = ("expected redis://[user:password@]host[:port][/db] or rediss://...; "
                "leave --store unset for the SQLite file of --state")
    try:
        parts = urlsplit(url.strip())
        port = parts.port  # ValueError for a port that is not a number in 0-65535
    except ValueError:
        raise ValueError(f"{shown} is not a valid URL; {expected}") from None
    if parts.scheme.lower() not in SCHEMES:
        raise ValueError(f"unsupported scheme {parts.scheme or '(none)'!r} in {shown}; {expected}")
    if not parts.hostname:
        raise ValueError(f"no host in {shown}; {expected}")
    if port == 0:
        raise ValueError(f"port 0 in {shown}; {expected}")
    db = parts.path.strip("/")
    if db and not db.isdigit():
        raise ValueError(f"the database {db!r} in {shown} is not a number; {expected}")
    return url.strip()
